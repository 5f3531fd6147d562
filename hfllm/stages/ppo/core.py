"""The arithmetic of PPO for language models, as pure tensor functions (no models, no I/O).

Follows the InstructGPT recipe (Ouyang et al. 2022; Ziegler et al. 2019), with the
names TRL uses:

1. a response is its tokens up to and including the first end-of-sequence token;
   later tokens are padding and get no reward, KL or loss (``response_mask``);
2. the reward per token is ``-kl_coef * (logp_policy - logp_ref)``, and the sequence's
   score is added on its last real token (``kl_penalised_rewards``);
3. advantages by generalised advantage estimation (``gae``), then whitened;
4. the policy loss is the clipped surrogate (``policy_loss``), the value loss the
   clipped squared error (``value_loss``).

All tensors are ``[batch, response_len]`` unless said otherwise; masks are bool.
"""

from __future__ import annotations

import torch


def response_mask(responses: torch.Tensor, eos_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask of real tokens: up to and including the first eos; whether each row has an eos)."""
    is_eos = torch.isin(responses, torch.tensor(list(eos_ids), device=responses.device))
    # Number of eos tokens strictly before each position: 0 means the token is real.
    eos_before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    return eos_before == 0, is_eos.any(dim=1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(x, mask)
    n = mask.sum().clamp(min=2)
    return ((x - mean) ** 2 * mask).sum() / (n - 1)  # unbiased


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Scale to unit variance over the real tokens (and zero mean unless ``shift_mean`` is False)."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) for each position: logits ``[B, T, V]``, tokens ``[B, T]``."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def kl_penalised_rewards(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, scores: torch.Tensor,
                         mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: the KL penalty on every real token, plus the score on the last one.

    Returns (rewards, kl) with zeros after the end of each response.
    """
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.long().sum(1) - 1).clamp(min=0)  # index of the last real token
    rewards[torch.arange(len(scores), device=scores.device), last] += scores.to(rewards.dtype)
    return rewards * mask, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation; returns (advantages, returns = advantages + values).

    delta_t = r_t + gamma * V_{t+1} - V_t;  A_t = delta_t + gamma * lam * A_{t+1};
    the value after the last real token is 0 (the episode ends there).
    """
    values = values * mask
    rewards = rewards * mask
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    length = rewards.shape[1]
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, cliprange: float) -> tuple[torch.Tensor, dict]:
    """Clipped surrogate: mean over real tokens of max(-A * ratio, -A * clip(ratio, 1 +- eps))."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    loss1 = -advantages * ratio
    loss2 = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(loss1, loss2), mask)
    stats = {"clipfrac": masked_mean((loss2 > loss1).float(), mask).detach(),
             "approxkl": (0.5 * masked_mean(log_ratio ** 2, mask)).detach()}
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float) -> tuple[torch.Tensor, dict]:
    """0.5 * mean over real tokens of max((V - R)^2, (clip(V, V_old +- eps) - R)^2)."""
    clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    loss1 = (values - returns) ** 2
    loss2 = (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(loss1, loss2), mask)
    return loss, {"vf_clipfrac": masked_mean((loss2 > loss1).float(), mask).detach()}


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns): 1 is a perfect value model, 0 no better than a constant."""
    var = masked_var(returns, mask)
    return float(1 - masked_var(returns - values, mask) / var) if var > 0 else 0.0


class AdaptiveKLController:
    """Ziegler et al.'s controller: raise kl_coef when KL is above target, lower it below."""

    def __init__(self, kl_coef: float, target: float | None, horizon: int = 10000):
        self.value, self.target, self.horizon = kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        if not self.target:
            return
        error = min(max(current_kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + error * n_steps / self.horizon
