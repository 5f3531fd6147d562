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

from trl import get_peft_config

from hfllm.data.load import ScriptArguments
from hfllm.loading import load_causal_lm
from hfllm.rewards import build_reward_funcs, check_weights, load_prompts
from hfllm.scoring import answer_accuracy
from hfllm.stages._frame import Run


@dataclass
class RLScriptArguments(ScriptArguments):
    dataset_name: str = field(default="builtin:prompts", metadata={"help": "prompts (text or messages) + columns"})
    eval_dataset_name: str | None = field(default="builtin:prompts_eval", metadata={"help": "held-out prompts"})
    eval_samples: int = field(default=100, metadata={"help": "held-out prompts for before/after (0: skip)"})
    reward_model_name_or_path: str | None = field(default=None, metadata={"help": "a reward stage folder"})
    reward_funcs: list[str] = field(default_factory=list, metadata={"help": "rule rewards or import paths"})


# hfllm's defaults for GRPO and RLOO, over TRL's (hfllm inspect --stage grpo reads them too).
DEFAULTS = {"logging_steps": 5, "save_total_limit": 1, "lora_target_modules": ["all-linear"], "num_generations": 4,
            "max_completion_length": 32, "per_device_train_batch_size": 8, "learning_rate": 1e-5, "beta": 0.04}


def run_stage(argv: list[str], stage: str, arguments: tuple, trainer_cls) -> int:
    """hfllm grpo / rloo: ``arguments`` are (RLScriptArguments, the trainer's config class, ModelConfig)."""
    run = Run.start(stage, argv, arguments, defaults=DEFAULTS, needs_model=(
        f"{stage} needs a policy to start from: set --model_name_or_path (e.g. the SFT stage folder)"))
    args, config, model_args = run.parsed
    run.prepare()
    with config.main_process_first(desc="loading prompts"):
        train_ds, eval_rows = load_prompts(args, limit_eval=args.eval_samples)
    funcs = build_reward_funcs(args.reward_funcs, args.reward_model_name_or_path)
    check_weights(config.reward_weights, funcs)

    tokenizer = run.load_tokenizer()
    # Loaded from a folder, so the trainer can load the reference (beta > 0) from the same place.
    model = run.load_model(load_causal_lm, tokenizer, merge_adapter=True)
    limit, length = len(eval_rows), config.max_completion_length or 32
    before = answer_accuracy(model, tokenizer, eval_rows, limit, length) if eval_rows else {}

    trainer = trainer_cls(model=model, reward_funcs=funcs, args=config, train_dataset=train_ds,
                          processing_class=tokenizer, peft_config=get_peft_config(model_args))
    result = run.train(trainer)
    after = answer_accuracy(trainer.model, tokenizer, eval_rows, limit, length) if eval_rows else {}

    run.save(trainer, tokenizer)
    logs = [r for r in trainer.state.log_history if "reward" in r]
    run.finish({
        "model_name_or_path": model_args.model_name_or_path, "dataset_name": args.dataset_name,
        "reward_model_name_or_path": args.reward_model_name_or_path, "reward_funcs": args.reward_funcs,
        "reward_weights": config.reward_weights, "use_peft": model_args.use_peft, "beta": config.beta,
        "num_generations": config.num_generations, "global_step": result.global_step,
        "train_seconds": round(result.metrics.get("train_runtime", 0.0), 1),
        "reward_first": logs[0]["reward"] if logs else None, "reward_last": logs[-1]["reward"] if logs else None,
        "answer_accuracy_before": before.get("answer_accuracy"), **after, "log": logs,
    }, lines=[*([f"\nheld-out answer accuracy: {before['answer_accuracy']:.1%} -> {after['answer_accuracy']:.1%}"]
                if before else []), f"saved {'LoRA adapter' if model_args.use_peft else 'model'} to {run.output_dir}"])
    return 0
