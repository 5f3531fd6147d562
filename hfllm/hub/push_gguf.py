"""Push a GGUF export (``hfllm export --format gguf|ollama``) with a card that says how to run it.

    hfllm export --model_name_or_path runs/tiny/sft --format ollama --outtype q8_0 --output_dir exports/tiny-ollama
    hfllm push exports/tiny-ollama --repo_id you/tiny-sft-GGUF --base_repo_id you/tiny-sft

push recognises an export folder by its export.json (``--format gguf`` says so explicitly): the export
stays a step of its own, so its options (--outtype, --check) are not repeated here and its check is read
before anything is pushed. What goes up: the .gguf files, the Modelfile, export.json without local
paths, and for Ollama's Hub integration (``ollama run hf.co/user/repo``) the Modelfile's TEMPLATE as
``template`` and its PARAMETERs as ``params``, the files Ollama reads from a Hugging Face repo.
The card's metadata follows the Hub's GGUF conventions: ``library_name: gguf``, ``base_model`` with
``base_model_relation: quantized`` when the trained model is on the Hub.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from hfllm.errors import UserError
from hfllm.hub.card import is_hub_id, short
from hfllm.hub.push import place, recorded_push

RECORD = "export.json"  # hfllm.export.RECORD, not imported: that would load the export stack
TEMPLATE = Path(__file__).with_name("card_gguf.md")


@dataclass
class ExportInfo:
    folder: Path
    record: dict  # export.json
    ggufs: list[str]  # file names, in the order of --outtype
    modelfile: bool
    base: str | None  # Hub id of the trained model, if known


def is_export(folder: str) -> bool:
    path = Path(folder).expanduser()
    return (path / RECORD).is_file() or (path.is_dir() and any(path.glob("*.gguf")))


def find_export(folder: str, fmt: str | None, *, merge: bool, stage: str | None,
                base_repo_id: str | None) -> ExportInfo | None:
    """The export folder to push, or None for a stage or run folder (checked by push.find_stage)."""
    if fmt not in (None, "gguf"):
        raise UserError(f"unknown --format '{fmt}'; push takes --format gguf (an hfllm export --format gguf or "
                        "ollama folder), or no --format for a stage or run folder")
    path = Path(folder).expanduser()
    if not is_export(folder):
        if fmt == "gguf" and path.is_dir():  # a missing folder: push.find_stage says so
            model = folder if any((path / f).is_file() for f in ("config.json", "adapter_config.json")) else \
                "STAGE_FOLDER"
            raise UserError(f"--format gguf pushes an export folder, and {folder} holds no .gguf file: run `hfllm "
                            f"export --model_name_or_path {model} --format gguf --output_dir DIR`, then push DIR")
        return None
    if not (path / RECORD).is_file():
        raise UserError(f"{folder} has .gguf files but no {RECORD}: the export was interrupted or not made by "
                        "hfllm export; run hfllm export again")
    record = json.loads((path / RECORD).read_text())
    if merge:
        raise UserError("--merge is for a LoRA adapter stage; an export is already merged (hfllm export merges "
                        "adapters first): drop --merge")
    if stage:
        raise UserError(f"--stage picks a stage of a run folder, and {folder} is an export folder: drop --stage")
    if record.get("format") not in ("gguf", "ollama"):
        raise UserError(f"{folder} is an --format {record.get('format')} export, not a GGUF one: push the stage it "
                        "was exported from (hfllm push STAGE_FOLDER), or export it with --format gguf")
    ggufs = [f for f in record.get("files", []) if f.endswith(".gguf")]
    missing = [f for f in record.get("files", []) if not (path / f).is_file()]
    if missing or not ggufs:
        raise UserError(f"{folder} lacks {', '.join(missing) if missing else 'a .gguf file'} that its {RECORD} "
                        "lists; run hfllm export again")
    if "check" in record and not _check_passed(record["check"]):
        raise UserError(f"refusing to push: the export's --check found that the GGUF does not read prompts as the "
                        f"trained model does (see {RECORD}); fix that and export again")
    source = record.get("source")
    base = base_repo_id or (source if is_hub_id(source) else None) or recorded_push(source)
    return ExportInfo(path, record, ggufs, "Modelfile" in record.get("files", []), base)


def _check_passed(result: dict) -> bool:
    from hfllm.export.check import passed  # imports torch, which push has loaded anyway

    return passed(result)


def ollama_files(modelfile: str) -> dict[str, str]:
    """The Modelfile's TEMPLATE and PARAMETERs as the ``template`` and ``params`` files Ollama reads from a
    Hugging Face repo (stop as a list, numbers as numbers)."""
    template = re.search(r'^TEMPLATE """(.*?)"""', modelfile, re.S | re.M)
    params: dict = {}
    for key, value in re.findall(r"^PARAMETER (\w+) (.+)$", modelfile, re.M):
        parsed = json.loads(value) if re.fullmatch(r'-?[\d.]+(e-?\d+)?|".*"', value) else value
        if key == "stop":
            params.setdefault("stop", []).append(parsed)
        else:
            params[key] = parsed
    return {**({"template": template.group(1)} if template else {}),
            **({"params": json.dumps(params, indent=2) + "\n"} if params else {})}


def _size(n: int) -> str:
    return next(f"{n / 1024 ** i:.1f} {unit}" for i, unit in ((3, "GB"), (2, "MB"), (1, "KB"), (0, "B"))
                if n >= 1024 ** i or i == 0)


def stage_export(info: ExportInfo, dest: Path, repo_id: str, *, license: str, revision: str | None,
                 endpoint: str, link: bool) -> list[str]:
    """Fill ``dest`` with what will be pushed (card included); return what was left out."""
    from huggingface_hub import ModelCard, ModelCardData

    for name in info.ggufs + ["Modelfile"] * info.modelfile:
        place(info.folder / name, dest / name, link)
    if info.modelfile:
        for name, text in ollama_files((info.folder / "Modelfile").read_text()).items():
            (dest / name).write_text(text)
    record = {k: v for k, v in info.record.items() if k != "arguments"}
    record["source"] = short(record.get("source"))  # a local path names the user's folders
    record["outtype"] = info.record.get("arguments", {}).get("outtype")
    (dest / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    skipped = sorted(p.name for p in info.folder.iterdir() if p.name not in {*info.ggufs, "Modelfile", RECORD})

    rev = revision or "main"
    files = [{"name": f, "tag": _tag(f),
              "size": _size((info.folder / f).stat().st_size), "url": f"{endpoint}/{repo_id}/blob/{rev}/{f}"}
             for f in info.ggufs]
    template = info.record.get("check", {}).get("template", {})
    check = None
    if "check" in info.record:
        from hfllm.export.check import summary

        check = summary(info.record["check"])
    source = info.record.get("source")
    origin = f"[{info.base}]({endpoint}/{info.base})" if info.base else f"the hfllm model `{short(source)}`"
    tags = ["hfllm", "gguf", "llama.cpp"] + ["ollama"] * info.modelfile + ["text-generation"]
    data = ModelCardData(license=license, base_model=info.base, library_name="gguf", tags=tags,
                         pipeline_tag="text-generation", **({"base_model_relation": "quantized"} if info.base else {}))
    stops = info.record.get("stop_tokens") or []
    chat = info.record.get("chat_template")  # None: an export older than this field
    stop_text = (f"the tokens that end an answer ({', '.join(f'`{s}`' for s in stops) or 'eos'}) are in each "
                 "file's metadata")
    metadata_text = {True: f"The chat template and {stop_text}.", None: stop_text[0].upper() + stop_text[1:] + ".",
                     False: f"The model has no chat template; {stop_text}."}[chat]
    versions = "\n".join(f"- {name} {metadata.version(name)}" for name in ("hfllm", "huggingface_hub")
                         if _installed(name))
    card = ModelCard.from_template(
        data, template_path=str(TEMPLATE), name=repo_id.split("/")[-1], origin=origin,
        export_format=info.record.get("format"), llama_cpp=info.record.get("llama_cpp_python", "-"),
        metadata_text=metadata_text, files=files, repo_id=repo_id, tag=_tag(info.ggufs[0]),  # the Modelfile's FROM
        branch=revision if revision and revision != "main" else None,
        jinja=chat is not False and not template.get("builtin_recognised", False), modelfile=info.modelfile,
        stop_words="stop at " + " and ".join(f"`{s}`" for s in stops) if stops else "where to stop",
        check=check, versions=versions)
    card.save(dest / "README.md")
    return skipped


def _tag(gguf_name: str) -> str:
    """The type in hfllm export's file name (model-q8_0.gguf: Q8_0), as llama.cpp's -hf and Ollama's hf.co tags
    name it."""
    return gguf_name.rsplit("-", 1)[-1].removesuffix(".gguf").upper()


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False
