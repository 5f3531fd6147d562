"""Does the GGUF read and answer prompts as the trained model does? Measured with llama.cpp's runtime.

Each comparison is against transformers on the same input (llama-cpp-python, CPU):
- tokens: llama.cpp's tokenizer, built from the GGUF, gives the ids transformers gives, for the check
  prompts (rendered chats included) and for the text llama.cpp's converter identifies tokenizers with;
- chat template: the template in the GGUF's metadata, as llama.cpp renders it, equals transformers'
  rendering of the same conversations. Two renderers: llama-cpp-python's Jinja one (what
  Llama.create_chat_completion uses) and llama.cpp's built-in llama_chat_apply_template (what its tools
  use without --jinja), the latter where it recognises the template's family;
- greedy answers: from the same prompt ids, llama.cpp's greedy tokens against transformers', the stop
  token included, for every GGUF type. f16 must keep a small model's answers identical; q8_0 and q4_k_m
  are reported as the share of tokens that agree.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import torch

from hfllm.export import llamacpp
from hfllm.export.ollama import CHECK_CONVERSATIONS

QUESTIONS = ["What is the capital of France?", "Tell me a short story about a cat.", "What is 3 + 4?",
             "Who wrote the play Hamlet?", "Give me a word that rhymes with day."]
TEXTS = ["Once upon a time", "The sun is", "Water boils at"]
# The converter's own probe text (whitespace runs, emoji, CJK, Khmer, digits, contractions).
PROBE_TEXT = ("\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ "
              "🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
              "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 're "
              "you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL")


def prompts(tokenizer) -> list[tuple[str, bool, list[int]]]:
    """(text, add_special, transformers' ids): chats rendered by the template, which writes its own special
    tokens, then plain texts tokenized as the tokenizer does by default (a BOS where it adds one)."""
    out = []
    if tokenizer.chat_template:
        for question in QUESTIONS:
            text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                 add_generation_prompt=True)
            out.append((text, False, tokenizer(text, add_special_tokens=False)["input_ids"]))
    return out + [(text, True, tokenizer(text)["input_ids"]) for text in TEXTS]


def transformers_greedy(model, ids: list[int], stop: list[int], pad: int | None, n: int) -> list[int]:
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=False, max_new_tokens=n, eos_token_id=stop, pad_token_id=pad)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids], device=model.device), generation_config=config,
                             attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=model.device))
    new = out[0, len(ids):].tolist()
    return new[:next((i + 1 for i, t in enumerate(new) if t in stop), len(new))]


def llama_greedy(llm, ids: list[int], n: int) -> list[int]:
    """Argmax of llama.cpp's logits, step by step, until an end-of-generation token of the GGUF."""
    llama_cpp = llamacpp.runtime()
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    llm.reset()
    llm.eval(ids)
    new: list[int] = []
    while len(new) < n:
        token = int(llm.scores[llm.n_tokens - 1].argmax())
        new.append(token)
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            break
        llm.eval([token])
    return new


def builtin_render(llm, messages: list[dict]) -> str | None:
    """llama.cpp's own llama_chat_apply_template on the GGUF's template; None where it does not know it."""
    llama_cpp = llamacpp.runtime()
    template = llama_cpp.llama_model_chat_template(llm.model, None)
    if template is None:
        return None
    chat = (llama_cpp.llama_chat_message * len(messages))(
        *[llama_cpp.llama_chat_message(m["role"].encode(), m["content"].encode()) for m in messages])
    size = 1 << 14
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_chat_apply_template(template, chat, len(messages), True, buf, size)
    return None if n < 0 else buf.raw[:n].decode("utf-8", errors="replace")


def jinja_render(llm, messages: list[dict]) -> str | None:
    """llama-cpp-python's rendering of the GGUF's template, with the GGUF's eos and bos, as its chat API does."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    text = lambda i: llm.detokenize([i], special=True).decode() if i >= 0 else ""  # noqa: E731
    return Jinja2ChatFormatter(template, eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos()))(
        messages=messages).prompt


def _open(path: Path, context: int):
    from llama_cpp import Llama

    return Llama(str(path), n_ctx=context, logits_all=True, n_threads=os.cpu_count() or 1, verbose=False)


def run(model, tokenizer, ggufs: dict[str, Path], stop: list[int], max_new_tokens: int) -> dict:
    """The comparisons, as a dict that export.json keeps."""
    cases = prompts(tokenizer)
    context = getattr(model.config, "max_position_embeddings", None) or 2048
    longest = max(len(ids) for _, _, ids in cases)
    n = max(1, min(max_new_tokens, context - longest))
    expected = [transformers_greedy(model, ids, stop, tokenizer.pad_token_id, n) for _, _, ids in cases]
    result: dict = {"prompts": len(cases), "max_new_tokens": n, "types": {}}
    for index, (outtype, path) in enumerate(ggufs.items()):
        llm = _open(path, min(context, longest + n + 1))
        if index == 0:  # tokenizer and template are the same in every type
            texts = cases + [(PROBE_TEXT, False, tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"])]
            same = [llm.tokenize(text.encode(), add_bos=special, special=True) == ids for text, special, ids in texts]
            result["tokens_identical"], result["tokens_compared"] = sum(same), len(same)
            result["template"] = _templates(llm, tokenizer)
        answers = [llama_greedy(llm, ids, n) for _, _, ids in cases]
        agree = sum(_common_prefix(a, b) for a, b in zip(expected, answers))
        total = sum(max(len(a), len(b)) for a, b in zip(expected, answers))
        result["types"][outtype] = {"agreement": round(agree / max(total, 1), 4), "tokens_agreeing": agree,
                                    "tokens": total, "identical_answers": sum(a == b for a, b in
                                                                              zip(expected, answers))}
        llm.close()
    return result


def _templates(llm, tokenizer) -> dict:
    if not tokenizer.chat_template:
        return {"in_gguf": "tokenizer.chat_template" in llm.metadata}
    want = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in CHECK_CONVERSATIONS]
    jinja = [jinja_render(llm, m) for m in CHECK_CONVERSATIONS]
    builtin = [builtin_render(llm, m) for m in CHECK_CONVERSATIONS]
    return {"in_gguf": "tokenizer.chat_template" in llm.metadata, "conversations": len(want),
            "jinja_identical": sum(a == b for a, b in zip(want, jinja)),
            "builtin_identical": sum(a == b for a, b in zip(want, builtin)),
            "builtin_recognised": all(b is not None for b in builtin)}


def _common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def passed(result: dict) -> bool:
    """Tokens and the Jinja rendering must match; answers are measured, not required (quantization moves them)."""
    template = result["template"]
    same_template = "conversations" not in template or (  # a model without a chat template has none to compare
        template["in_gguf"] and template["jinja_identical"] == template["conversations"])
    return result["tokens_identical"] == result["tokens_compared"] and same_template


def summary(result: dict) -> str:
    t = result["template"]
    lines = [f"check: token ids identical on {result['tokens_identical']}/{result['tokens_compared']} texts"]
    if "conversations" in t:
        builtin = (f"{t['builtin_identical']}/{t['conversations']}" if t["builtin_recognised"]
                   else "template not among its built-in families")
        lines.append(f"check: chat template from the GGUF = transformers' rendering: llama-cpp-python (Jinja) "
                     f"{t['jinja_identical']}/{t['conversations']}, llama.cpp built-in {builtin}")
    for outtype, r in result["types"].items():
        lines.append(f"check: {outtype}: greedy tokens agreeing with transformers {100 * r['agreement']:.1f}% "
                     f"({r['tokens_agreeing']}/{r['tokens']}), identical answers {r['identical_answers']}/"
                     f"{result['prompts']}")
    return "\n".join(lines)
