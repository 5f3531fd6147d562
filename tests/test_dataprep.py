"""hfllm data clean: planted duplicates, near-duplicates, PII and filter cases, end to end and unit by unit."""

from __future__ import annotations

import importlib.util
import json
import random
import string

import numpy as np
import pytest

from hfllm.data import clean as dataprep, pii
from hfllm.cli import main as cli
from hfllm.data.clean import CleanArguments, normalize, quality_issue
from hfllm.data.dedup import permutations, shingle_hashes, signatures
from hfllm.errors import UserError

RNG = random.Random(0)
VOCAB = ["".join(RNG.choices(string.ascii_lowercase, k=RNG.randint(3, 9))) for _ in range(4000)]


def doc(words: int = 300, seed: int = 0) -> str:
    return " ".join(random.Random(seed).choices(VOCAB, k=words))


def change_words(text: str, positions) -> str:
    """A near-duplicate: the words at these positions replaced by new ones."""
    words = text.split()
    for i in positions:
        words[i] = f"changed{i}"
    return " ".join(words)


def jaccard(a: str, b: str, n: int = 5) -> float:
    sa, sb = set(shingle_hashes(a, n).tolist()), set(shingle_hashes(b, n).tolist())
    return len(sa & sb) / len(sa | sb)


def write_jsonl(path, texts):
    path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    return path


def read_jsonl(path):
    return [json.loads(line)["text"] for line in path.read_text().splitlines()]


def clean(tmp_path, data, *flags, out="out"):
    code = cli(["data", "clean", "--dataset_name", str(data), "--output_dir", str(tmp_path / out), *map(str, flags)])
    assert code == 0
    return json.loads((tmp_path / out / "report.json").read_text())


# ---------------------------------------------------------------- the planted corpus

DISTINCT = [doc(seed=s) for s in range(30)]
NEAR = [change_words(DISTINCT[i], (40, 150, 260)) for i in (0, 2, 3)]  # 3 words of 300 changed
SIMILAR = change_words(DISTINCT[4], range(10, 300, 30))  # 10 words changed: Jaccard ~0.7, below 0.8
PII_SENTENCES = {
    "email": "write to jane.doe+news@example.co.uk today",
    "phone": "or call +1-555-123-4567 in the morning",
    "ip_address": "the server answers at 192.168.10.20 now",
    "credit_card": "charge card 4111 1111 1111 1111 again",
}
LOOKALIKES = ("release v1.2.3.4 and version 10.0.0.1 shipped 2024-01-15 or 15.01.2024 at 12:30:45 "
              "with order 4111111111111112 isbn 978-0-306-40615-7 std::vector 1.2.3.4.5")
FILTERED = {
    "empty": "   ",
    "too_short": "just four words here",
    "too_many_symbols": "#### **** !!!! ???? ---- ==== ++++ //// ok",
    "too_many_digits": "numbers 1234567 8901234 5678901 2345678 9012345 6789012",
    "repeated_lines": "the same line again\nthe same line again\nthe same line again\none different line here",
}


def planted_corpus() -> list[str]:
    pii_docs = [f"{doc(60, 100 + i)} {text} {doc(60, 200 + i)}" for i, text in enumerate(PII_SENTENCES.values())]
    return [*DISTINCT, DISTINCT[0], DISTINCT[0], DISTINCT[1], *NEAR, SIMILAR, *pii_docs,
            f"{doc(60, 300)} {LOOKALIKES} {doc(60, 301)}", *FILTERED.values()]


def test_planted_corpus_end_to_end(tmp_path, capsys):
    data = write_jsonl(tmp_path / "corpus.jsonl", planted_corpus())
    before = data.read_bytes()
    report = clean(tmp_path, data)
    out = tmp_path / "out"

    assert data.read_bytes() == before  # the input is untouched
    assert {p.name for p in tmp_path.iterdir()} == {"corpus.jsonl", "out"}  # no temp folder left behind
    assert {p.name for p in out.iterdir()} >= {"data", "clean.jsonl", "report.json", "metrics.json",
                                               "length_histogram.png"}
    assert report["documents_in"] == 30 + 3 + 3 + 1 + 4 + 1 + 5
    assert report["removed"] == {"empty": 1, "too_short": 1, "too_long": 0, "too_many_symbols": 1,
                                 "too_many_digits": 1, "repeated_lines": 1, "language": 0,
                                 "exact_duplicate": 3, "near_duplicate": 3}
    assert report["documents_out"] == 30 + 1 + 4 + 1
    clusters = report["duplicate_clusters"]
    assert clusters["count"] == 4 and clusters["largest"] == 4  # DISTINCT[0]: two copies and one near copy
    assert report["pii_found"] == {"email": 1, "credit_card": 1, "ip_address": 1, "phone": 1}
    assert report["length"]["unit"] == "words" and report["length"]["max"] == 300

    texts = read_jsonl(out / "clean.jsonl")
    assert len(texts) == report["documents_out"]
    assert all(t in texts for t in DISTINCT) and SIMILAR in texts  # distinct documents survive, first copy kept
    joined = "\n".join(texts)
    for kind, placeholder in pii.PLACEHOLDERS.items():
        assert joined.count(placeholder) == 1, kind
    for secret in ("jane.doe", "555-123-4567", "192.168.10.20", "4111 1111"):
        assert secret not in joined
    assert LOOKALIKES in joined  # versions, dates, times, Luhn-failing numbers stay

    from datasets import load_from_disk

    saved = load_from_disk(str(out / "data"))
    assert saved.column_names == ["text", "id"] and saved["text"] == texts
    printed = capsys.readouterr().out
    assert "near_duplicate" in printed and "PII scrubbed: email 1" in printed


def test_near_dup_threshold_and_switches(tmp_path):
    assert 0.85 < min(jaccard(DISTINCT[i], n) for i, n in zip((0, 2, 3), NEAR))
    assert 0.6 < jaccard(DISTINCT[4], SIMILAR) < 0.78
    data = write_jsonl(tmp_path / "c.jsonl", [*DISTINCT[:5], DISTINCT[1], *NEAR, SIMILAR])
    loose = clean(tmp_path, data, "--near_dup_threshold", "0.5", out="loose")
    assert loose["removed"]["near_duplicate"] == 4 and loose["removed"]["exact_duplicate"] == 1
    exact_only = clean(tmp_path, data, "--near_dedup", "false", out="exact")
    assert exact_only["removed"]["near_duplicate"] == 0 and exact_only["removed"]["exact_duplicate"] == 1
    none = clean(tmp_path, data, "--near_dedup", "false", "--exact_dedup", "false", out="none")
    assert none["documents_out"] == none["documents_in"] == 10


def test_txt_documents_separated_by_blank_lines_and_config_file(tmp_path):
    data = tmp_path / "corpus.txt"
    data.write_text(f"{DISTINCT[0]}\nsecond line of the same document here\n\n{doc(400)}\n\n\n{DISTINCT[0]}\n"
                    "second line of the same document here\n")
    config = tmp_path / "clean.yaml"
    config.write_text("text_unit: document\nmax_words: 350\nnear_dedup: false\n")
    report = clean(tmp_path, data, "--config", config)
    assert report["documents_in"] == 3
    assert report["removed"]["exact_duplicate"] == 1 and report["removed"]["too_long"] == 1
    assert read_jsonl(tmp_path / "out" / "clean.jsonl") == [f"{DISTINCT[0]}\nsecond line of the same document here"]


def test_token_lengths_with_a_tokenizer(tmp_path, tiny_tokenizer):
    from transformers import AutoTokenizer

    data = write_jsonl(tmp_path / "c.jsonl", DISTINCT[:3])
    report = clean(tmp_path, data, "--tokenizer_name_or_path", tiny_tokenizer)
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer)
    assert report["length"]["unit"] == "tokens"
    assert report["length"]["max"] == max(len(tok(t, add_special_tokens=False)["input_ids"]) for t in DISTINCT[:3])


# ---------------------------------------------------------------- refusals

def test_refuses_to_overwrite_then_overwrites(tmp_path, capsys):
    data = write_jsonl(tmp_path / "c.jsonl", DISTINCT[:3])
    clean(tmp_path, data)
    argv = ["data", "clean", "--dataset_name", str(data), "--output_dir", str(tmp_path / "out"),
            "--near_dedup", "false"]
    assert cli(argv) == 2
    assert "already holds a finished run; pass --overwrite" in capsys.readouterr().err
    assert cli([*argv, "--overwrite"]) == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["settings"]["near_dedup"] is False


@pytest.mark.parametrize("flags,message", [
    (["--dataset_name", "missing.txt"], "dataset file not found: missing.txt"),
    (["--dataset_name", "{data}", "--near_dup_threshold", "1.5"], r"near_dup_threshold must be in \(0, 1\]"),
    (["--dataset_name", "{data}", "--max_digit_ratio", "-1"], r"max_digit_ratio must be in \[0, 1\]"),
    (["--dataset_name", "{data}", "--shingle_size", "0"], "shingle_size must be >= 1"),
    (["--dataset_name", "{data}", "--text_unit", "sentence"], "text.unit: invalid choice: 'sentence'"),
    (["--dataset_name", "{data}", "--pii_kinds", "email", "passport"], "pii_kinds must be among"),
    (["--dataset_name", "{data}", "--dataset_text_field", "body"], "has no column 'body' .*set --dataset_text_field"),
    (["--dataset_name", "{empty}"], "dataset file .*empty.jsonl is empty"),
    (["--dataset_name", "{bad}"], "could not read dataset '.*bad.jsonl': JSON parse error"),
    (["--dataset_name", "{data}", "--min_words", "10000"], "every document .* was removed"),
    (["--dataset_name", "{data}", "--output_dir", "{tmp}", "--overwrite"], "holds .*c.jsonl, the dataset"),
    (["--near_dup_treshold", "0.5"], "did you mean 'near_dup_threshold'"),
])
def test_bad_input_is_one_line_user_error(tmp_path, flags, message):
    data = write_jsonl(tmp_path / "c.jsonl", DISTINCT[:2])
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"text": broken\n')
    values = {"data": str(data), "empty": str(tmp_path / "empty.jsonl"), "bad": str(tmp_path / "bad.jsonl"),
              "tmp": str(tmp_path)}
    argv = [f.format(**values) for f in flags]
    if "--output_dir" not in argv:
        argv += ["--output_dir", str(tmp_path / "out")]
    with pytest.raises(UserError, match=message) as info:
        dataprep.main(["clean", *argv])
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_languages_need_a_detector(tmp_path):
    if importlib.util.find_spec("langdetect"):
        pytest.skip("langdetect is installed")
    data = write_jsonl(tmp_path / "c.jsonl", DISTINCT[:2])
    with pytest.raises(UserError, match="pip install langdetect"):
        dataprep.main(["clean", "--dataset_name", str(data), "--languages", "en", "--output_dir", str(tmp_path / "o")])


def test_usage_for_other_subcommands(capsys):
    assert cli(["data"]) == 0 and "hfllm data clean" in capsys.readouterr().out
    assert cli(["data", "dedupe"]) == 2 and "unknown command 'dedupe'" in capsys.readouterr().out
    assert cli(["data", "clean", "--help"]) == 0 and "--near_dup_threshold" in capsys.readouterr().out


# ---------------------------------------------------------------- pure functions

def test_normalize():
    assert normalize("Cafe\u0301") == "Caf\u00e9"  # NFC composes
    assert normalize(" a \t b\u00a0\u00a0c  \r\n\n\n\nd\x00  ") == "a b c\n\nd"
    assert normalize("def f():\n    return  1") == "def f():\n    return 1"  # indentation kept
    assert normalize(None) == "" and normalize("ﬁ", "NFKC") == "fi"


@pytest.mark.parametrize("text,rule", [
    ("", "empty"), ("  \n ", "empty"),
    ("one two three four", "too_short"),
    ("this is a perfectly ordinary sentence, isn't it?", None),
    ("#### **** !!!! ???? ---- ==== ++++ //// ok", "too_many_symbols"),
    ("a b c d e f :) :( ;) :P <3 ^^ ** ##", "too_many_symbols"),
    ("the totals 123456 789012 345678 901234", "too_many_digits"),
    ("the year 2024 had 365 days and 12 months", None),
    ("a line that repeats\na line that repeats\nanother line here", "repeated_lines"),
    ("first line is here\nsecond line is here\nthird line is here\nfirst line is here", None),  # 1 of 4 = 0.25
])
def test_filters_do_what_their_names_say(text, rule):
    assert quality_issue(normalize(text), CleanArguments()) == rule


def test_max_words_and_language_filters():
    args = CleanArguments(max_words=10, languages=["en", "de"])
    assert quality_issue(" ".join(["word"] * 11), args) == "too_long"
    assert quality_issue(" ".join(["word"] * 10), args) is None
    assert quality_issue(" ".join(["mot"] * 10), args, detect=lambda text: "fr") == "language"
    assert quality_issue(" ".join(["Wort"] * 10), args, detect=lambda text: "de") is None


def test_signatures_match_datasketch():
    from datasketch import MinHash

    args = CleanArguments()
    texts = [DISTINCT[0], "short text", "", NEAR[0]]
    sig = signatures(texts, 5, permutations(args.num_perm, args.seed))
    for text, row in zip(texts, sig):
        reference = MinHash(num_perm=args.num_perm, seed=args.seed, scheme="affine32", hashfunc=int)
        reference.update_batch(shingle_hashes(text, 5).tolist())
        assert np.array_equal(reference.hashvalues, row)
    estimate = float(np.mean(sig[0] == sig[3]))
    assert abs(estimate - jaccard(DISTINCT[0], NEAR[0])) < 0.1


def test_shingles_ignore_case_and_punctuation():
    assert np.array_equal(shingle_hashes("The cat, sat on the mat!", 3), shingle_hashes("the cat sat on THE mat", 3))
    assert len(shingle_hashes("two words", 5)) == 1  # shorter than a shingle: one shingle


@pytest.mark.parametrize("kind,text", [
    ("email", "mail bob@example.com now"), ("email", "Contact: jane.doe+news@mail.example.co.uk."),
    ("phone", "call (555) 123-4567"), ("phone", "call 555.123.4567"), ("phone", "ring +44 20 7946 0958"),
    ("phone", "ring 020 7946 0958"), ("phone", "ring +49 (0)30 1234567."),
    ("ip_address", "host 192.168.1.10 is up"), ("ip_address", "from 8.8.8.8."),
    ("ip_address", "v6 2001:db8::1 here"), ("ip_address", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("credit_card", "card 4111 1111 1111 1111"), ("credit_card", "card 5500-0000-0000-0004"),
    ("credit_card", "amex 378282246310005"),
])
def test_each_pii_kind_is_scrubbed(kind, text):
    scrubbed, counts = pii.scrub(text)
    assert counts[kind] == 1 and sum(counts.values()) == 1
    assert pii.PLACEHOLDERS[kind] in scrubbed


@pytest.mark.parametrize("text", [
    "upgrade to v1.2.3.4", "version 1.2.3.4", "release 10.0.0.1", "Python 3.11.2", "see 1.2.3.4.5", "256.1.1.1",
    "on 2024-01-15", "on 15.01.2024", "on 01/15/2024", "at 12:30:45", "std::vector<int>", "loopback ::1",
    "order 4111111111111112", "order 1234567812345678", "isbn 978-0-306-40615-7", "pi is 3.14159265",
    "total 1,234,567.89", "id 5551234567", "user@localhost", "@handle", "2 3 4 5 6 7 8 9 1 2 3 4 5",
])
def test_pii_lookalikes_survive(text):
    assert pii.scrub(text) == (text, dict.fromkeys(pii.KINDS, 0))


def test_pii_kinds_can_be_chosen():
    text = "mail bob@example.com from 10.1.2.3"
    assert pii.scrub(text, ["ip_address"]) == ("mail bob@example.com from <IP_ADDRESS>",
                                               {"email": 0, "credit_card": 0, "ip_address": 1, "phone": 0})


def test_luhn():
    assert pii.luhn_valid("4111111111111111") and pii.luhn_valid("79927398713")
    assert not pii.luhn_valid("4111111111111112")


def test_flags_alone_run_clean_as_a_pipeline_stage_would(tmp_path):
    from hfllm import run_folder

    data = write_jsonl(tmp_path / "c.jsonl", DISTINCT[:3])
    assert dataprep.main(["--dataset_name", str(data), "--output_dir", str(tmp_path / "stage")]) == 0
    assert run_folder.is_complete(tmp_path / "stage")
    assert run_folder.read_metrics(tmp_path / "stage")["documents_out"] == 3
