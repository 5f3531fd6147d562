"""PPO arithmetic on hand-computed numbers (hfllm/ppo_core.py): no models, milliseconds."""

import math

import torch

from hfllm.stages.ppo import core


def test_gae_matches_a_hand_computed_three_step_example():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    adv, ret = core.gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # t=2: 1 + 0 - 0.7 = 0.3; t=1: (0 + 0.7 - 0.6) + 0.5 * 0.3 = 0.25; t=0: 0.1 + 0.5 * 0.25 = 0.225
    assert torch.allclose(adv, torch.tensor([[0.225, 0.25, 0.3]]))
    assert torch.allclose(ret, torch.tensor([[0.725, 0.85, 1.0]]))
    # with a discount: t=2: 0.3; t=1: 0.9*0.7 - 0.6 + 0.9*1*0.3 = 0.3; t=0: 0.9*0.6 - 0.5 + 0.9*0.3 = 0.31
    adv, _ = core.gae(rewards, values, mask, gamma=0.9, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[0.31, 0.3, 0.3]]))


def test_gae_ignores_tokens_after_the_end():
    rewards = torch.tensor([[0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.6, 9.0]])
    mask = torch.tensor([[True, True, False]])
    adv, ret = core.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # the padded step's reward and value count for nothing; the value after the end is 0
    assert torch.allclose(adv, torch.tensor([[0.5, 0.4, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[1.0, 1.0, 0.0]]))


def test_whiten_gives_zero_mean_unit_variance_over_real_tokens():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, 6.0, -50.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, False]])
    w = core.whiten(x, mask)
    real = w[mask]
    assert abs(real.mean().item()) < 1e-5
    assert abs(real.var().item() - 1.0) < 1e-4
    assert (w[~mask] == 0).all()
    kept = core.whiten(x, mask, shift_mean=False)[mask]
    assert abs(kept.mean().item() - 3.5) < 1e-4


def test_clipped_policy_loss_and_clip_fraction():
    new = torch.log(torch.tensor([[1.5, 1.0, 0.5]]))
    old = torch.zeros(1, 3)
    adv = torch.tensor([[1.0, 1.0, -1.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    loss, stats = core.policy_loss(new, old, adv, mask, cliprange=0.2)
    # token 0: max(-1.5, -1.2) = -1.2 (clipped); token 1: -1; token 2: max(0.5, 0.8) = 0.8 (clipped)
    assert math.isclose(loss.item(), (-1.2 - 1.0 + 0.8) / 3, rel_tol=1e-5)
    assert math.isclose(stats["clipfrac"].item(), 2 / 3, rel_tol=1e-5)
    masked, stats = core.policy_loss(new, old, adv, torch.tensor([[False, True, False]]), cliprange=0.2)
    assert math.isclose(masked.item(), -1.0, rel_tol=1e-5) and stats["clipfrac"].item() == 0


def test_clipped_value_loss():
    new = torch.tensor([[1.0, 0.1]])
    old = torch.zeros(1, 2)
    returns = torch.tensor([[1.0, 0.0]])
    loss, stats = core.value_loss(new, old, returns, torch.ones(1, 2, dtype=torch.bool), cliprange_value=0.2)
    # token 0: max(0, (0.2 - 1)^2 = 0.64), clipped; token 1: both 0.01, not clipped
    assert math.isclose(loss.item(), 0.5 * (0.64 + 0.01) / 2, rel_tol=1e-5)
    assert math.isclose(stats["vf_clipfrac"].item(), 0.5)


def test_kl_penalty_per_token_and_score_on_the_last_real_token():
    logprobs = torch.tensor([[-1.0, -1.0, -1.0, -1.0]])
    ref = torch.tensor([[-1.5, -1.0, -2.0, -3.0]])
    mask = torch.tensor([[True, True, True, False]])
    rewards, kl = core.kl_penalised_rewards(logprobs, ref, torch.tensor([2.0]), mask, kl_coef=0.1)
    assert torch.allclose(kl, torch.tensor([[0.5, 0.0, 1.0, 0.0]]))
    assert torch.allclose(rewards, torch.tensor([[-0.05, 0.0, -0.1 + 2.0, 0.0]]))


def test_mask_stops_after_the_first_eos_and_flags_answers_that_never_end():
    responses = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [3, 3, 9, 1]])
    mask, has_eos = core.response_mask(responses, eos_ids=[2, 9])
    assert mask.tolist() == [[True, True, False, False], [True, True, True, True], [True, True, True, False]]
    assert has_eos.tolist() == [True, False, True]
    # tokens after the eos get no KL and no reward, the score sits on the eos itself
    lp = torch.zeros(3, 4)
    ref = torch.full((3, 4), -1.0)
    penalty = 1.0
    scores = torch.ones(3) - penalty * (~has_eos).float()
    rewards, kl = core.kl_penalised_rewards(lp, ref, scores, mask, kl_coef=0.5)
    assert (kl[~mask] == 0).all() and (rewards[~mask] == 0).all()
    assert math.isclose(rewards[0, 1].item(), 1.0 - 0.5)
    assert math.isclose(rewards[1, 3].item(), 0.0 - 0.5)  # no eos: the score is 1 - penalty
    loss, _ = core.policy_loss(lp + 3.0 * (~mask), lp, torch.ones(3, 4), mask, 0.2)
    assert math.isclose(loss.item(), -1.0, rel_tol=1e-5)  # changes after the eos do not reach the loss


def test_adaptive_kl_controller_moves_toward_target():
    ctl = core.AdaptiveKLController(0.1, target=1.0, horizon=100)
    ctl.update(3.0, n_steps=10)  # KL too high: the error is clipped to +0.2
    assert math.isclose(ctl.value, 0.1 * 1.02)
    fixed = core.AdaptiveKLController(0.1, target=None)
    fixed.update(3.0, 10)
    assert fixed.value == 0.1


def test_explained_variance():
    r = torch.tensor([[1.0, 2.0, 3.0]])
    m = torch.ones(1, 3, dtype=torch.bool)
    assert math.isclose(core.explained_variance(r, r, m), 1.0)
    assert math.isclose(core.explained_variance(torch.full_like(r, 2.0), r, m), 0.0, abs_tol=1e-6)
