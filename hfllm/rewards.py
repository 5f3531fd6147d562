"""Rewards for RL (PPO, GRPO, RLOO), and the prompt data they train on.

Every reward has TRL's reward-function signature::

    f(prompts, completions, **kwargs) -> list[float]

``prompts`` are conversations (lists of messages) or strings, ``completions`` are
strings or ``[{"role": "assistant", "content": ...}]``; ``kwargs`` carry the
dataset's other columns, e.g. ``answer``. Pass them by name (``--reward_funcs
exact_answer format_sentence``) or as an import path (``mypkg.rewards:my_reward``).
A reward model folder becomes a reward function with ``RewardModelScorer``.
Prompts for RL come from ``load_prompts``.
"""

from __future__ import annotations

import importlib
import re

from hfllm.data.builtin import CLOSING, answer_is_correct
from hfllm.errors import UserError


def completion_text(completion) -> str:
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if m.get("role", "assistant") == "assistant")


def _answers(kwargs, n: int) -> list[str]:
    answers = kwargs.get("answer")
    if answers is None:
        raise UserError("this reward needs an 'answer' column in the prompt dataset")
    return [a or "" for a in answers] if isinstance(answers, list) else [answers] * n


def exact_answer(prompts, completions, **kwargs) -> list[float]:
    """1.0 when the expected answer appears in the completion as a whole word, else 0.0."""
    return [float(answer_is_correct(completion_text(c), a))
            for c, a in zip(completions, _answers(kwargs, len(completions)))]


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", text)]


def answer_partial(prompts, completions, **kwargs) -> list[float]:
    """Partial credit in [0, 1]: 0.6 for the right answer, 0.2 for the shape of an answer, 0.2 for closeness.

    - shape: a short sentence that ends with a period (0.1 each);
    - closeness: for numeric answers, 0.2 / (1 + |first number - answer|); for words,
      the share of the answer's words that appear in the completion.
    Exact match alone gives a tiny model almost no signal in a few dozen steps; this does.
    """
    out = []
    for c, a in zip(completions, _answers(kwargs, len(completions))):
        text = completion_text(c).strip()
        score = 0.6 * answer_is_correct(text, a)
        score += 0.1 * text.endswith(".") + 0.1 * (0 < len(text.split()) <= 20)
        target = _numbers(a)
        if target:
            got = _numbers(text)
            score += 0.2 / (1 + abs(got[0] - target[0])) if got else 0.0
        elif a.split():
            words = a.lower().split()
            score += 0.2 * sum(w in text.lower() for w in words) / len(words)
        out.append(round(score, 4))
    return out


def format_sentence(prompts, completions, max_words: int = 20, **kwargs) -> list[float]:
    """1.0 for one short sentence (ends with a period, at most ``max_words`` words), else 0.0."""
    out = []
    for c in completions:
        text = completion_text(c).strip()
        out.append(float(text.endswith(".") and 0 < len(text.split()) <= max_words and text.count(".") <= 2))
    return out


def length_penalty(prompts, completions, target_words: int = 12, **kwargs) -> list[float]:
    """0 up to ``target_words`` words, then -0.05 per extra word (down to -1)."""
    return [max(-1.0, -0.05 * max(0, len(completion_text(c).split()) - target_words)) for c in completions]


def friendly_closing(prompts, completions, **kwargs) -> list[float]:
    """1.0 when the answer ends with the friendly closing the built-in tone pairs prefer ("Happy to help!"),
    else 0.0: the same preference as the tone reward model's, checked by a plain string rule."""
    return [float(completion_text(c).strip().endswith(CLOSING.strip())) for c in completions]


SHIPPED = {f.__name__: f for f in (exact_answer, answer_partial, format_sentence, length_penalty, friendly_closing)}


def resolve_reward_funcs(names: list[str]) -> list:
    """Shipped names or ``package.module:function`` / ``package.module.function`` import paths -> callables."""
    funcs = []
    for name in names:
        if name in SHIPPED:
            funcs.append(SHIPPED[name])
            continue
        module, sep, attr = name.partition(":") if ":" in name else name.rpartition(".")
        func = None
        if module and sep:
            try:
                func = getattr(importlib.import_module(module), attr, None)
            except ImportError:
                func = None
        if not callable(func):
            raise UserError(f"unknown reward function '{name}'; use one of {', '.join(SHIPPED)} "
                            "or an import path like 'mypackage.rewards:my_reward'")
        funcs.append(func)
    return funcs


class RewardModelScorer:
    """A reward model (a sequence classifier with one output) as a reward function: the one scorer in
    hfllm, used by PPO, GRPO/RLOO and the app's best-of-N.

    The conversation is rendered with the REWARD model's own tokenizer and chat template
    and re-tokenised, so a policy with another tokenizer can be scored. Loaded through
    hfllm.loading: safetensors only, remote code only when asked.
    """

    def __init__(self, path: str, device=None, dtype="float32", batch_size: int = 32, trust_remote_code: bool = False):
        import torch

        from hfllm.chat_template import ensure_chat_template
        from hfllm.model_checks import check_model_kind
        from hfllm.loading import check_model_source, is_adapter_folder, load_sequence_classifier, load_tokenizer

        check_model_source(path, "reward model")
        check_model_kind(path, "reward", "reward_model_name_or_path", "")  # a causal LM: an untrained head
        self.__name__ = "reward_model"  # TRL logs reward functions by name
        self.path, self.batch_size = str(path), batch_size
        self.tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
        ensure_chat_template(self.tokenizer)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # A folder keeps its head (and must have one output); a LoRA reward adapter's head has one output.
        self.model = load_sequence_classifier(path, num_labels=1 if is_adapter_folder(path) else None, dtype=dtype,
                                              trust_remote_code=trust_remote_code, merge_adapter=True)
        if self.model.config.num_labels != 1:
            raise UserError(f"{path} is a classifier with {self.model.config.num_labels} labels, not a reward model "
                            "(one score per conversation); train one with 'hfllm reward'")
        self.model.to(self.device).eval().requires_grad_(False)
        self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        import torch

        texts = []
        for prompt, completion in zip(prompts, completions):
            messages = list(prompt) if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            messages.append({"role": "assistant", "content": completion_text(completion)})
            texts.append(self.tokenizer.apply_chat_template(messages, tokenize=False))
        scores: list[float] = []
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                # Right padding: the score is read at the last real token.
                batch = self.tokenizer(texts[i:i + self.batch_size], return_tensors="pt", padding=True,
                                       padding_side="right", add_special_tokens=False, truncation=True,
                                       max_length=getattr(self.model.config, "max_position_embeddings", None))
                logits = self.model(**batch.to(self.device)).logits
                scores += logits[:, 0].float().tolist()
        return scores


def build_reward_funcs(names: list[str] | None, reward_model: str | None, device=None,
                       trust_remote_code: bool = False) -> list:
    """The reward model (first, when given) and the named rule rewards."""
    funcs = [RewardModelScorer(reward_model, device=device, trust_remote_code=trust_remote_code)] \
        if reward_model else []
    funcs += resolve_reward_funcs(list(names or []))
    if not funcs:
        raise UserError("no reward: set --reward_model_name_or_path and/or --reward_funcs "
                        f"(shipped: {', '.join(SHIPPED)})")
    return funcs


def check_weights(weights: list[float] | None, funcs: list) -> list[float]:
    if not weights:
        return [1.0] * len(funcs)
    if len(weights) != len(funcs):
        raise UserError(f"--reward_weights has {len(weights)} values for {len(funcs)} rewards "
                        "(the reward model first, then --reward_funcs in order)")
    return [float(w) for w in weights]


def load_prompts(args, limit_eval: int | None = None):
    """(training prompts, held-out rows) from a stage's script arguments: a ``prompt`` column (text or
    messages) plus any extra columns (``answer``), or the prompts inside preference pairs or conversations
    (hfllm.data.formats.prompts_for_rl); held-out rows only when ``limit_eval`` is not 0."""
    from hfllm.data.formats import prompts_for_rl
    from hfllm.data.load import first_rows, load_dataset

    def prompts(name, split, config, limit):
        ds = first_rows(load_dataset(name, config=config, split=split), limit)
        if "prompt" not in ds.column_names:  # from pairs, transcripts or conversations
            ds = prompts_for_rl(ds, name, strict=args.strict, max_bad_share=args.max_bad_share)
        if isinstance(ds[0]["prompt"], str):
            ds = ds.map(lambda r: {"prompt": [{"role": "user", "content": r["prompt"]}]})
        return ds

    train = prompts(args.dataset_name, args.dataset_train_split, args.dataset_config, args.max_train_samples)
    source = args.eval_source()
    held_out = list(prompts(*source, limit_eval)) if source and limit_eval != 0 else []
    return train, held_out
