"""The benchmarks of issue #8 run and report sane numbers (toy sizes); BENCHMARKS.md sections are
rewritten in place. No timing thresholds: timed results live in BENCHMARKS.md, never in tests."""

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import run_all  # noqa: E402


def test_a_section_is_replaced_and_everything_else_kept_byte_for_byte():
    text = ("# Benchmarks\n\nIntro, with trailing spaces  \r\n\n<!-- bench:pretrain -->\nold table\n| a |\n"
            "<!-- /bench:pretrain -->\nAfter the section.\n\n<!-- bench:rl -->\nrl\n<!-- /bench:rl -->\nEnd\n")
    new = run_all.replace_section(text, "pretrain", "new table\n")
    assert new == text.replace("old table\n| a |\n", "new table\n")
    assert run_all.replace_section(new, "pretrain", "new table") == new  # idempotent
    # A body holding regex replacement syntax is written as it is.
    odd = run_all.replace_section(text, "rl", r"\1 \g<0> $1")
    assert "<!-- bench:rl -->\n\\1 \\g<0> $1\n<!-- /bench:rl -->\nEnd\n" in odd


def test_a_missing_section_is_appended():
    text = "# Benchmarks\n\nKept.\n"
    new = run_all.replace_section(text, "sft", "the table")
    assert new.startswith(text)
    assert new.endswith("<!-- bench:sft -->\nthe table\n<!-- /bench:sft -->\n")
    assert run_all.replace_section("no newline", "sft", "t").startswith("no newline\n\n<!-- bench:sft -->")


@pytest.fixture(scope="module")
def quick_results():
    return run_all.main(["--quick", "--no_write"])


def rate(x):
    return isinstance(x, (int, float)) and x > 0


def ratio(x):
    return isinstance(x, (int, float)) and 0 < x < 10


def test_pretrain_rates_ratios_and_mfu(quick_results):
    for row in quick_results["pretrain"]["results"]:
        for way in ("hfllm", "trainer", "raw"):
            assert rate(row[f"{way}_tokens_per_s"])
            assert 0 < row[f"{way}_mfu"] <= 1
        for key in ("hfllm_vs_trainer", "hfllm_vs_raw", "trainer_vs_raw"):
            assert ratio(row[key])
        assert rate(row["peak_gflops"]) and rate(row["flops_per_token"])


def test_generation_rates_and_first_token(quick_results):
    r = quick_results["generate"]["results"]
    assert r["same_text_on_every_path"]  # greedy: every path made the same tokens
    for way in ("bare", "hfllm_generate", "hfllm_stream", "app_stream"):
        assert rate(r[f"{way}_tokens_per_s"]) and ratio(r[f"{way}_vs_bare"])
    for way in ("bare", "hfllm_stream", "app_stream"):
        assert rate(r[f"{way}_first_token_ms"])


def test_tokenizer_rates(quick_results):
    r = quick_results["tokenizer"]["results"]
    for way in ("hfllm", "hfllm_train_only", "bare_files", "bare_iterator"):
        assert rate(r[f"{way}_mb_per_s"])
    assert ratio(r["hfllm_vs_bare_files"]) and ratio(r["hfllm_vs_bare_iterator"])
    assert 1 < r["hfllm_chars_per_token"] < 10 and 1 < r["bare_chars_per_token"] < 10


def test_sft_pad_fraction_and_lora(quick_results):
    r = quick_results["sft"]["results"]
    for row in r["sft"].values():
        assert rate(row["tokens_per_s"]) and 0 <= row["pad_fraction"] <= 1
    full, lora = r["lora_vs_full"]["full"], r["lora_vs_full"]["lora"]
    assert 0 < lora["trainable"] < full["trainable"]
    for m in (full, lora):
        assert rate(m["tokens_per_s"]) and m["peak_rss_mb"] >= m["rss_after_imports_mb"] > 0


def test_rl_phases_add_up(quick_results):
    r = quick_results["rl"]["results"]
    for algo in ("ppo", "grpo"):
        phases = r[algo]
        assert rate(phases["total"]) and rate(phases["generation"]) and rate(phases["reward"])
        parts = sum(v for k, v in phases.items() if k != "total")
        assert parts == pytest.approx(phases["total"], abs=0.5)
    assert rate(r["ppo"]["reference"]) and rate(r["grpo"]["reference"])


def test_every_section_names_its_command_and_machine(quick_results):
    info = run_all.machine()
    for name, result in quick_results.items():
        body = run_all.section(name, result, info, 0.5, 3.0, 1.0, True)
        assert body.startswith("## ") and f"bench/{run_all.BENCHMARKS[name][0]} --quick" in body
        assert "CPU cores" in body and "shared with other jobs" in body and result["markdown"] in body
        assert "shared with other jobs" not in run_all.section(name, result, info, 0.5, 2.0, 1.0, True)


def test_gpu_pretraining_benchmark_runs_its_whole_path_on_a_toy_model(capsys):
    """bench_gpu_pretrain.py is meant for a CUDA GPU (124 M model, bf16); --quick runs the same
    code on the CPU: the pretrain stage, the step timer, what ran, MFU against the measured peak."""
    import bench_gpu_pretrain

    r = bench_gpu_pretrain.main(["--quick", "--steps", "24"])
    assert r["device"] == "cpu" and r["precision"] == "fp32" and r["attention"] == "sdpa"
    assert 0.01 < r["parameters_m"] < 1 and rate(r["tokens_per_s"]) and rate(r["peak_tflops"])
    assert 0 < r["mfu"] <= 1 and r["mfu"] == pytest.approx(r["model_tflops"] / r["peak_tflops"], rel=0.01)
    assert "| cpu |" in capsys.readouterr().out
