"""PPO from feedback (the InstructGPT recipe), on transformers + peft + accelerate.

    hfllm ppo --config configs/tiny/ppo.yaml
    hfllm ppo --model_name_or_path runs/tiny/sft --reward_model_name_or_path runs/tiny/reward
    hfllm ppo --model_name_or_path runs/tiny/sft --reward_funcs answer_partial --use_peft --lora_r 16
    accelerate launch --multi_gpu --num_processes 2 -m hfllm.cli ppo --config configs/tiny/ppo.yaml  # 2 CPU processes

Each update: sample ``per_device_train_batch_size`` prompts per process, generate
answers (temperature/top_k/top_p, stop at eos), score them (reward model and/or
rule rewards, weighted), turn score + per-token KL to the reference into per-token
rewards, GAE with a value model, then ``num_ppo_epochs`` passes of clipped policy and
value losses over ``num_mini_batches``. The math is in hfllm/ppo_core.py.
The reference is a frozen copy, or with LoRA the policy with its adapter disabled.
The value model is a one-output sequence classifier initialised from the reward
model (or from the policy when only rule rewards are used).
"""

from __future__ import annotations

import copy
import math
import shutil
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from trl import ModelConfig, get_peft_config

from hfllm.stages.ppo import core
from hfllm import run_folder
from hfllm.stages import _frame as interrupt
from hfllm.stages.ppo.models import PolicyAndValue, forward_logprobs, load_value_model, save_checkpoint, token_values
from hfllm.data.builtin import answer_is_correct
from hfllm.chat_template import end_of_turn_ids, ensure_chat_template
from hfllm.config import parse_args, save_config
from hfllm.errors import UserError
from hfllm.scoring import answer_accuracy, generate_answers, prompt_messages
from hfllm.model import load_causal_lm, load_tokenizer, training_defaults
from hfllm.rewards import build_reward_funcs, check_weights, load_prompts


@dataclass
class PPOArguments:
    # data and rewards
    dataset_name: str = field(default="builtin:questions", metadata={"help": "prompts (text or messages) + columns"})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name"})
    dataset_train_split: str = field(default="train", metadata={"help": "training split"})
    eval_dataset_name: str | None = field(default="builtin:questions_eval", metadata={"help": "held-out prompts"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use at most this many prompts"})
    eval_samples: int = field(default=100, metadata={"help": "held-out prompts for before/after (0: skip)"})
    reward_model_name_or_path: str | None = field(default=None, metadata={"help": "a reward stage folder"})
    reward_funcs: list[str] = field(default_factory=list, metadata={"help": "rule rewards or import paths"})
    reward_weights: list[float] | None = field(default=None, metadata={"help": "reward model first, then funcs"})
    value_model_name_or_path: str | None = field(default=None, metadata={"help": "default: reward model/policy"})
    # rollouts
    per_device_train_batch_size: int = field(default=8, metadata={"help": "prompts per rollout per process"})
    response_length: int = field(default=32, metadata={"help": "max new tokens per answer"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_k: int = field(default=0, metadata={"help": "0: off"})
    top_p: float = field(default=1.0, metadata={"help": "1.0: off"})
    missing_eos_penalty: float = field(default=1.0, metadata={"help": "subtracted from answers that never end"})
    # PPO
    max_steps: int = field(default=100, metadata={"help": "PPO updates (one rollout batch each)"})
    total_episodes: int | None = field(default=None, metadata={"help": "instead of max_steps: prompts in all"})
    learning_rate: float = field(default=1e-5, metadata={"help": "policy and value learning rate"})
    kl_coef: float = field(default=0.05, metadata={"help": "per-token KL penalty to the reference"})
    target_kl: float | None = field(default=None, metadata={"help": "adapt kl_coef toward this KL per answer"})
    cliprange: float = field(default=0.2, metadata={"help": "policy ratio clip"})
    cliprange_value: float = field(default=0.2, metadata={"help": "value clip"})
    vf_coef: float = field(default=0.1, metadata={"help": "value loss weight"})
    gamma: float = field(default=1.0, metadata={"help": "discount"})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda"})
    whiten_rewards: bool = field(default=False, metadata={"help": "whiten per-token rewards too"})
    num_ppo_epochs: int = field(default=4, metadata={"help": "passes over each rollout batch"})
    num_mini_batches: int = field(default=1, metadata={"help": "optimizer steps per pass"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per mini-batch"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
    # run
    seed: int = field(default=42, metadata={"help": "random seed"})
    output_dir: str = field(default="runs/default/ppo", metadata={"help": "where the policy goes"})
    save_steps: int = field(default=50, metadata={"help": "checkpoint every N updates (0: never)"})
    resume: bool = field(default=True, metadata={"help": "continue an interrupted run from its checkpoint"})
    overwrite: bool = field(default=False, metadata={"help": "replace a finished run in output_dir"})
    use_cpu: bool = field(default=False, metadata={"help": "train on CPU (gloo for several processes)"})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 weights"})
    disable_tqdm: bool = field(default=False, metadata={"help": "no progress bar"})
    report_to: str = field(default="none", metadata={"help": "accepted for symmetry; logs go to metrics.json"})


def main(argv: list[str]) -> int:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    defaults = {"lora_target_modules": ["all-linear"], **training_defaults()}
    (args, model_args), _ = parse_args([PPOArguments, ModelConfig], argv, prog="hfllm ppo", defaults=defaults)
    if not model_args.model_name_or_path:
        raise UserError("ppo needs a policy to start from: set --model_name_or_path (e.g. the SFT stage folder)")
    acc = Accelerator(cpu=args.use_cpu or not torch.cuda.is_available())
    out = Path(args.output_dir)
    checkpoint = None
    if acc.is_main_process:
        checkpoint = run_folder.prepare(out, overwrite=args.overwrite, stage="ppo", resume=args.resume)
    acc.wait_for_everyone()
    if not acc.is_main_process:
        checkpoint = run_folder.last_checkpoint(out) if args.resume else None
    set_seed(args.seed)
    world, rank, device = acc.num_processes, acc.process_index, acc.device
    dtype = torch.bfloat16 if args.bf16 else torch.float32

    train_ds = load_prompts(args.dataset_name, config=args.dataset_config, split=args.dataset_train_split,
                            limit=args.max_train_samples)
    eval_rows = list(load_prompts(args.eval_dataset_name, limit=args.eval_samples)) \
        if args.eval_dataset_name and args.eval_samples else []
    tokenizer = load_tokenizer(model_args.model_name_or_path)
    ensure_chat_template(tokenizer)
    eos_ids = end_of_turn_ids(tokenizer)
    funcs = build_reward_funcs(args.reward_funcs, args.reward_model_name_or_path, device=device)
    weights = check_weights(args.reward_weights, funcs)
    rm = funcs[0] if args.reward_model_name_or_path else None

    # Policy (+ reference) and value model.
    peft_config = get_peft_config(model_args)
    policy = load_causal_lm(model_args.model_name_or_path, dtype=dtype, merge_adapter=True)
    if peft_config is not None:
        from peft import PeftModel, get_peft_model

        policy = PeftModel.from_pretrained(policy, str(Path(checkpoint) / "policy"), is_trainable=True) \
            if checkpoint else get_peft_model(policy, peft_config)
        ref = None  # the same weights with the adapter disabled
    else:
        ref = copy.deepcopy(policy).eval().requires_grad_(False).to(device)
        if checkpoint:
            policy = load_causal_lm(str(Path(checkpoint) / "policy"), dtype=dtype)
    policy.generation_config.update(eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
    value_path = str(Path(checkpoint) / "value") if checkpoint else (
        args.value_model_name_or_path or args.reward_model_name_or_path or model_args.model_name_or_path)
    value_model = load_value_model(value_path, tokenizer.pad_token_id, dtype)

    wrapper = PolicyAndValue(policy, value_model)
    optimizer = torch.optim.AdamW([p for p in wrapper.parameters() if p.requires_grad], lr=args.learning_rate,
                                  eps=1e-5)
    wrapper, optimizer = acc.prepare(wrapper, optimizer)
    model = acc.unwrap_model(wrapper)
    start, kl_ctl = 0, core.AdaptiveKLController(args.kl_coef, args.target_kl)
    if checkpoint:
        state = torch.load(Path(checkpoint) / "state.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        start, kl_ctl.value = state["step"], state["kl_coef"]

    batch = args.per_device_train_batch_size
    max_steps = math.ceil(args.total_episodes / (batch * world)) if args.total_episodes else args.max_steps
    micro = args.num_mini_batches * args.gradient_accumulation_steps
    if batch % micro:
        raise UserError(f"per_device_train_batch_size {batch} must divide into num_mini_batches x "
                        f"gradient_accumulation_steps = {micro}")

    def rows_for(step):  # a deterministic order, so a resumed run sees the prompts it would have seen
        per_epoch = max(1, len(train_ds) // (batch * world))
        epoch, k = divmod(step, per_epoch)
        order = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(args.seed + epoch)).tolist()
        order = (order * math.ceil(batch * world / len(order) + 1))
        start_i = k * batch * world + rank * batch
        return [train_ds[i] for i in order[start_i:start_i + batch]]

    def score(prompts, texts, rows):
        cols = {k: [r.get(k) for r in rows] for k in rows[0] if k != "prompt"}
        total = torch.zeros(len(texts))
        for w, f in zip(weights, funcs):
            total += w * torch.tensor(f(prompts=prompts, completions=texts, **cols), dtype=torch.float32)
        return total

    def held_out():
        if not eval_rows or not acc.is_main_process:
            return {}
        res = answer_accuracy(model.policy, tokenizer, eval_rows, len(eval_rows), args.response_length)
        if rm is not None:  # greedy, and sampled as in the rollouts (what PPO maximises), 4 answers a prompt
            prompts = [prompt_messages(r) for r in eval_rows]
            greedy = generate_answers(model.policy, tokenizer, prompts, args.response_length)
            torch.manual_seed(args.seed)
            sampled = generate_answers(model.policy, tokenizer, prompts * 4, args.response_length, do_sample=True,
                                       temperature=args.temperature, top_k=args.top_k or None, top_p=args.top_p)
            res["reward_score"] = round(sum(rm(prompts, greedy)) / len(prompts), 4)
            res["reward_score_sampled"] = round(sum(rm(prompts * 4, sampled)) / len(sampled), 4)
        return res

    before = held_out() if start == 0 else {}
    log: list[dict] = []
    tokenizer.padding_side = "left"
    bar = tqdm(total=max_steps, initial=start, desc="ppo", disable=args.disable_tqdm or not acc.is_main_process)
    with interrupt.catch_stop_signals() as request:
        for step in range(start, max_steps):
            # ---- 1. rollouts
            torch.manual_seed(args.seed * 1000 + step * world + rank)
            rows = rows_for(step)
            prompts = [prompt_messages(r) for r in rows]
            texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            ctx = enc["input_ids"].shape[1]
            model.eval()
            with torch.no_grad():
                ids = model.policy.generate(**enc, do_sample=True, max_new_tokens=args.response_length,
                                            temperature=args.temperature, top_k=args.top_k or None, top_p=args.top_p,
                                            eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
                responses = ids[:, ctx:]
                mask, has_eos = core.response_mask(responses, eos_ids)
                attn = torch.cat([enc["attention_mask"], mask.long()], 1)
                pos = (attn.cumsum(1) - 1).clamp(min=0)
                logprobs, logits = forward_logprobs(model.policy, ids, attn, pos, ctx, args.temperature)
                entropy = core.masked_mean(core.entropy_from_logits(logits), mask)
                del logits
                with model.policy.disable_adapter() if ref is None else nullcontext():
                    ref_logprobs, _ = forward_logprobs(model.policy if ref is None else ref, ids, attn, pos, ctx, args.temperature)
                values = token_values(model.value_model, ids, attn, pos)[:, ctx - 1:-1]
                answers = [tokenizer.decode(r[m], skip_special_tokens=True) for r, m in zip(responses, mask)]
                scores = score(prompts, answers, rows).to(device)
                correct = [float(answer_is_correct(a, r["answer"])) for a, r in zip(answers, rows) if "answer" in r]
                scores_raw = scores.clone()
                scores = scores - args.missing_eos_penalty * (~has_eos).float()
                # ---- 2. per-token rewards, advantages
                rewards, kl = core.kl_penalised_rewards(logprobs, ref_logprobs, scores, mask, kl_ctl.value)
                if args.whiten_rewards:
                    rewards = core.whiten(rewards, mask, shift_mean=False)
                advantages, returns = core.gae(rewards, values, mask, args.gamma, args.lam)
                advantages = core.whiten(advantages, mask)
            # ---- 3. PPO epochs
            model.train()
            stats = {"clipfrac": [], "approxkl": [], "vf_loss": [], "pg_loss": [], "vf_clipfrac": []}
            mb = batch // args.num_mini_batches
            mu = mb // args.gradient_accumulation_steps
            for _ in range(args.num_ppo_epochs):
                perm = torch.randperm(batch, device=device)
                for m0 in range(0, batch, mb):
                    for u0 in range(m0, m0 + mb, mu):
                        idx = perm[u0:u0 + mu]
                        last = u0 + mu >= m0 + mb
                        with nullcontext() if last else acc.no_sync(wrapper):
                            new_logits, new_values = wrapper(ids[idx], attn[idx], pos[idx])
                            new_lp = core.logprobs_from_logits(new_logits[:, ctx - 1:-1] / (args.temperature + 1e-7),
                                                               responses[idx])
                            pg, pst = core.policy_loss(new_lp, logprobs[idx], advantages[idx], mask[idx], args.cliprange)
                            vf, vst = core.value_loss(new_values[:, ctx - 1:-1], values[idx], returns[idx], mask[idx],
                                                      args.cliprange_value)
                            acc.backward((pg + args.vf_coef * vf) / args.gradient_accumulation_steps)
                        for k, v in {**pst, **vst, "pg_loss": pg.detach(), "vf_loss": vf.detach()}.items():
                            stats[k].append(float(v))
                    acc.clip_grad_norm_(wrapper.parameters(), args.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
            # ---- 4. log (means over all processes)
            local = torch.tensor([scores_raw.mean().item(), sum(correct) / len(correct) if correct else float("nan"),
                                  kl.sum(1).mean().item(), entropy.item(),
                                  *[sum(v) / len(v) for v in stats.values()],
                                  core.explained_variance(values, returns, mask), mask.sum(1).float().mean().item(),
                                  1 - has_eos.float().mean().item(), float(bool(request.signum))], device=device)
            g = acc.gather(local.unsqueeze(0)).mean(0).tolist()
            rec = {"step": step + 1, "score": g[0], "rule_accuracy": g[1], "kl": g[2], "entropy": g[3],
                   "clipfrac": g[4], "approxkl": g[5], "vf_loss": g[6], "pg_loss": g[7], "vf_clipfrac": g[8],
                   "explained_variance": g[9], "response_length": g[10], "no_eos_fraction": g[11],
                   "kl_coef": kl_ctl.value}
            rec = {k: (round(v, 4) if v == v else None) if isinstance(v, float) else v for k, v in rec.items()}
            kl_ctl.update(g[2], batch * world)
            log.append(rec)
            if acc.is_main_process:
                bar.write("ppo update " + " ".join(f"{k}={v}" for k, v in rec.items()))
            bar.update(1)
            stop = g[12] > 0 and step + 1 < max_steps  # Ctrl-C or SIGTERM reached a process: all stop here
            if stop or (args.save_steps and (step + 1) % args.save_steps == 0 and step + 1 < max_steps):
                save_checkpoint(out, acc, wrapper, optimizer, step + 1, kl_ctl, tokenizer)
            if stop:
                bar.close()
                request.stop(str(out / f"checkpoint-{step + 1}"))
    bar.close()

    tokenizer.padding_side = "right"
    model.eval()
    after = held_out()
    if acc.is_main_process:
        model.policy.generation_config.update(eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
        model.policy.save_pretrained(out)  # the adapter with LoRA, the full model otherwise
        tokenizer.save_pretrained(out)
        save_config(out / "hfllm_args.yaml", args, model_args)
        final_kl = [r["kl"] for r in log[-5:]]
        metrics = {
            "model_name_or_path": model_args.model_name_or_path, "dataset_name": args.dataset_name,
            "reward_model_name_or_path": args.reward_model_name_or_path, "reward_funcs": args.reward_funcs,
            "reward_weights": weights, "use_peft": model_args.use_peft, "global_step": max_steps,
            "resumed_from_step": start or None, "num_processes": world,
            "kl_final": round(sum(final_kl) / len(final_kl), 4) if final_kl else None,
            **{f"{k}_before": v for k, v in before.items() if k != "answer_examples"},
            **after, "log": log,
        }
        run_folder.write_metrics(out, metrics, stage="ppo")
        for old in out.glob("checkpoint-*"):  # finished: checkpoints are no longer needed
            shutil.rmtree(old, ignore_errors=True)
        if before and after:
            print(f"\nheld-out answer accuracy: {before['answer_accuracy']:.1%} -> {after['answer_accuracy']:.1%}"
                  + (f"; reward score greedy {before['reward_score']:.3f} -> {after['reward_score']:.3f}, "
                     f"sampled {before['reward_score_sampled']:.3f} -> {after['reward_score_sampled']:.3f}"
                     if "reward_score" in after else ""))
        print(f"saved {'LoRA adapter' if model_args.use_peft else 'model'} to {out}")
    acc.wait_for_everyone()
    return 0
