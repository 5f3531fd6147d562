"""Sample from a model: greedy, multinomial, top-k, top-p, min-p, temperature, beam search.
The one place hfllm generates text: ``generate`` (one prompt), ``stream`` (its pieces as they come),
``generate_answers`` (many conversations, batched), ``next_token_distribution`` (the app's lab),
``generate_scored`` (one answer with the model's own logits at each step: the app's hallucination view).

    hfllm generate --model_name_or_path runs/tiny/pretrain --prompt "Once upon a time"
    hfllm generate --model_name_or_path runs/tiny/sft --chat --prompt "What is 3 + 4?" --temperature 0.7 --top_p 0.9

Greedy decoding is the default; setting temperature, top_k, top_p or min_p turns
sampling on (unless --do_sample false). The decoding rules are transformers'
own (GenerationConfig and its logits processors); this module adds chat
formatting, streaming, seeding, limits and the next-token view used by the app.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field

import torch

from hfllm.config import parse_args, renamed
from hfllm.errors import UserError

SAMPLING_KEYS = ("temperature", "top_k", "top_p", "min_p")


@dataclass
class GenerateArguments:
    model_name_or_path: str | None = field(default=None, metadata=renamed(
        "model", help="stage folder, HF folder, adapter or Hub id"))
    model_revision: str | None = field(default=None, metadata=renamed(
        "revision", help="Hub revision (branch, tag or commit)"))
    prompt: list[str] = field(default_factory=list, metadata={"help": "one or more prompts"})
    chat: bool = field(default=False, metadata={"help": "wrap the prompt as a user turn of the chat template"})
    system_prompt: str | None = field(default=None, metadata={"help": "system message when --chat"})
    max_new_tokens: int = field(default=100, metadata={"help": "tokens to generate at most"})
    do_sample: bool | None = field(default=None, metadata={"help": "sample (true) or decode greedily (false)"})
    temperature: float | None = field(default=None, metadata={"help": "divide logits by this before sampling"})
    top_k: int | None = field(default=None, metadata={"help": "keep the k most likely tokens"})
    top_p: float | None = field(default=None, metadata={"help": "keep the smallest set with this total probability"})
    min_p: float | None = field(default=None, metadata={"help": "drop tokens below min_p x the top probability"})
    num_beams: int = field(default=1, metadata={"help": "beam search with this many beams"})
    repetition_penalty: float = field(default=1.0, metadata={"help": "> 1 discourages repeating tokens"})
    num_return_sequences: int = field(default=1, metadata={"help": "samples per prompt"})
    seed: int | None = field(default=None, metadata={"help": "random seed for reproducible sampling"})
    stream: bool = field(default=True, metadata={"help": "print tokens as they come (one prompt, one sample)"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow code from the model repo to run"})


def sampling_kwargs(args, explicit: set[str] | None = None) -> dict:
    """GenerationConfig keyword arguments from our arguments, with the sampling switch resolved."""
    explicit = explicit or set()
    kwargs = {k: getattr(args, k) for k in SAMPLING_KEYS if getattr(args, k) is not None}
    do_sample = args.do_sample if args.do_sample is not None else bool(kwargs)
    if args.max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be >= 1, got {args.max_new_tokens}")
    if args.temperature is not None and args.temperature <= 0:
        raise UserError("temperature must be > 0 (for deterministic output use greedy decoding: --do_sample false)")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UserError(f"top_p must be in (0, 1], got {args.top_p}")
    if args.min_p is not None and not 0 <= args.min_p < 1:
        raise UserError(f"min_p must be in [0, 1), got {args.min_p}")
    if args.top_k is not None and args.top_k < 1:
        raise UserError(f"top_k must be >= 1, got {args.top_k}")
    if args.num_beams < 1 or args.num_return_sequences < 1:
        raise UserError("num_beams and num_return_sequences must be >= 1")
    if args.num_return_sequences > 1 and not do_sample and args.num_return_sequences > args.num_beams:
        raise UserError("several sequences need sampling (--do_sample true) or at least as many --num_beams")
    # Unset knobs stay off: transformers would otherwise apply the model's defaults (e.g. top_k=50).
    base = {"top_k": None, "top_p": None, "min_p": None, "temperature": None} if do_sample else {}
    return {**base, **kwargs, "do_sample": do_sample, "max_new_tokens": args.max_new_tokens,
            "num_beams": args.num_beams, "repetition_penalty": args.repetition_penalty,
            "num_return_sequences": args.num_return_sequences}


def format_prompt(tokenizer, prompt: str | list[dict], chat: bool, system_prompt: str | None = None) -> str:
    """Plain text, or a conversation rendered by the model's own chat template."""
    if not chat and isinstance(prompt, str):
        return prompt
    if tokenizer.chat_template is None:
        raise UserError("this model's tokenizer has no chat template; drop --chat or use a chat-tuned model")
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    if system_prompt and messages[0].get("role") != "system":
        messages = [{"role": "system", "content": system_prompt}, *messages]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode(model, tokenizer, text: str, max_new_tokens: int, add_special_tokens: bool = False):
    """Tokenize a prompt, refusing one that does not leave room for the answer in the context. A chat
    template writes its own special tokens, so none are added unless asked (plain text to a base model)."""
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=add_special_tokens).to(model.device)
    context = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    length = inputs["input_ids"].shape[1]
    if length == 0:
        raise UserError("the prompt is empty")
    if context and length + max_new_tokens > context:
        raise UserError(f"the prompt is {length} tokens and max_new_tokens is {max_new_tokens}, but the model's "
                        f"context is {context} tokens; shorten the prompt or lower --max_new_tokens")
    return inputs


def _stop_ids(model, tokenizer):
    """Stop at the model's configured end token(s); fall back to the tokenizer's eos."""
    return model.generation_config.eos_token_id or tokenizer.eos_token_id


def generate(model, tokenizer, text: str, gen_kwargs: dict, seed: int | None = None,
             add_special_tokens: bool = False, write=None) -> list[str]:
    """All completions (new text only) for one prompt. ``write``, for one greedy or sampled sequence, gets each
    piece of text as it is decoded, on this thread: a terminal needs no generation thread (``stream``'s)."""
    inputs = encode(model, tokenizer, text, gen_kwargs["max_new_tokens"], add_special_tokens)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(**inputs, **gen_kwargs, eos_token_id=_stop_ids(model, tokenizer),
                             pad_token_id=tokenizer.pad_token_id, streamer=_writer(tokenizer, write))
    start = inputs["input_ids"].shape[1]
    return [tokenizer.decode(seq[start:], skip_special_tokens=True) for seq in out]


def _writer(tokenizer, write):
    if write is None:
        return None
    from transformers import TextStreamer

    class Writer(TextStreamer):  # transformers' streamer prints; this one hands the text to ``write``
        def on_finalized_text(self, text: str, stream_end: bool = False):
            if text:
                write(text)

    return Writer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def generate_scored(model, tokenizer, text: str, gen_kwargs: dict, seed: int | None = None):
    """One completion as (prompt ids, answer ids, raw logits per answer token [steps, vocab]).

    The logits are the model's own, before temperature, filters or penalties (transformers' output_logits), so
    their softmax is the probability the model itself gave each token it produced, however it was picked."""
    inputs = encode(model, tokenizer, text, gen_kwargs["max_new_tokens"])
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(**inputs, **{**gen_kwargs, "num_return_sequences": 1, "num_beams": 1},
                             output_logits=True, return_dict_in_generate=True,
                             eos_token_id=_stop_ids(model, tokenizer), pad_token_id=tokenizer.pad_token_id)
    start = inputs["input_ids"].shape[1]
    answer = out.sequences[0, start:]
    return inputs["input_ids"][0], answer, torch.cat(out.logits, 0)[:len(answer)].float()


def stream(model, tokenizer, text: str, gen_kwargs: dict, seed: int | None = None, stop_event=None):
    """An iterator of new text pieces while generation runs in a thread (beam search cannot stream).

    The prompt is checked at once, so a bad prompt raises here rather than mid-iteration.
    """
    inputs = encode(model, tokenizer, text, gen_kwargs["max_new_tokens"])
    return _stream(model, tokenizer, inputs, gen_kwargs, seed, stop_event)


def _stream(model, tokenizer, inputs, gen_kwargs, seed, stop_event):
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    # How long to wait for the next piece: bounded by the request's max_time when it has one (the app's).
    wait = gen_kwargs["max_time"] + 30 if gen_kwargs.get("max_time") else 300
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=wait)

    class _Stop(StoppingCriteria):  # lets a UI's stop button end generation early
        def __call__(self, input_ids, scores, **kwargs):
            return bool(stop_event is not None and stop_event.is_set())

    kwargs = {**gen_kwargs, "num_return_sequences": 1, "num_beams": 1}
    errors: list[BaseException] = []

    def run():
        try:  # the seed too: an error outside would leave the consumer waiting for the streamer's timeout
            if seed is not None:
                torch.manual_seed(seed)
            with torch.no_grad():
                model.generate(**inputs, **kwargs, streamer=streamer, eos_token_id=_stop_ids(model, tokenizer),
                               pad_token_id=tokenizer.pad_token_id, stopping_criteria=StoppingCriteriaList([_Stop()]))
        except BaseException as exc:  # surface errors to the consumer instead of a silent hang
            errors.append(exc)
            streamer.end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    for piece in streamer:
        yield piece
    thread.join()
    if errors:
        raise errors[0]


@torch.no_grad()
def generate_answers(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 32,
                     batch_size: int = 32, **sampling) -> list[str]:
    """Answers to many conversations (new text only), batched with left padding: greedy unless ``sampling``
    (``do_sample=True, temperature=...``) says otherwise. Stops where the model's generation_config says."""
    was_training = model.training
    model.eval()
    answers: list[str] = []
    try:
        for i in range(0, len(conversations), batch_size):
            texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                     for c in conversations[i:i + batch_size]]
            batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left",
                              add_special_tokens=False).to(model.device)
            out = model.generate(**batch, max_new_tokens=max_new_tokens, **{"do_sample": False, **sampling},
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=_stop_ids(model, tokenizer))
            answers += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        model.train(was_training)
    return answers


def next_token_distribution(model, tokenizer, text: str, temperature: float = 1.0, top_k: int | None = None,
                            top_p: float | None = None, min_p: float | None = None, top_n: int = 20):
    """The next token's probabilities before and after temperature/top-k/top-p/min-p.

    Uses transformers' own logits warpers, so what is shown is exactly what sampling does.
    Returns rows (token, id, p_before, p_after, kept) for the top_n most likely tokens.
    """
    from transformers import LogitsProcessorList, MinPLogitsWarper, TemperatureLogitsWarper, TopKLogitsWarper
    from transformers import TopPLogitsWarper

    inputs = encode(model, tokenizer, text, 1)
    with torch.no_grad():
        logits = model(**inputs).logits[:, -1, :].float()
    warpers = LogitsProcessorList()
    if temperature and temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    if min_p:
        warpers.append(MinPLogitsWarper(min_p))
    before = torch.softmax(logits, -1)[0]
    after = torch.softmax(warpers(inputs["input_ids"], logits.clone()), -1)[0]
    top = torch.topk(before, min(top_n, before.numel()))
    return [(tokenizer.decode([int(i)]), int(i), float(before[i]), float(after[i]), bool(after[i] > 0))
            for i in top.indices]


def main(argv: list[str]) -> int:
    (args,), explicit = parse_args([GenerateArguments], argv, prog="hfllm generate")
    name = args.model_name_or_path
    if not name:
        raise UserError("which model? set --model_name_or_path (a stage folder, an HF folder or a Hub id)")
    if not args.prompt:
        raise UserError("no prompt: pass --prompt 'some text'")
    gen_kwargs = sampling_kwargs(args, explicit)
    from hfllm.model_checks import check_model_kind
    from hfllm.loading import check_model_source, load_causal_lm, load_tokenizer

    # The model first: a typo, a pickle-only folder or a reward model is refused before anything loads.
    check_model_source(name)
    check_model_kind(name, "causal_lm", "model_name_or_path", "generate")
    model = load_causal_lm(name, revision=args.model_revision, trust_remote_code=args.trust_remote_code).eval()
    tokenizer = load_tokenizer(name, revision=args.model_revision, trust_remote_code=args.trust_remote_code)
    for prompt in args.prompt:
        text = format_prompt(tokenizer, prompt, args.chat, args.system_prompt)
        if args.stream and gen_kwargs["num_return_sequences"] == 1 and gen_kwargs["num_beams"] == 1:
            encode(model, tokenizer, text, gen_kwargs["max_new_tokens"])  # a bad prompt fails before the echo
            sys.stdout.write(prompt if not args.chat else f"> {prompt}\n")

            def write(piece):
                sys.stdout.write(piece)
                sys.stdout.flush()

            generate(model, tokenizer, text, gen_kwargs, args.seed, write=write)
            sys.stdout.write("\n")
        else:
            for i, completion in enumerate(generate(model, tokenizer, text, gen_kwargs, args.seed)):
                print(f"--- {i + 1}: {prompt if not args.chat else ''}{completion}")
    return 0
