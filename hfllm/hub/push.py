"""Push a finished stage to the Hugging Face Hub: model, LoRA adapter, or adapter merged into its base.

    hfllm push runs/tiny/sft --repo_id you/tiny-sft
    hfllm push runs/tiny --repo_id you/tiny-chat              # the run's latest finished model stage
    hfllm push runs/tiny --stage sft --merge --repo_id you/tiny-sft-merged --private
    hfllm push runs/tiny/sft --repo_id you/tiny-sft --revision dev --commit_message "more steps"
    hfllm push runs/tiny/sft --repo_id you/tiny-sft --dry_run --output_dir preview   # review, push nothing
    hfllm push exports/tiny-gguf --format gguf --repo_id you/tiny-sft-GGUF   # an hfllm export (hfllm.hub.push_gguf)

What goes up is staged in a temporary folder first: the stage folder's files minus training
leftovers (checkpoint-* folders, training_args.bin, optimizer states) and secret-looking files,
plus a generated model card (README.md, see hfllm.hub.card); the user's folder is never
modified. An adapter must name a base that others can download: a local base path is replaced
by ``--base_repo_id`` (push the base first), or by the hub_model_id its stage pushed itself to.
The token comes from ``--token``, HF_TOKEN or ``hf auth login``; it is never printed or written.
HF_ENDPOINT (a mirror, a test server) is honoured by huggingface_hub.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hfllm import run_folder
from hfllm.config import SECRET_FIELDS, parse_args, renamed
from hfllm.errors import UserError, first_line
from hfllm.hub.card import CardInfo, build_card, check_card, is_hub_id, lineage, read_args, short, source_of
from hfllm.hub.guard import looks_secret, refuse_secrets
from hfllm.stages import MODEL_STAGES  # a run folder pushes one of these
# Never uploaded (also upload_folder's ignore_patterns): training leftovers and secret-looking files.
# (hfllm_run.json: the run's local paths, for this machine only.)
NEVER_UPLOAD = ("checkpoint-*", "checkpoint-*/**", "training_args.bin", "optimizer.*", "scheduler.pt", "scaler.pt",
                "rng_state*", "trainer_state.json", "hfllm_run.json", "*.tmp", "*.env", ".env", ".netrc", "*.pem",
                "*.key", "id_rsa*", "id_ed25519*", "*secret*", "*credential*", "*password*", "token", "stored_tokens",
                "*.token", ".git*")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "chat_template.json", "added_tokens.json", "vocab.json", "merges.txt", "tokenizer.model")


@dataclass
class PushArguments:
    model_name_or_path: str | None = field(default=None, metadata=renamed(
        "folder", help="stage folder (runs/x/sft) or run folder (runs/x); may be given without the flag"))
    repo_id: str | None = field(default=None, metadata={"help": "where to push: user/name (or org/name)"})
    stage: str | None = field(default=None, metadata={"help": "with a run folder: the stage to push (default: the "
                                                              f"latest finished of {'/'.join(MODEL_STAGES)})"})
    merge: bool = field(default=False, metadata={"help": "merge a LoRA adapter into its base; push a standalone model"})
    base_repo_id: str | None = field(default=None, metadata={"help": "Hub id of the base model (replaces a local "
                                                                     "base path in an adapter's adapter_config.json)"})
    revision: str | None = field(default=None, metadata={"help": "branch to push to (created if missing)"})
    private: bool = field(default=False, metadata={"help": "create the repo as private"})
    commit_message: str | None = field(default=None, metadata={"help": "commit message"})
    license: str = field(default="apache-2.0", metadata={"help": "license in the model card"})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or `hf auth login`)"})
    dry_run: bool = field(default=False, metadata={"help": "write the staged folder to --output_dir, push nothing"})
    output_dir: str | None = field(default=None, metadata={"help": "with --dry_run: where to write the staged "
                                                                   "folder (default hub_preview/<name>)"})
    format: str | None = field(default=None, metadata={"help": "gguf: the folder is an `hfllm export --format "
                                                               "gguf|ollama` folder (recognised without the flag)"})


def say(text: str) -> None:
    print(f"hfllm push: {text}", flush=True)


def check_repo_id(repo_id: str | None) -> str:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not repo_id:
        raise UserError("--repo_id is required: where to push, like user/name")
    try:
        validate_repo_id(repo_id)
        if repo_id.count("/") != 1:
            raise HFValidationError(repo_id)
    except HFValidationError:
        raise UserError(f"repo_id must look like user/name (letters, digits, '-', '_', '.'), got '{repo_id}'") from None
    return repo_id


def find_stage(folder: str, stage: str | None) -> tuple[Path, str]:
    """The finished stage folder to push: ``folder`` itself, or one stage of a run folder."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise UserError(f"folder not found: {folder} (pass a stage folder like runs/<name>/sft or a run folder)"
                        if not path.exists() else f"{folder} is a file; pass a stage folder or a run folder")
    marks = ("metrics.json", "config.json", "adapter_config.json", "tokenizer_config.json", "hfllm_args.yaml")
    if any((path / m).exists() for m in marks) or any(path.glob("checkpoint-*")):
        if not run_folder.is_complete(path):
            raise UserError(f"{folder} is not a finished stage: it has no metrics.json (the stage was interrupted "
                            "or is still running; run it again to finish it)")
        name = run_folder.read_metrics(path).get("stage") or path.name
        if stage and stage not in (name, path.name):
            raise UserError(f"--stage {stage} does not match the stage folder {folder} ({name}); pass the run folder")
        return path, name
    done = {d.name: d for d in sorted(path.iterdir()) if d.is_dir() and run_folder.is_complete(d)}
    if stage:
        if stage not in done:
            state = "is not finished" if (path / stage).is_dir() else "does not exist"
            raise UserError(f"stage '{stage}' {state} in {folder}; finished stages: {', '.join(done) or 'none'}")
        chosen = done[stage]
    else:
        candidates = [done[s] for s in MODEL_STAGES if s in done]
        if not candidates:
            raise UserError(f"{folder} is neither a finished stage folder (no metrics.json) nor a run folder with a "
                            f"finished {'/'.join(MODEL_STAGES)} stage"
                            + (f" (finished: {', '.join(done)}; choose one with --stage)" if done else ""))
        chosen = max(candidates, key=lambda d: (run_folder.read_metrics(d).get("finished_at", ""),
                                                (d / "metrics.json").stat().st_mtime))
        say(f"run folder {folder}: pushing its latest finished stage '{chosen.name}' "
            f"(finished: {', '.join(d.name for d in candidates)}; choose another with --stage)")
    return chosen, run_folder.read_metrics(chosen).get("stage") or chosen.name


def recorded_push(source: str | None) -> str | None:
    """The hub_model_id a local stage folder pushed itself to (push_to_hub in its hfllm_args.yaml)."""
    args = read_args(Path(source).expanduser()) if source and Path(source).expanduser().is_dir() else {}
    repo = args.get("hub_model_id")
    return repo if args.get("push_to_hub") and is_hub_id(repo) and repo.count("/") == 1 else None


def describe(folder: Path, stage: str, merge: bool, base_repo_id: str | None) -> CardInfo:
    """What the stage folder holds and what it descends from, for staging and for the card."""
    adapter, full = (folder / "adapter_config.json").is_file(), (folder / "config.json").is_file()
    if merge and not adapter:
        raise UserError(f"--merge needs a LoRA adapter, but {folder} holds none (no adapter_config.json); "
                        "push it without --merge")
    if not (adapter or full or (folder / "tokenizer_config.json").is_file()):
        raise UserError(f"{folder} holds no model, adapter or tokenizer to push")
    source = source_of(folder)
    base = base_repo_id or (source if is_hub_id(source) else None) or recorded_push(source)
    kind = ("merged" if merge else "adapter") if adapter else "model" if full else "tokenizer"
    if kind == "adapter" and not base:
        raise UserError(f"the adapter's base model is a local folder ({short(source)}) that nobody can download from "
                        "the Hub: push the base first and pass --base_repo_id user/base, or push a standalone "
                        "model with --merge")
    config = json.loads((folder / ("adapter_config.json" if adapter else "config.json")).read_text()) \
        if adapter or full else {}
    seq_cls = config.get("task_type") == "SEQ_CLS" or any(
        str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or [])
    tok_config = folder / "tokenizer_config.json"
    chat = (folder / "chat_template.jinja").is_file() or (
        tok_config.is_file() and "chat_template" in json.loads(tok_config.read_text()))
    return CardInfo(folder=folder, stage=stage, kind=kind, task="text-classification" if seq_cls else "text-generation",
                    base=base, base_display=source, chat=chat, args=read_args(folder),
                    metrics=run_folder.read_metrics(folder))


def clean_args(args: dict, token: str | None) -> dict:
    """hfllm_args.yaml without secret-looking entries, the home folder written as ~."""
    home = str(Path.home())
    return {k: v.replace(home, "~") if isinstance(v, str) and home != "/" else v for k, v in args.items()
            if k not in SECRET_FIELDS and not re.search(r"secret|password|api_key|credential|hub_token", k)
            and not (isinstance(v, str) and looks_secret(v, token))}


def merge_adapter(info: CardInfo, dest: Path, token: str | None) -> None:
    """The standalone model + tokenizer of an adapter merged into its base (hfllm merge's save_merged)."""
    from hfllm.stages.merge import save_merged

    say(f"merging the LoRA adapter into its base {short(info.base_display)}")
    save_merged(str(info.folder), str(dest), token=token)


def stage_files(info: CardInfo, dest: Path, repo_id: str, *, license: str, revision: str | None,
                token: str | None, link: bool) -> list[str]:
    """Fill ``dest`` with what will be pushed (card included); return what was left out."""
    from huggingface_hub import constants

    skipped = []
    if info.kind == "merged":
        merge_adapter(info, dest, token)
    for src in sorted(info.folder.iterdir()):
        name = src.name
        if name == "README.md" or (info.kind == "merged" and (name.startswith("adapter_") or name in TOKENIZER_FILES)):
            continue  # replaced: by the generated card, by the merged model
        if src.is_dir() or any(fnmatch.fnmatch(name.lower(), p.lower()) for p in NEVER_UPLOAD):
            skipped.append(f"{name}/" if src.is_dir() else name)
        elif name == "hfllm_args.yaml":
            (dest / name).write_text(yaml.safe_dump(clean_args(info.args, token), sort_keys=True))
        elif name == "adapter_config.json":
            config = {**json.loads(src.read_text()), "base_model_name_or_path": info.base}  # loadable by anyone
            (dest / name).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        else:
            place(src, dest / name, link)
    card = build_card(info, repo_id, license=license, revision=revision, endpoint=constants.ENDPOINT,
                      has_loss_plot=(dest / "loss.png").is_file())
    card.save(dest / "README.md")
    _check_card(dest)
    refuse_secrets(dest, token)
    return skipped


def _check_card(dest: Path) -> None:
    try:
        check_card(dest / "README.md")
    except ValueError as exc:
        raise UserError(f"the generated model card does not parse back: {exc}") from None


def place(src: Path, dst: Path, link: bool) -> None:
    try:  # never rewritten: a hard link spares copying big weights (--dry_run gets copies)
        if not link:
            raise OSError("copy wanted")
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def resolve_token(token: str | None) -> str:
    from huggingface_hub import get_token

    token = token or get_token()  # HF_TOKEN, then the `hf auth login` cache
    if not token:
        raise UserError("no Hugging Face token: run `hf auth login` or set HF_TOKEN")
    return token


@contextmanager
def hub_errors(repo_id: str):
    """Turn what the Hub or the network says into one line naming the endpoint."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    transport_error = HfHubHTTPError.__mro__[1]  # the HTTP library's base error (httpx or httpx2)
    endpoint = constants.ENDPOINT
    try:
        yield
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401:
            raise UserError(f"the Hub at {endpoint} rejected the token (401 Unauthorized): make a token with write "
                            f"access at {endpoint}/settings/tokens, then run `hf auth login` or set HF_TOKEN") from None
        if status == 403:
            raise UserError(f"the token may not write to {repo_id} on {endpoint} (403 Forbidden): it needs the "
                            f"'write' role, and '{repo_id.split('/')[0]}' must be you or one of your orgs") from None
        if status is not None and status >= 500:
            raise UserError(f"the Hub at {endpoint} failed (HTTP {status}); nothing was committed, try again later") \
                from None
        raise UserError(f"the Hub at {endpoint} refused the push (HTTP {status}): {first_line(exc)}") from None
    except (transport_error, ConnectionError, TimeoutError) as exc:
        detail = first_line(exc) if str(exc).strip() else "no answer"
        raise UserError(f"could not reach the Hub at {endpoint} ({type(exc).__name__}: {detail}); "
                        "check the network or HF_ENDPOINT") from None


def upload(api, staging: Path, repo_id: str, *, private: bool, revision: str | None, commit_message: str) -> str:
    """Validate the card, create the repo (and branch), upload the folder: one commit, or none."""
    from huggingface_hub import ModelCard, constants

    with hub_errors(repo_id):
        try:
            ModelCard.load(staging / "README.md").validate()
        except ValueError as exc:
            raise UserError(f"the Hub rejected the model card's metadata: {str(exc).strip()[:300]}") from None
        api.create_repo(repo_id, private=private, exist_ok=True)
        if private and not api.model_info(repo_id).private:
            say(f"note: {repo_id} already exists and is public; --private only applies to a new repo")
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(folder_path=str(staging), repo_id=repo_id, revision=revision,
                                   commit_message=commit_message, ignore_patterns=list(NEVER_UPLOAD))
    url = f"{constants.ENDPOINT}/{repo_id}" + (f"/tree/{revision}" if revision and revision != "main" else "")
    say(f"pushed to {url} (commit {commit.oid[:8]})")
    return url


def push(folder: str, repo_id: str, *, stage: str | None = None, merge: bool = False, base_repo_id: str | None = None,
         revision: str | None = None, private: bool = False, commit_message: str | None = None,
         license: str = "apache-2.0", token: str | None = None, dry_run: bool = False,
         output_dir: str | None = None, format: str | None = None) -> str:
    """Stage ``folder`` (a stage, run or GGUF export folder) with its card and push it; return the URL (or the
    preview folder)."""
    from hfllm.hub import push_gguf

    check_repo_id(repo_id)
    if base_repo_id:
        check_repo_id(base_repo_id)
    export = push_gguf.find_export(folder, format, merge=merge, stage=stage, base_repo_id=base_repo_id)
    if export is not None:
        path, title = export.folder, f"{export.record['format']} export"
        what = f"GGUF export ({', '.join(export.ggufs)})"

        def stage_into(dest: Path, secret: str | None, link: bool) -> list[str]:
            from huggingface_hub import constants

            skipped = push_gguf.stage_export(export, dest, repo_id, license=license, revision=revision,
                                             endpoint=constants.ENDPOINT, link=link)
            _check_card(dest)
            refuse_secrets(dest, secret)
            return skipped
    else:
        path, title = find_stage(folder, stage)
        info = describe(path, title, merge, base_repo_id)
        what = f"{title} " + {"model": "model", "adapter": f"LoRA adapter (base {info.base})",
                              "merged": "merged model", "tokenizer": "tokenizer"}[info.kind]
        title = f"{title} stage"

        def stage_into(dest: Path, secret: str | None, link: bool) -> list[str]:
            return stage_files(info, dest, repo_id, license=license, revision=revision, token=secret, link=link)
    if dry_run:
        out = Path(output_dir or Path("hub_preview") / repo_id.split("/")[-1]).expanduser()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UserError(f"output_dir {out} exists and is not empty; choose another --output_dir")
        run = path.parent if export is None and len(lineage(path)) > 1 else path
        if any(out.resolve().is_relative_to(p.resolve()) for p in (Path(folder), path, run)):
            raise UserError("--output_dir must be outside the run folder being pushed (it is never modified)")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        try:  # staged beside the target, then renamed: a failure leaves nothing half-written
            skipped = stage_into(tmp, token, False)
            if out.exists():
                out.rmdir()  # an empty folder the user made
            tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _report(what, out, skipped)
        say(f"dry run: nothing was pushed; review {out} (README.md is the model card)")
        return str(out)
    from huggingface_hub import HfApi

    api = HfApi(token=resolve_token(token))
    with hub_errors(repo_id):
        api.whoami()  # a bad token fails here, before any (slow) merge
    with tempfile.TemporaryDirectory(prefix="hfllm-push-") as tmp:
        skipped = stage_into(Path(tmp), api.token, True)
        _report(what, Path(tmp), skipped)
        return upload(api, Path(tmp), repo_id, private=private, revision=revision,
                      commit_message=commit_message or f"hfllm push: {title}")


def _report(what: str, staged: Path, skipped: list[str]) -> None:
    files = sorted(p.name for p in staged.iterdir())
    say(f"{what}: {len(files)} files ({', '.join(files)})")
    if skipped:
        say(f"left out: {', '.join(skipped)}")


def repo_for_stage(hub_model_id: str | None, output_dir: str | Path, token: str | None = None) -> str:
    """Where a stage with push_to_hub pushes: ``hub_model_id``; one with no namespace (or none at all) goes
    under the token's user (as in transformers), named ``<run>-<stage>`` by default."""
    if hub_model_id and "/" in hub_model_id:
        return check_repo_id(hub_model_id)
    from huggingface_hub import HfApi

    folder = Path(output_dir).resolve()
    name = hub_model_id or f"{folder.parent.name}-{folder.name}"
    with hub_errors(name):
        user = HfApi(token=resolve_token(token)).whoami()["name"]
    return check_repo_id(f"{user}/{name}")


def _folder_as_flag(argv: list[str]) -> list[str]:
    """``hfllm push FOLDER --repo_id x`` (the folder anywhere) -> ``--model_name_or_path FOLDER --repo_id x``."""
    bools = {"merge", "private", "dry_run"}
    out, bare, i = [], [], 0
    while i < len(argv):
        arg, nxt = argv[i], argv[i + 1] if i + 1 < len(argv) else None
        if not arg.startswith("-"):
            bare.append(arg)
        else:
            out.append(arg)
            name = arg.lstrip("-").split("=", 1)[0].replace("-", "_").removeprefix("no_")
            if nxt is not None and "=" not in arg and not nxt.startswith("--") and (
                    name not in bools or nxt.lower() in ("true", "false", "yes", "no", "1", "0")):
                out.append(nxt)
                i += 1
        i += 1
    if len(bare) > 1:  # the words are not echoed: one of them could be a token
        raise UserError(f"expected one folder, got {len(bare)} bare arguments (flags look like --name value)")
    return ["--model_name_or_path", bare[0], *out] if bare else out


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        import argparse

        from transformers import HfArgumentParser

        print(HfArgumentParser([PushArguments], prog="hfllm push", description=__doc__,
                               usage="hfllm push RUN_STAGE_OR_EXPORT_FOLDER --repo_id user/name [--flag value ...]",
                               formatter_class=argparse.RawDescriptionHelpFormatter).format_help())
        return 0
    (args,), _ = parse_args([PushArguments], _folder_as_flag(list(argv)), prog="hfllm push")
    if not args.model_name_or_path:
        raise UserError("which folder? usage: hfllm push RUN_OR_STAGE_FOLDER --repo_id user/name")
    push(args.model_name_or_path, args.repo_id, stage=args.stage, merge=args.merge, base_repo_id=args.base_repo_id,
         revision=args.revision, private=args.private, commit_message=args.commit_message, license=args.license,
         token=args.token, dry_run=args.dry_run, output_dir=args.output_dir, format=args.format)
    return 0
