"""The models of hfllm ppo and their plumbing: policy and value model as one module, per-token
values and log-probs, loading the value model, checkpoints. The PPO arithmetic is in ppo_core.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from hfllm.stages.ppo import core
from hfllm.model import adapter_base, is_adapter_folder


class PolicyAndValue(torch.nn.Module):
    """One module, so accelerate/DDP synchronises both models' gradients in one step."""

    def __init__(self, policy, value_model):
        super().__init__()
        self.policy, self.value_model = policy, value_model

    def forward(self, input_ids, attention_mask, position_ids):
        logits = self.policy(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
        return logits, token_values(self.value_model, input_ids, attention_mask, position_ids)


def token_values(value_model, input_ids, attention_mask, position_ids):
    """One value per position: the backbone's hidden states through the classifier's ``score`` head."""
    backbone = getattr(value_model, value_model.base_model_prefix)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)[0]
    return value_model.score(hidden).squeeze(-1).float()


def forward_logprobs(model, ids, attn, pos, ctx, temperature):
    logits = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, ctx - 1:-1] / (temperature + 1e-7)
    return core.logprobs_from_logits(logits, ids[:, ctx:]), logits


def load_value_model(path: str, pad_id: int, dtype):
    from transformers import AutoModelForSequenceClassification

    path = adapter_base(path) if is_adapter_folder(path) else path
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
    model.config.pad_token_id = pad_id
    return model


def save_checkpoint(out: Path, acc, wrapper, optimizer, step, kl_ctl, tokenizer):
    folder = out / f"checkpoint-{step}"
    if acc.is_main_process:
        unwrapped = acc.unwrap_model(wrapper)
        unwrapped.policy.save_pretrained(folder / "policy")
        tokenizer.save_pretrained(folder / "policy")
        unwrapped.value_model.save_pretrained(folder / "value")
        torch.save({"optimizer": optimizer.state_dict(), "step": step, "kl_coef": kl_ctl.value}, folder / "state.pt")
        for old in out.glob("checkpoint-*"):  # keep the newest only
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
