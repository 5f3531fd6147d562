"""Train a reward model on preference pairs with trl.RewardTrainer.

    hfllm reward --config configs/tiny/reward.yaml
    hfllm reward --model_name_or_path runs/tiny/sft --dataset_name pairs.jsonl --output_dir runs/tiny/reward

The model is the given causal LM with a one-output classification head
(``AutoModelForSequenceClassification``, ``num_labels=1``): it scores a whole
conversation with one number, higher for the better answer. Pairs can be
``prompt``/``chosen``/``rejected`` (text or messages), ``chosen``/``rejected``
only, or HH-RLHF style transcripts. Reports pairwise accuracy and the mean margin
on the eval split; later stages (PPO, best-of-N in the app) score text with it
through hfllm.rewards.RewardModelScorer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from trl import ModelConfig, RewardConfig, RewardTrainer, get_peft_config

from hfllm.data import formats
from hfllm.data.load import ScriptArguments
from hfllm.loading import load_sequence_classifier
from hfllm.stages._frame import Run


@dataclass
class RewardScriptArguments(ScriptArguments):
    dataset_name: str = field(default="builtin:preference", metadata={"help": "preference pairs"})
    eval_split_size: float = field(default=0.1, metadata={"help": "held-out share (<1) or count, if no eval set"})


ARGUMENTS = (RewardScriptArguments, RewardConfig, ModelConfig)  # what its flags and config files fill
DEFAULTS = {"logging_steps": 10, "save_total_limit": 1, "lora_task_type": "SEQ_CLS"}  # hfllm's, over TRL's


def main(argv: list[str]) -> int:
    run = Run.start("reward", argv, ARGUMENTS, defaults=DEFAULTS,
                    needs_model="reward needs a model to start from: set --model_name_or_path (e.g. the SFT stage "
                                "folder)")
    args, config, model_args = run.parsed
    run.prepare()
    with config.main_process_first(desc="checking data"):
        train_ds, eval_ds, fmt, rows = formats.load_train_eval(args, "preference", config.seed)
    if eval_ds is None:
        config.eval_strategy = "no"

    tokenizer = run.load_tokenizer()
    model = run.load_model(load_sequence_classifier, num_labels=1, what="model")
    run.default_learning_rate(model)
    model.config.pad_token_id = tokenizer.pad_token_id  # the score is read at the last non-pad token
    # Measured inside train(): an evaluate() before train() leaves the model unwrapped by DDP (see pretrain.py).
    config.eval_on_start = eval_ds is not None

    trainer = RewardTrainer(model=model, args=config, train_dataset=formats.pair_columns(train_ds),
                            eval_dataset=formats.pair_columns(eval_ds),
                            processing_class=tokenizer, peft_config=get_peft_config(model_args))
    if getattr(model, "is_quantized", False):  # QLoRA: TRL casts every trainable weight to bfloat16 for the
        # adapters' sake; the new score head is a plain layer that meets hidden states in the training dtype
        for name, weight in trainer.model.named_parameters():
            if weight.requires_grad and "lora_" not in name:
                weight.data = weight.data.to(getattr(torch, run.dtype))
    result = run.train(trainer)
    initial = next((r for r in trainer.state.log_history if "eval_loss" in r), {})
    final = trainer.evaluate() if eval_ds is not None else {}

    run.save(trainer)
    run.finish({
        "model_name_or_path": model_args.model_name_or_path, "dataset_name": args.dataset_name,
        "train_pairs": len(train_ds), "eval_pairs": len(eval_ds) if eval_ds is not None else 0,
        "dropped_empty_pairs": rows.empty, **rows.metrics(), "use_peft": model_args.use_peft,
        "global_step": result.global_step,
        "train_loss": result.training_loss, "train_seconds": round(result.metrics.get("train_runtime", 0), 1),
        "eval_accuracy_before": initial.get("eval_accuracy"), "eval_accuracy": final.get("eval_accuracy"),
        "eval_margin_before": initial.get("eval_margin"), "eval_margin": final.get("eval_margin"),
        "eval_loss": final.get("eval_loss"),
    }, trainer, plot="reward model loss", lines=[
        *([f"\npairwise accuracy on {len(eval_ds)} held-out pairs: {initial.get('eval_accuracy', 0):.1%} -> "
           f"{final.get('eval_accuracy', 0):.1%}"] if final else []),
        f"saved reward model to {run.output_dir}"])
    return 0
