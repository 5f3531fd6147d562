"""The chat template: hfllm's own, and what a model needs before it can chat.

The same template is used in training (SFT, DPO, RL), in ``hfllm generate --chat``
and in the app, because it is saved with the tokenizer of every stage.
"""

from __future__ import annotations

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
