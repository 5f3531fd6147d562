"""What hfllm grpo and hfllm rloo share: TRL's trainers that sample a group of answers per prompt.

GRPO (trl.GRPOTrainer) and RLOO (trl.RLOOTrainer) need no value model: each answer's
advantage comes from the other answers to the same prompt. Rewards are the reward
model (scored with its own tokenizer and chat template) and rule rewards by name or
import path (see hfllm/rewards.py); ``--reward_weights`` lists the reward model first.
Every trl.GRPOConfig / trl.RLOOConfig option passes through. Answer accuracy on
held-out prompts is measured before and after: keep a rule check beside a learned
reward, which a small policy learns to game.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import set_seed
from trl import ModelConfig, get_peft_config

from hfllm import run_folder
from hfllm.stages import _frame as interrupt
from hfllm.chat_template import end_of_turn_ids, ensure_chat_template
from hfllm.config import parse_args, save_config
from hfllm.errors import UserError
from hfllm.scoring import answer_accuracy
from hfllm.model import load_causal_lm, load_tokenizer, training_defaults
from hfllm.rewards import build_reward_funcs, load_prompts


@dataclass
class RLScriptArguments:
    dataset_name: str = field(default="builtin:prompts", metadata={"help": "prompts (text or messages) + columns"})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name"})
    dataset_train_split: str = field(default="train", metadata={"help": "training split"})
    eval_dataset_name: str | None = field(default="builtin:prompts_eval", metadata={"help": "held-out prompts"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use at most this many prompts"})
    eval_samples: int = field(default=100, metadata={"help": "held-out prompts for before/after (0: skip)"})
    reward_model_name_or_path: str | None = field(default=None, metadata={"help": "a reward stage folder"})
    reward_funcs: list[str] = field(default_factory=list, metadata={"help": "rule rewards or import paths"})
    overwrite: bool = field(default=False, metadata={"help": "replace a finished run in output_dir"})


def run(argv: list[str], stage: str, config_cls, trainer_cls) -> int:
    defaults = {"output_dir": f"runs/default/{stage}", "report_to": "none", "logging_steps": 5,
                "save_total_limit": 1, "lora_target_modules": ["all-linear"], "num_generations": 4,
                "max_completion_length": 32, "per_device_train_batch_size": 8, "learning_rate": 1e-5,
                "beta": 0.04, **training_defaults()}
    (args, cfg, model_args), _ = parse_args([RLScriptArguments, config_cls, ModelConfig], argv,
                                            prog=f"hfllm {stage}", defaults=defaults)
    if not model_args.model_name_or_path:
        raise UserError(f"{stage} needs a policy to start from: set --model_name_or_path (e.g. the SFT stage folder)")
    push, cfg.push_to_hub = cfg.push_to_hub, False  # pushed by hfllm.hub once finished, with its card
    resume_from = run_folder.prepare(cfg.output_dir, overwrite=args.overwrite, stage=stage)

    with cfg.main_process_first(desc="loading prompts"):
        train_ds = load_prompts(args.dataset_name, config=args.dataset_config, split=args.dataset_train_split,
                                limit=args.max_train_samples)
        eval_rows = list(load_prompts(args.eval_dataset_name, limit=args.eval_samples)) \
            if args.eval_dataset_name and args.eval_samples else []
    funcs = build_reward_funcs(args.reward_funcs, args.reward_model_name_or_path)
    if cfg.reward_weights and len(cfg.reward_weights) != len(funcs):
        raise UserError(f"--reward_weights has {len(cfg.reward_weights)} values for {len(funcs)} rewards "
                        "(the reward model first, then --reward_funcs in order)")

    tokenizer = load_tokenizer(model_args.model_name_or_path)
    ensure_chat_template(tokenizer)
    dtype = "bfloat16" if cfg.bf16 else "float16" if cfg.fp16 else "float32"
    set_seed(cfg.seed)  # LoRA's initial weights are drawn in the trainer, before it seeds itself
    # Loaded from a folder, so the trainer can load the reference (beta > 0) from the same place.
    model = load_causal_lm(model_args.model_name_or_path, dtype=dtype, merge_adapter=True,
                           trust_remote_code=cfg.trust_remote_code)
    eos_ids = end_of_turn_ids(tokenizer)
    model.generation_config.update(eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
    limit, length = len(eval_rows), cfg.max_completion_length or 32
    before = answer_accuracy(model, tokenizer, eval_rows, limit, length) if eval_rows else {}

    trainer = trainer_cls(model=model, reward_funcs=funcs, args=cfg, train_dataset=train_ds,
                          processing_class=tokenizer, peft_config=get_peft_config(model_args))
    result = interrupt.train(trainer, resume_from)  # Ctrl-C or SIGTERM: checkpoint, then exit 130 / 143
    after = answer_accuracy(trainer.model, tokenizer, eval_rows, limit, length) if eval_rows else {}

    trainer.model.generation_config.update(eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
    trainer.save_model(cfg.output_dir)  # on every process: under FSDP or ZeRO-3 gathering the weights takes them all
    if trainer.is_world_process_zero():
        save_config(f"{cfg.output_dir}/hfllm_args.yaml", args, model_args, cfg)
        logs = [r for r in trainer.state.log_history if "reward" in r]
        metrics = {
            "model_name_or_path": model_args.model_name_or_path, "dataset_name": args.dataset_name,
            "reward_model_name_or_path": args.reward_model_name_or_path, "reward_funcs": args.reward_funcs,
            "reward_weights": cfg.reward_weights, "use_peft": model_args.use_peft, "beta": cfg.beta,
            "num_generations": cfg.num_generations, "global_step": result.global_step,
            "train_seconds": round(result.metrics.get("train_runtime", 0.0), 1),
            "reward_first": logs[0]["reward"] if logs else None, "reward_last": logs[-1]["reward"] if logs else None,
            "answer_accuracy_before": before.get("answer_accuracy"), **after, "log": logs,
            "world_size": cfg.world_size,
        }
        run_folder.write_metrics(cfg.output_dir, metrics, stage=stage)
        if push:
            from hfllm.hub.push import push_stage_from_args

            print(f"pushed to {push_stage_from_args(cfg)}")
        if before:
            print(f"\nheld-out answer accuracy: {before['answer_accuracy']:.1%} -> {after['answer_accuracy']:.1%}")
        print(f"saved {'LoRA adapter' if model_args.use_peft else 'model'} to {cfg.output_dir}")
    return 0

