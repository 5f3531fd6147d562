"""The serving-ready Hugging Face folder: what vLLM, TGI and `transformers serve` load as it is.

- the model as safetensors, a LoRA adapter merged into its base first;
- generation_config.json whose eos_token_id lists every token that ends an answer (eos and the chat
  template's end of turn, e.g. <|im_end|>), which servers read to know where to stop;
- the chat template inside tokenizer_config.json, where TGI and llama.cpp's converter read it, without
  transformers' {% generation %} training markers, which their Jinja engines reject;
- nothing from training: no checkpoints, optimizer states, training_args.bin, metrics or plots.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hfllm.chat_template import end_of_turn_ids
from hfllm.errors import UserError
from hfllm.export.ollama import without_training_markers


def _turn_end(tokenizer) -> list[int]:
    """The special token the template writes right after an answer, found among every added special token:
    end_of_turn_ids reads all_special_tokens, which a tokenizer converted from GGUF limits to eos (Qwen's
    <|im_end|> is then an added special token that it does not list)."""
    marker = "Zq9xanswer"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}],
                                         tokenize=False)
    first = tokenizer(text.split(marker, 1)[1].lstrip(), add_special_tokens=False)["input_ids"][:1] \
        if marker in text else []
    added = tokenizer.added_tokens_decoder
    return [i for i in first if i in tokenizer.all_special_ids or (i in added and added[i].special)]


def stop_ids(model, tokenizer) -> list[int]:
    """Every id that ends an answer: generation_config's eos ids, the tokenizer's eos, the end of a turn."""
    configured = model.generation_config.eos_token_id
    ids = list(configured) if isinstance(configured, (list, tuple)) else [] if configured is None else [configured]
    if tokenizer.chat_template:
        ids += end_of_turn_ids(tokenizer) + _turn_end(tokenizer)
    elif tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(int(i) for i in ids))


def prepare(model, tokenizer) -> list[int]:
    """Set up model and tokenizer for serving, in memory; return the stop ids."""
    if tokenizer.chat_template:
        if not isinstance(tokenizer.chat_template, str):
            raise UserError("the tokenizer has several named chat templates; hfllm exports a single template")
        tokenizer.chat_template = without_training_markers(tokenizer.chat_template)
    ids = stop_ids(model, tokenizer)
    config = model.generation_config
    config.eos_token_id = ids if len(ids) > 1 else ids[0] if ids else None
    if config.pad_token_id is None and tokenizer.pad_token_id is not None:
        config.pad_token_id = tokenizer.pad_token_id
    return ids


def save(model, tokenizer, out: Path, source: str) -> None:
    """Write the folder. ``source`` is the tokenizer's local folder (or a Hub id), for a file transformers
    does not write back: a sentencepiece ``tokenizer.model``, which llama.cpp's converter reads."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out, save_jinja_files=False)  # the template goes into tokenizer_config.json
    for name in ("tokenizer.model",):
        original = Path(source) / name
        if original.is_file() and not (out / name).exists():
            shutil.copy(original, out / name)
