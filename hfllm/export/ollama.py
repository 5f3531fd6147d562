"""Chat templates for other engines: without training markers, and translated to Ollama's Go template.

A Jinja chat template cannot run in Ollama, which renders prompts with Go's text/template. Rather than
parse Jinja, the translation renders the model's own template (transformers' apply_chat_template) on
marker conversations and reads off the fixed text around each message: what comes before and after a
system, user and assistant message, what a conversation without a system message starts with (Qwen's
default system prompt, Llama 3.1's dates, a BOS), and the generation prompt. Those strings become a Go
template, and the translation is accepted only if it renders several other conversations exactly as
transformers does. hfllm's own template, ChatML (Qwen 2.5) and Llama 3 / 3.1 / 3.2 pass; a template that
renders messages conditionally (reasoning blocks, tools in the history) is refused with one line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from hfllm.errors import UserError

# {% generation %} / {% endgeneration %} mark assistant tokens for training; only transformers knows them
# (TGI's minijinja and llama.cpp's Jinja engines reject the tag). A tag with whitespace control becomes an
# `if true` that trims the same way, so the template renders exactly as before.
_MARKER = re.compile(r"{%(-?)\s*(end)?generation\s*(-?)%}")


def without_training_markers(template: str) -> str:
    def swap(m: re.Match) -> str:
        left, end, right = m.groups()
        if not left and not right:
            return ""
        return f"{{%{left} {'endif' if end else 'if true'} {right}%}}"
    return _MARKER.sub(swap, template)


@dataclass
class Parts:
    """A template that renders each message as prefix + content + suffix."""
    head: str                      # a conversation without a system message starts with this
    system: tuple[str, str] | None  # text around the system message (None: the template takes none)
    user: tuple[str, str]
    assistant: tuple[str, str]
    generation_prompt: str

    def render(self, messages: list[dict]) -> str:
        """What the Go template below renders, with Ollama's data: .System and .Messages."""
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        out = f"{self.system[0]}{system}{self.system[1]}" if system and self.system else self.head
        for m in messages:
            if m["role"] in ("user", "assistant"):
                before, after = getattr(self, m["role"])
                out += before + m["content"] + after
        return out + self.generation_prompt

    def go_template(self) -> str:
        # Plain {{ }} actions only: a trimming {{- would eat the newlines that belong to the template.
        otherwise = f"{{{{ else }}}}{self.head}" if self.head else ""
        system = (f"{{{{ if .System }}}}{self.system[0]}{{{{ .System }}}}{self.system[1]}{otherwise}{{{{ end }}}}"
                  if self.system else self.head)
        return (f"{system}{{{{ range .Messages }}}}{{{{ if eq .Role \"user\" }}}}{self.user[0]}{{{{ .Content }}}}"
                f"{self.user[1]}{{{{ else if eq .Role \"assistant\" }}}}{self.assistant[0]}{{{{ .Content }}}}"
                f"{self.assistant[1]}{{{{ end }}}}{{{{ end }}}}{self.generation_prompt}")


# Conversations the translation must reproduce; contents hold newlines, markup and quotes, no
# leading or trailing spaces (Llama 3's template trims those, which a Go template cannot).
CHECK_CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 + 2?"}],
    [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Name a colour."}],
    [{"role": "user", "content": "Hi!\nTwo lines."}, {"role": "assistant", "content": "Hello. <b>bold</b>"},
     {"role": "user", "content": "And \"quotes\"?"}],
    [{"role": "system", "content": "Be kind.\n\nAlways."}, {"role": "user", "content": "one"},
     {"role": "assistant", "content": "two"}, {"role": "user", "content": "three"},
     {"role": "assistant", "content": "four"}, {"role": "user", "content": "five"}],
]


def render(tokenizer, template: str, messages: list[dict], generation_prompt: bool = True) -> str:
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                         add_generation_prompt=generation_prompt)


def _split(text: str, marker: str, what: str) -> tuple[str, str]:
    if text.count(marker) != 1:
        raise ValueError(f"the {what} message does not appear exactly once in the rendering")
    before, after = text.split(marker)
    return before, after


def _after(longer: str, shorter: str, what: str) -> str:
    if not longer.startswith(shorter):
        raise ValueError(f"adding {what} changes what was rendered before it")
    return longer[len(shorter):]


def derive(tokenizer, template: str) -> Parts:
    """Read the fixed text around each kind of message off renderings of marker conversations."""
    u1, a1, u2, s1 = ({"role": r, "content": f"hfllm{r}{i}q"} for r, i in
                      (("user", 1), ("assistant", 1), ("user", 2), ("system", 1)))
    one = render(tokenizer, template, [u1], False)
    generation_prompt = _after(render(tokenizer, template, [u1], True), one, "the generation prompt")
    head_user, user_after = _split(one, u1["content"], "user")
    two = render(tokenizer, template, [u1, a1], False)
    assistant = _split(_after(two, one, "an assistant message"), a1["content"], "assistant")
    user_before, user_after2 = _split(_after(render(tokenizer, template, [u1, a1, u2], False), two,
                                             "a second user message"), u2["content"], "user")
    if user_after2 != user_after or not head_user.endswith(user_before):
        raise ValueError("the first user message is rendered unlike the later ones")
    head = head_user[:len(head_user) - len(user_before)]
    try:
        with_system = render(tokenizer, template, [s1, u1], False)
    except Exception:  # a template that refuses system messages (raise_exception in Jinja)
        system = None
    else:
        if not with_system.endswith(one[len(head):]):
            raise ValueError("a system message changes how the user message is rendered")
        system = _split(with_system[:len(with_system) - len(one) + len(head)], s1["content"], "system")
    return Parts(head, system, (user_before, user_after), assistant, generation_prompt)


def translate(tokenizer, template: str, strip_bos: bool = False) -> Parts:
    """The Ollama translation of a chat template, checked on CHECK_CONVERSATIONS; UserError otherwise.

    ``strip_bos``: the GGUF makes llama.cpp add BOS itself, so a template that writes it must not.
    """
    refuse = ("its chat template cannot be translated to Ollama's Go template ({}); hfllm translates templates "
              "that render every message as fixed text + content + fixed text, as hfllm's own, ChatML (Qwen) and "
              "Llama 3 do: export --format gguf and write the Modelfile's TEMPLATE by hand")
    try:
        parts = derive(tokenizer, template)
    except ValueError as exc:
        raise UserError(refuse.format(exc)) from None
    for messages in CHECK_CONVERSATIONS:
        expected, got = render(tokenizer, template, messages), parts.render(messages)
        if expected != got:
            at = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
            raise UserError(refuse.format(f"a {len(messages)}-message conversation differs at character {at}: "
                                          f"{expected[at:at + 30]!r} instead of {got[at:at + 30]!r}"))
    bos = tokenizer.bos_token
    if strip_bos and bos:
        if parts.head.startswith(bos) and (parts.system is None or parts.system[0].startswith(bos)):
            parts.head = parts.head[len(bos):]
            parts.system = (parts.system[0][len(bos):], parts.system[1]) if parts.system else None
    fixed = [parts.head, *(parts.system or ()), *parts.user, *parts.assistant, parts.generation_prompt]
    if any('"""' in text or "{{" in text for text in fixed):  # would end the Modelfile's string or open an action
        raise UserError(refuse.format("its fixed text contains '\"\"\"' or '{{'"))
    return parts


def modelfile(gguf_name: str, parts: Parts, stop: list[str], generation_config, context: int | None,
              source: str) -> str:
    """An Ollama Modelfile: the GGUF, the template, where to stop, and the sampling defaults."""
    lines = [f"# Made by `hfllm export` from {source}.",
             "# Run it: ollama create NAME -f Modelfile && ollama run NAME",
             f"FROM ./{gguf_name}", f'TEMPLATE """{parts.go_template()}"""']
    lines += [f"PARAMETER stop {json.dumps(token)}" for token in stop]
    for key, value in sampling_parameters(generation_config, context).items():
        lines.append(f"PARAMETER {key} {value}")
    return "\n".join(lines) + "\n"


def sampling_parameters(generation_config, context: int | None) -> dict:
    """generation_config's decoding defaults under Ollama's names. transformers decodes greedily unless
    do_sample is set, and Ollama samples at temperature 0.8 unless told, so greedy becomes temperature 0."""
    params: dict = {}
    if not getattr(generation_config, "do_sample", False):
        params["temperature"] = 0
    else:
        for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k"),
                             ("min_p", "min_p")):
            value = getattr(generation_config, ours, None)
            if value is not None:
                params[theirs] = value
    penalty = getattr(generation_config, "repetition_penalty", None)
    if penalty not in (None, 1.0):
        params["repeat_penalty"] = penalty
    if context:  # Ollama's default window may exceed a small model's context
        params["num_ctx"] = min(context, 4096)
    return params
