"""The chat template: hfllm's own, what a model needs before it can chat, and how SFT trains through it.

The same template is used in training (SFT, DPO, RL), in ``hfllm generate --chat``
and in the app, because it is saved with the tokenizer of every stage.

``SFTConfig(assistant_only_loss=True)`` needs a template whose assistant turns sit inside
``{% generation %}`` markers, and no real model's template has them. ``training_plan`` decides,
before any weights load, how every assistant turn still gets into the loss:

- ``markers``: the template has them (hfllm's own does): conversations train as they are;
- ``trl_patch``: TRL keeps a training copy of the template (Qwen2.5, Qwen3, Llama 3, Gemma,
  Phi-3, DeepSeek, ...: trl/chat_templates/*_training.jinja). SFTTrainer swaps that copy in by
  itself for tokenizing only, so every assistant turn and its end-of-turn token carry loss
  while the tokenizer saved with the model keeps the original, the one it is served with.
  Qwen3's copy keeps each turn's <think> reasoning, which the original drops from earlier turns;
- ``per_turn``: TRL cannot patch it (Llama 3.1 / 3.2, SmolLM2, custom templates): each assistant
  turn becomes its own prompt/completion row (hfllm.data.formats.split_turns), so every turn is
  still trained once, at the cost of reading the earlier turns again; hfllm sft says so in one line;
- ``full``: ``--assistant_only_loss false`` was asked for: whole conversations, every token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hfllm.errors import UserError

# Every turn is "<|role|>\n{content}{eos}\n". The assistant's part sits inside
# {% generation %} markers so SFT can put the loss on assistant tokens only, and
# ends with the eos token so the model learns to stop there.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    "{% else %}{{ message['content'] + eos_token }}{% endif %}{{ '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def ensure_chat_template(tokenizer) -> bool:
    """Give a base model's tokenizer hfllm's template (role markers as plain text); True if added.

    Plain-text markers need no new embeddings, so any base model can be tuned to chat.
    """
    if tokenizer.chat_template:
        return False
    tokenizer.chat_template = CHAT_TEMPLATE
    return True


def end_of_turn_ids(tokenizer) -> list[int]:
    """Token ids that end an assistant turn under this template, plus eos: where generation must stop.

    Found by rendering a one-turn chat and reading the special token right after the answer
    (e.g. <|im_end|> for ChatML templates), so a tuned model stops at the end of its answer.
    """
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    marker = "Zq9xanswer"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}], tokenize=False)
    tail = text.split(marker, 1)[1] if marker in text else ""
    for token in tokenizer.all_special_tokens:
        if token and tail.lstrip().startswith(token):
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id not in ids:
                ids.append(token_id)
    return ids


def set_stop_tokens(model, tokenizer, chat: bool = True) -> None:
    """Write where generation stops into the model's generation_config (saved with it): for a chat model the
    template's end-of-turn token(s) and eos, for a base model eos; pad always. The one place hfllm sets them."""
    if chat:
        model.generation_config.update(eos_token_id=end_of_turn_ids(tokenizer), pad_token_id=tokenizer.pad_token_id)
    else:
        model.generation_config.update(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                       bos_token_id=tokenizer.bos_token_id)


@dataclass
class TemplatePlan:
    mode: str  # markers | trl_patch | per_turn | full
    training_template: str | None  # what TRL tokenizes with (None: the tokenizer's own)
    name: str | None  # the template's name in trl/chat_templates, when TRL knows it

    @property
    def assistant_only_loss(self) -> bool:
        return self.mode in ("markers", "trl_patch")


def known_template_name(template: str | None) -> str | None:
    """The file name in trl/chat_templates/ whose original template this is (exact match), else None."""
    import trl

    if not template:
        return None
    for path in sorted((Path(trl.__file__).parent / "chat_templates").glob("*.jinja")):
        if not path.stem.endswith("_training") and path.read_text(encoding="utf-8") == template:
            return path.stem
    return None


def chat_template_from_path(path: str) -> str:
    """The template ``SFTConfig.chat_template_path`` will put on the tokenizer: a .jinja file, or a tokenizer's."""
    if Path(path).is_file() and path.endswith((".jinja", ".j2")):
        return Path(path).read_text(encoding="utf-8")
    from hfllm.loading import load_tokenizer

    template = load_tokenizer(path).chat_template
    if not template:
        raise UserError(f"--chat_template_path {path}: that tokenizer has no chat template")
    return template


def training_plan(tokenizer, assistant_only_loss: bool | None = None, template: str | None = None) -> TemplatePlan:
    """How SFT puts the loss on conversations under this tokenizer's template (or ``template``).

    ``assistant_only_loss``: None unless the user set it; False trains whole conversations.
    """
    from trl import get_training_chat_template
    from trl.chat_template_utils import has_generation_markers

    original = tokenizer.chat_template
    template = template or original
    name = known_template_name(template)
    if assistant_only_loss is False:
        return TemplatePlan("full", None, name)
    if has_generation_markers(template):
        return TemplatePlan("markers", None, name)
    tokenizer.chat_template = template  # TRL's functions read (and render) the tokenizer's template
    try:
        patched = get_training_chat_template(tokenizer)
    except ValueError:  # TRL keeps no training copy of this template
        return TemplatePlan("per_turn", None, name)
    finally:
        tokenizer.chat_template = original
    return TemplatePlan("trl_patch", patched, name)
