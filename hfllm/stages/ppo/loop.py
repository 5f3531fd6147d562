"""PPO from feedback (the InstructGPT recipe), on transformers + peft + accelerate.

    hfllm ppo --config configs/tiny/ppo.yaml
    hfllm ppo --model_name_or_path runs/tiny/sft --reward_model_name_or_path runs/tiny/reward
    hfllm ppo --model_name_or_path runs/tiny/sft --reward_funcs answer_partial --use_peft --lora_r 16
    accelerate launch --multi_gpu --num_processes 2 -m hfllm.cli ppo --config configs/tiny/ppo.yaml  # 2 CPU processes

Each update: sample ``per_device_train_batch_size`` prompts per process, generate
answers (temperature/top_k/top_p, stop at eos), score them (reward model and/or
rule rewards, weighted), turn score + per-token KL to the reference into per-token
rewards, GAE with a value model, then ``num_ppo_epochs`` passes of clipped policy and
value losses over ``num_mini_batches``. The math is in core.py, the models in models.py.
The reference is a frozen copy, or with LoRA the policy with its adapter disabled.
The value model is a one-output sequence classifier initialised from the reward
model (or from the policy when only rule rewards are used).
"""

from __future__ import annotations

import math
import shutil
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from trl import ModelConfig

from hfllm.chat_template import end_of_turn_ids
from hfllm.console import Progress, format_line, write
from hfllm.data.builtin import answer_is_correct
from hfllm.data.load import ScriptArguments
from hfllm.errors import UserError
from hfllm.rewards import build_reward_funcs, check_weights, load_prompts, resolve_reward_funcs
from hfllm.generate import generate_answers
from hfllm.scoring import answer_accuracy, prompt_messages, rule_checks
from hfllm.stages._frame import Run
from hfllm.stages._signals import catch_stop_signals
from hfllm.stages.ppo import core
from hfllm.stages.ppo.models import PolicyAndValue, forward_logprobs, load_models, save_checkpoint, token_values


@dataclass
class PPOArguments(ScriptArguments):
    # data and rewards
    dataset_name: str = field(default="builtin:questions", metadata={"help": "prompts (text or messages) + columns"})
    eval_dataset_name: str | None = field(default="builtin:questions_eval", metadata={"help": "held-out prompts"})
    eval_samples: int = field(default=100, metadata={"help": "held-out prompts for before/after (0: skip)"})
    reward_model_name_or_path: str | None = field(default=None, metadata={"help": "a reward stage folder"})
    reward_funcs: list[str] = field(default_factory=list, metadata={"help": "rule rewards or import paths"})
    reward_weights: list[float] | None = field(default=None, metadata={"help": "reward model first, then funcs"})
    rule_checks: list[str] = field(default_factory=list, metadata={
        "help": "rule rewards reported on held-out answers before/after (e.g. friendly_closing), not trained on"})
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
    use_cpu: bool = field(default=False, metadata={"help": "train on CPU (gloo for several processes)"})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 weights"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow code from the model repo to run"})
    disable_tqdm: bool = field(default=True, metadata={"help": "no progress bar (a line per update says the step "
                                                                "and the time left)"})
    report_to: str = field(default="none", metadata={"help": "accepted for symmetry; logs go to metrics.json"})
    # the Hub, as TrainingArguments names it
    push_to_hub: bool = field(default=False, metadata={"help": "push the finished policy (with its card)"})
    hub_model_id: str | None = field(default=None, metadata={"help": "user/name to push to (default: <run>-ppo)"})
    hub_token: str | None = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or hf auth login)"})
    hub_private_repo: bool | None = field(default=None, metadata={"help": "create the repo as private"})
    hub_revision: str | None = field(default=None, metadata={"help": "branch to push to"})


# What each update logs, averaged over the processes (PPO's diagnostics by TRL's names).
LOGGED = ("score", "rule_accuracy", "kl", "entropy", "clipfrac", "approxkl", "vf_loss", "pg_loss", "vf_clipfrac",
          "explained_variance", "response_length", "no_eos_fraction")


ARGUMENTS = (PPOArguments, ModelConfig)  # what its flags and config files fill


def main(argv: list[str]) -> int:
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    run = Run.start("ppo", argv, ARGUMENTS, defaults={"lora_target_modules": ["all-linear"]},
                    needs_model="ppo needs a policy to start from: set --model_name_or_path (e.g. the SFT stage folder)")
    args, model_args = run.parsed
    batch = args.per_device_train_batch_size
    micro_batches = args.num_mini_batches * args.gradient_accumulation_steps
    if batch % micro_batches:
        raise UserError(f"per_device_train_batch_size {batch} must divide into num_mini_batches x "
                        f"gradient_accumulation_steps = {micro_batches}")
    run.prepare()
    acc = Accelerator(cpu=args.use_cpu or not torch.cuda.is_available())
    world, rank, device = acc.num_processes, acc.process_index, acc.device
    checkpoint = run.resume_from

    train_ds, eval_rows = load_prompts(args, limit_eval=args.eval_samples)
    tokenizer = run.load_tokenizer()
    funcs = build_reward_funcs(args.reward_funcs, args.reward_model_name_or_path, device=device)
    weights = check_weights(args.reward_weights, funcs)
    checks = resolve_reward_funcs(args.rule_checks)
    reward_model = funcs[0] if args.reward_model_name_or_path else None
    policy, reference, value_model = load_models(run, tokenizer, checkpoint, device)

    wrapper = PolicyAndValue(policy, value_model)
    optimizer = torch.optim.AdamW([p for p in wrapper.parameters() if p.requires_grad], lr=args.learning_rate,
                                  eps=1e-5)
    wrapper, optimizer = acc.prepare(wrapper, optimizer)
    model = acc.unwrap_model(wrapper)
    start, kl_ctl = 0, core.AdaptiveKLController(args.kl_coef, args.target_kl)
    if checkpoint:
        state = torch.load(f"{checkpoint}/state.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        start, kl_ctl.value = state["step"], state["kl_coef"]
    max_steps = math.ceil(args.total_episodes / (batch * world)) if args.total_episodes else args.max_steps

    def rows_for(step):  # a deterministic order, so a resumed run sees the prompts it would have seen
        per_epoch = max(1, len(train_ds) // (batch * world))
        epoch, k = divmod(step, per_epoch)
        order = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(args.seed + epoch)).tolist()
        order = (order * math.ceil(batch * world / len(order) + 1))
        first = k * batch * world + rank * batch
        return [train_ds[i] for i in order[first:first + batch]]

    def score(prompts, texts, rows):
        columns = {k: [r.get(k) for r in rows] for k in rows[0] if k != "prompt"}
        total = torch.zeros(len(texts))
        for weight, func in zip(weights, funcs):
            total += weight * torch.tensor(func(prompts=prompts, completions=texts, **columns), dtype=torch.float32)
        return total

    def held_out():
        if not eval_rows or not acc.is_main_process:
            return {}
        res = answer_accuracy(model.policy, tokenizer, eval_rows, len(eval_rows), args.response_length, checks)
        # Greedy, and sampled as in the rollouts (what PPO maximises), 4 a prompt.
        if reward_model is not None or checks:
            prompts = [prompt_messages(r) for r in eval_rows]
            torch.manual_seed(args.seed)
            sampled = generate_answers(model.policy, tokenizer, prompts * 4, args.response_length, do_sample=True,
                                       temperature=args.temperature, top_k=args.top_k or None, top_p=args.top_p)
            res.update(rule_checks(checks, prompts * 4, sampled, eval_rows * 4, suffix="_sampled"))
        if reward_model is not None:
            greedy = generate_answers(model.policy, tokenizer, prompts, args.response_length)
            res["reward_score"] = round(sum(reward_model(prompts, greedy)) / len(prompts), 4)
            res["reward_score_sampled"] = round(sum(reward_model(prompts * 4, sampled)) / len(sampled), 4)
        return res

    before = held_out() if start == 0 else {}
    log: list[dict] = []
    bar = tqdm(total=max_steps, initial=start, desc="ppo", disable=args.disable_tqdm or not acc.is_main_process)
    progress, tokens = Progress(start, 0), 0
    eos_ids = end_of_turn_ids(tokenizer)
    run.claim()  # everything has loaded: the output folder becomes this run's
    with catch_stop_signals() as request:
        for step in range(start, max_steps):
            # ---- 1. rollouts: sample answers, score them, per-token rewards and advantages
            torch.manual_seed(args.seed * 1000 + step * world + rank)
            rows = rows_for(step)
            prompts = [prompt_messages(r) for r in rows]
            texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
            enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left",
                            add_special_tokens=False).to(device)
            context = enc["input_ids"].shape[1]
            model.eval()
            with torch.no_grad():
                ids = model.policy.generate(**enc, do_sample=True, max_new_tokens=args.response_length,
                                            temperature=args.temperature, top_k=args.top_k or None, top_p=args.top_p,
                                            eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
                responses = ids[:, context:]
                mask, has_eos = core.response_mask(responses, eos_ids)
                attention = torch.cat([enc["attention_mask"], mask.long()], 1)
                positions = (attention.cumsum(1) - 1).clamp(min=0)
                logprobs, logits = forward_logprobs(model.policy, ids, attention, positions, context, args.temperature)
                entropy = core.masked_mean(core.entropy_from_logits(logits), mask)
                del logits
                with model.policy.disable_adapter() if reference is None else nullcontext():
                    ref_logprobs, _ = forward_logprobs(model.policy if reference is None else reference, ids,
                                                       attention, positions, context, args.temperature)
                values = token_values(model.value_model, ids, attention, positions)[:, context - 1:-1]
                answers = [tokenizer.decode(r[m], skip_special_tokens=True) for r, m in zip(responses, mask)]
                scores = score(prompts, answers, rows).to(device)
                correct = [float(answer_is_correct(a, r["answer"])) for a, r in zip(answers, rows) if "answer" in r]
                raw_scores = scores.clone()
                scores = scores - args.missing_eos_penalty * (~has_eos).float()
                rewards, kl = core.kl_penalised_rewards(logprobs, ref_logprobs, scores, mask, kl_ctl.value)
                if args.whiten_rewards:
                    rewards = core.whiten(rewards, mask, shift_mean=False)
                advantages, returns = core.gae(rewards, values, mask, args.gamma, args.lam)
                advantages = core.whiten(advantages, mask)
            # ---- 2. PPO epochs: clipped policy and value losses over mini-batches of micro-batches
            model.train()
            stats = {"clipfrac": [], "approxkl": [], "vf_loss": [], "pg_loss": [], "vf_clipfrac": []}
            mini_size = batch // args.num_mini_batches
            micro_size = mini_size // args.gradient_accumulation_steps
            for _ in range(args.num_ppo_epochs):
                order = torch.randperm(batch, device=device)
                for mini_start in range(0, batch, mini_size):
                    for micro_start in range(mini_start, mini_start + mini_size, micro_size):
                        idx = order[micro_start:micro_start + micro_size]
                        last = micro_start + micro_size >= mini_start + mini_size
                        with nullcontext() if last else acc.no_sync(wrapper):
                            new_logits, new_values = wrapper(ids[idx], attention[idx], positions[idx])
                            new_logprobs = core.logprobs_from_logits(
                                new_logits[:, context - 1:-1] / (args.temperature + 1e-7), responses[idx])
                            pg_loss, policy_stats = core.policy_loss(new_logprobs, logprobs[idx], advantages[idx],
                                                                     mask[idx], args.cliprange)
                            vf_loss, value_stats = core.value_loss(new_values[:, context - 1:-1], values[idx],
                                                                   returns[idx], mask[idx], args.cliprange_value)
                            acc.backward((pg_loss + args.vf_coef * vf_loss) / args.gradient_accumulation_steps)
                        for k, v in {**policy_stats, **value_stats, "pg_loss": pg_loss.detach(),
                                     "vf_loss": vf_loss.detach()}.items():
                            stats[k].append(float(v))
                    acc.clip_grad_norm_(wrapper.parameters(), args.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
            # ---- 3. log the means over all processes; every process learns whether any was signalled
            local = {"score": raw_scores.mean().item(),
                     "rule_accuracy": sum(correct) / len(correct) if correct else float("nan"),
                     "kl": kl.sum(1).mean().item(), "entropy": entropy.item(),
                     **{k: sum(v) / len(v) for k, v in stats.items()},
                     "explained_variance": core.explained_variance(values, returns, mask),
                     "response_length": mask.sum(1).float().mean().item(),
                     "no_eos_fraction": 1 - has_eos.float().mean().item(), "stop": float(bool(request.signum))}
            means = dict(zip(local, acc.gather(torch.tensor([list(local.values())], device=device)).mean(0).tolist()))
            record = {"step": step + 1, **{k: means[k] for k in LOGGED}, "kl_coef": kl_ctl.value}
            record = {k: (round(v, 4) if v == v else None) if isinstance(v, float) else v for k, v in record.items()}
            kl_ctl.update(means["kl"], batch * world)
            log.append(record)
            tokens += int(attention.sum()) * world  # prompts and answers, this process's share times all
            if acc.is_main_process:
                speed, eta = progress.rates(step + 1, max_steps, tokens)
                write(format_line("step", step + 1, max_steps, record, tokens_per_second=speed, eta=eta))
            bar.update(1)
            stop = means["stop"] > 0 and step + 1 < max_steps  # Ctrl-C or SIGTERM reached a process: all stop here
            if stop or (args.save_steps and (step + 1) % args.save_steps == 0 and step + 1 < max_steps):
                save_checkpoint(run.output_dir, acc, wrapper, optimizer, step + 1, kl_ctl, tokenizer)
            if stop:
                bar.close()
                request.stop(str(run.output_dir / f"checkpoint-{step + 1}"))
    bar.close()

    model.eval()
    after = held_out()
    if acc.is_main_process:
        model.policy.save_pretrained(run.output_dir)  # the adapter with LoRA, the full model otherwise
        tokenizer.save_pretrained(run.output_dir)
    final_kl = [r["kl"] for r in log[-5:]]
    summary = []
    if before and after:
        summary.append(f"\nheld-out answer accuracy: {before['answer_accuracy']:.1%} -> {after['answer_accuracy']:.1%}")
        if "reward_score" in after:
            summary[-1] += (f"; reward score greedy {before['reward_score']:.3f} -> {after['reward_score']:.3f}, "
                            f"sampled {before['reward_score_sampled']:.3f} -> {after['reward_score_sampled']:.3f}")
        summary += [f"rule check {k.removeprefix('check_')}: greedy {before[k]:.1%} -> {after[k]:.1%}, sampled "
                    f"{before[k + '_sampled']:.1%} -> {after[k + '_sampled']:.1%}"
                    for k in after if k.startswith("check_") and not k.endswith("_sampled")]
    run.finish({
        "model_name_or_path": model_args.model_name_or_path, "dataset_name": args.dataset_name,
        "reward_model_name_or_path": args.reward_model_name_or_path, "reward_funcs": args.reward_funcs,
        "reward_weights": weights, "use_peft": model_args.use_peft, "global_step": max_steps,
        "resumed_from_step": start or None, "kl_final": round(sum(final_kl) / len(final_kl), 4) if final_kl else None,
        **{f"{k}_before": v for k, v in before.items() if k != "answer_examples"}, **after, "log": log,
    }, lines=[*summary, f"saved {'LoRA adapter' if model_args.use_peft else 'model'} to {run.output_dir}"])
    if acc.is_main_process:
        for old in run.output_dir.glob("checkpoint-*"):  # finished: checkpoints are no longer needed
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
    return 0
