"""Export a trained model for where it runs next: a serving-ready HF folder, GGUF, or Ollama.

    hfllm export --model_name_or_path runs/tiny/sft --format hf --output_dir exports/sft-hf
    hfllm export --model_name_or_path runs/tiny/sft --format gguf --outtype f16 q8_0 --output_dir exports/gguf --check
    hfllm export --model_name_or_path runs/mine/sft-lora --format ollama --outtype q8_0 --output_dir exports/sft-ollama

A LoRA adapter is merged into its base first. ``hf`` writes a folder that vLLM, TGI and `transformers serve`
load as it is (hfllm.export.hf_folder). ``gguf`` runs llama.cpp's own converter on that folder
(hfllm.export.gguf); ``ollama`` adds a Modelfile whose TEMPLATE is the chat template translated to Ollama's
Go template (hfllm.export.ollama). ``--check`` compares the GGUF with the trained model in transformers:
token ids, the chat template as llama.cpp's runtime renders it from the GGUF's metadata, and greedy answers
(hfllm.export.check). Every input is checked before any weights load; a folder is never replaced without
--overwrite, and never one that holds an input.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hfllm.config import parse_args
from hfllm.errors import UserError

FORMATS = ("hf", "gguf", "ollama")
RECORD = "export.json"  # written last: its presence marks a finished export


@dataclass
class ExportArguments:
    model_name_or_path: str | None = field(default=None, metadata={"help": "stage folder, HF folder, LoRA adapter "
                                                                           "(merged into its base) or Hub id"})
    format: str = field(default="gguf", metadata={"help": "hf (serving-ready folder), gguf, or ollama (GGUF + "
                                                          "Modelfile)"})
    output_dir: str | None = field(default=None, metadata={"help": "folder to write (new, or replaced with "
                                                                   "--overwrite)"})
    outtype: list[str] = field(default_factory=lambda: ["f16"], metadata={
        "help": "GGUF types, llama.cpp's names: f32 f16 bf16 q8_0 q4_k_m (several allowed; ollama uses the first)"})
    check: bool = field(default=False, metadata={"help": "compare the GGUF with the trained model (needs "
                                                         "llama-cpp-python)"})
    check_max_new_tokens: int = field(default=32, metadata={"help": "greedy tokens per prompt in --check"})
    model_revision: str | None = field(default=None, metadata={"help": "Hub revision of the model"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow code from the model repo to run"})
    overwrite: bool = field(default=False, metadata={"help": "replace output_dir if it holds anything"})


def _inputs(name: str) -> dict[str, Path]:
    """Local folders the export reads, as named to the user: the model, and an adapter's base."""
    from hfllm.loading import adapter_base, is_adapter_folder

    found = {name: Path(name).expanduser()} if Path(name).expanduser().exists() else {}
    if found and is_adapter_folder(name) and Path(adapter_base(name)).expanduser().exists():
        found[f"{name}'s base model {adapter_base(name)}"] = Path(adapter_base(name)).expanduser()
    return {shown: path.resolve() for shown, path in found.items()}


def check_arguments(args: ExportArguments, explicit: set[str]) -> tuple[str, Path]:
    """Every mistake in the command line, before anything loads."""
    from hfllm.export.gguf import OUTTYPES
    from hfllm.loading import check_model_source, check_safe_weights

    if not args.model_name_or_path or not args.output_dir:
        raise UserError("usage: hfllm export --model_name_or_path MODEL --format hf|gguf|ollama --output_dir DIR")
    if args.format not in FORMATS:
        raise UserError(f"unknown --format '{args.format}'; choose one of {', '.join(FORMATS)}")
    args.outtype = [t.lower() for t in args.outtype]
    for outtype in args.outtype:
        if outtype not in OUTTYPES:
            raise UserError(f"unknown --outtype '{outtype}'; choose from {', '.join(OUTTYPES)}")
    if args.format == "hf" and "outtype" in explicit:
        raise UserError("--outtype is for --format gguf or ollama; --format hf keeps the model's own dtype")
    if args.format == "hf" and args.check:
        raise UserError("--check compares a GGUF with the trained model; use it with --format gguf or ollama")
    name = args.model_name_or_path
    check_model_source(name)
    check_safe_weights(name)
    out = Path(args.output_dir).expanduser().resolve()
    for shown, source in _inputs(name).items():
        if out == source or source in out.parents or out in source.parents:
            raise UserError(f"output_dir {args.output_dir} is, holds or lies inside {shown}, which is being "
                            "exported; choose another folder")
    if out.exists() and not out.is_dir():
        raise UserError(f"output_dir {args.output_dir} is a file; choose a folder path")
    check_output(args, out)
    return name, out


def check_output(args: ExportArguments, out: Path) -> None:
    """--overwrite replaces only a finished export, and only when it holds nothing the export did not write (as
    every stage's folder, hfllm.run_folder): never the working folder, a folder above it, or the user's files."""
    cwd = Path.cwd().resolve()
    if out == cwd or out in cwd.parents:
        raise UserError(f"output_dir {args.output_dir} is the working folder{' or a folder above it' if out != cwd else ''}"
                        "; an export writes a folder of its own: choose a new one such as exports/<name>")
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not names:
        return
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    if not (out / RECORD).is_file():
        raise UserError(f"output_dir {args.output_dir} is not empty: it holds {shown}, which hfllm export did not "
                        "write; choose another --output_dir")
    if not args.overwrite:
        raise UserError(f"output_dir {args.output_dir} already holds a finished export; pass --overwrite to replace "
                        "it or choose another --output_dir")
    try:
        written = set(json.loads((out / RECORD).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        written = set()
    extra = [n for n in names if n not in written | {RECORD}]
    if extra:
        raise UserError(f"output_dir {args.output_dir} holds files besides the export hfllm wrote there "
                        f"({', '.join(extra[:3])}); move them away, or choose another --output_dir")


def _architecture(name: str, revision: str | None, trust_remote_code: bool) -> str:
    from transformers import AutoConfig

    from hfllm.loading import adapter_base, is_adapter_folder

    source = adapter_base(name) if is_adapter_folder(name) else name
    config = AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    return (config.architectures or [type(config).__name__.replace("Config", "ForCausalLM")])[0]


def _stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name.rstrip("/")).name).strip("-") or "model"


def export(args: ExportArguments, explicit: set[str]) -> dict:
    from hfllm.export import gguf, hf_folder, llamacpp, ollama
    from hfllm.loading import adapter_base, is_adapter_folder, load_causal_lm, load_tokenizer

    name, out = check_arguments(args, explicit)
    tokenizer = load_tokenizer(name, revision=args.model_revision, trust_remote_code=args.trust_remote_code)
    # where the tokenizer's files are: an adapter saved without them uses its base's
    tokenizer_source = adapter_base(name) if is_adapter_folder(name) and not (
        Path(name) / "tokenizer_config.json").is_file() else name
    parts = None
    if args.format == "ollama":
        if not tokenizer.chat_template:
            raise UserError(f"{name} has no chat template, which an Ollama Modelfile needs; export --format gguf, "
                            "or fine-tune it for chat first (hfllm sft gives it hfllm's template)")
        adds_bos = tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
        parts = ollama.translate(tokenizer, ollama.without_training_markers(tokenizer.chat_template), adds_bos)
    tree = gpt2_pre = None
    if args.format != "hf":
        tree = llamacpp.source_tree()
        if args.check or any(t in gguf.QUANTIZED_TYPES for t in args.outtype):
            llamacpp.runtime()
        gpt2_pre = gguf.probe(tree, tokenizer_source, _architecture(name, args.model_revision, args.trust_remote_code),
                              tokenizer, name)

    model = load_causal_lm(name, revision=args.model_revision, trust_remote_code=args.trust_remote_code,
                           merge_adapter=True).eval()
    stop = hf_folder.prepare(model, tokenizer)
    if out.exists() and args.overwrite:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"source": name, "format": args.format, "stop_ids": stop,
              "stop_tokens": tokenizer.convert_ids_to_tokens(stop), "chat_template": bool(tokenizer.chat_template),
              "files": []}
    if args.format == "hf":
        hf_folder.save(model, tokenizer, out, tokenizer_source)
        record["files"] = sorted(p.name for p in out.iterdir())
    else:
        eot = next((i for i in stop if i != tokenizer.eos_token_id), None)
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            hf_folder.save(model, tokenizer, Path(tmp), tokenizer_source)
            for outtype in args.outtype:
                path = gguf.convert(tree, Path(tmp), out / f"{_stem(name)}-{outtype}.gguf", outtype,
                                    gpt2_pre=gpt2_pre, eot=eot)
                record["files"].append(path.name)
        record.update(llama_cpp_python=llamacpp.VERSION, gpt2_pre_tokenizer=gpt2_pre)
    if parts is not None:
        context = getattr(model.config, "max_position_embeddings", None)
        (out / "Modelfile").write_text(ollama.modelfile(record["files"][0], parts, record["stop_tokens"],
                                                        model.generation_config, context, name))
        record["files"].append("Modelfile")
    if args.check:
        from hfllm.export import check

        record["check"] = check.run(model, tokenizer, {t: out / f for t, f in zip(args.outtype, record["files"])},
                                    stop, args.check_max_new_tokens)
    record["arguments"] = asdict(args)
    (out / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str]) -> int:
    (args,), explicit = parse_args([ExportArguments], argv, prog="hfllm export")
    record = export(args, explicit)
    print(f"hfllm export: {args.format} export of {args.model_name_or_path} written to {args.output_dir}: "
          f"{', '.join(record['files'])}; stops at {', '.join(record['stop_tokens'])}")
    if "check" in record:
        from hfllm.export import check

        print(check.summary(record["check"]))
        if not check.passed(record["check"]):
            raise UserError("the GGUF does not read prompts as the trained model does (see the check above); "
                            f"the files are in {args.output_dir}")
    return 0
