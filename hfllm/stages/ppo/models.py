"""The models of hfllm ppo and their plumbing: loading the policy, its reference and the value model,
the policy and value model as one module, per-token values and log-probs, checkpoints.
The PPO arithmetic is in core.py."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import torch

from hfllm.chat_template import set_stop_tokens
from hfllm.loading import adapter_base, is_adapter_folder, load_causal_lm, load_sequence_classifier
from hfllm.stages.ppo import core


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


def forward_logprobs(model, ids, attention, positions, context, temperature):
    """Log-probabilities of the response tokens (after ``context``) and the logits they came from."""
    logits = model(input_ids=ids, attention_mask=attention, position_ids=positions).logits[:, context - 1:-1]
    logits = logits / (temperature + 1e-7)
    return core.logprobs_from_logits(logits, ids[:, context:]), logits


def load_models(run, tokenizer, checkpoint: str | None, device):
    """(policy, reference or None, value model). With LoRA the reference is the policy with its adapter
    disabled (None here); otherwise a frozen copy of the starting policy. A checkpoint restores the trained
    policy (or adapter) and value model."""
    from peft import PeftModel, get_peft_model
    from trl import get_peft_config

    args, model_args = run.args, run.model_args
    peft_config = get_peft_config(model_args)
    policy = run.load_model(load_causal_lm, merge_adapter=True)
    if peft_config is not None:
        policy = PeftModel.from_pretrained(policy, str(Path(checkpoint) / "policy"), is_trainable=True) \
            if checkpoint else get_peft_model(policy, peft_config)
        reference = None
    else:
        reference = copy.deepcopy(policy).eval().requires_grad_(False).to(device)
        if checkpoint:
            policy = load_causal_lm(str(Path(checkpoint) / "policy"), dtype=run.dtype)
    set_stop_tokens(policy, tokenizer)
    source = str(Path(checkpoint) / "value") if checkpoint else (
        args.value_model_name_or_path or args.reward_model_name_or_path or model_args.model_name_or_path)
    source = adapter_base(source) if is_adapter_folder(source) else source  # a LoRA reward model: its base
    value_model = load_sequence_classifier(source, num_labels=1, dtype=run.dtype, what="value model",
                                           trust_remote_code=run.trust_remote_code)
    value_model.config.pad_token_id = tokenizer.pad_token_id
    return policy, reference, value_model


def save_checkpoint(out: Path, acc, wrapper, optimizer, step, kl_ctl, tokenizer):
    """checkpoint-<step>: policy (+ tokenizer), value model, then state.pt last (what makes it complete)."""
    folder = Path(out) / f"checkpoint-{step}"
    if acc.is_main_process:
        unwrapped = acc.unwrap_model(wrapper)
        unwrapped.policy.save_pretrained(folder / "policy")
        tokenizer.save_pretrained(folder / "policy")
        unwrapped.value_model.save_pretrained(folder / "value")
        torch.save({"optimizer": optimizer.state_dict(), "step": step, "kl_coef": kl_ctl.value}, folder / "state.pt")
        for old in Path(out).glob("checkpoint-*"):  # keep the newest only
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
