"""Train a reward model on preference pairs with trl.RewardTrainer.

    hfllm reward --config configs/tiny/reward.yaml
    hfllm reward --model_name_or_path runs/tiny/sft --dataset_name pairs.jsonl --output_dir runs/tiny/reward

The model is the given causal LM with a one-output classification head
(``AutoModelForSequenceClassification``, ``num_labels=1``): it scores a whole
conversation with one number, higher for the better answer. Pairs can be
``prompt``/``chosen``/``rejected`` (text or messages), ``chosen``/``rejected``
only, or HH-RLHF style transcripts. Reports pairwise accuracy and the mean margin
on the eval split; later stages (PPO, best-of-N in the app) load the folder to score text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import set_seed
from trl import ModelConfig, RewardConfig, RewardTrainer, get_peft_config

from hfllm import run_folder
from hfllm.data import formats
from hfllm.stages import _frame as interrupt
from hfllm.chat_template import ensure_chat_template
from hfllm.config import parse_args, save_config
from hfllm.errors import UserError
from hfllm.model import check_model_source, load_sequence_classifier, load_tokenizer, training_defaults


@dataclass
class RewardScriptArguments:
    dataset_name: str = field(default="builtin:preference", metadata={"help": "preference pairs"})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name"})
    dataset_train_split: str = field(default="train", metadata={"help": "training split"})
    dataset_test_split: str | None = field(default=None, metadata={"help": "eval split of the same dataset"})
    eval_dataset_name: str | None = field(default=None, metadata={"help": "a separate eval dataset"})
    eval_split_size: float = field(default=0.1, metadata={"help": "held-out share (<1) or count, if no eval set"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use at most this many pairs"})
    overwrite: bool = field(default=False, metadata={"help": "replace a finished run in output_dir"})



def main(argv: list[str]) -> int:
    defaults = {"output_dir": "runs/default/reward", "report_to": "none", "logging_steps": 10,
                "save_total_limit": 1, "lora_task_type": "SEQ_CLS", **training_defaults()}
    (args, rargs, model_args), _ = parse_args([RewardScriptArguments, RewardConfig, ModelConfig], argv,
                                              prog="hfllm reward", defaults=defaults)
    if not model_args.model_name_or_path:
        raise UserError("reward needs a model to start from: set --model_name_or_path (e.g. the SFT stage folder)")
    check_model_source(model_args.model_name_or_path)
    push, rargs.push_to_hub = rargs.push_to_hub, False  # pushed by hfllm.hub once finished, with its card
    resume_from = run_folder.prepare(rargs.output_dir, overwrite=args.overwrite, stage="reward")

    with rargs.main_process_first(desc="checking data"):
        train_ds, eval_ds, fmt, dropped = formats.load_train_eval(args, "preference", rargs.seed)
    if eval_ds is None:
        rargs.eval_strategy = "no"

    tokenizer = load_tokenizer(model_args.model_name_or_path, revision=model_args.model_revision,
                               trust_remote_code=rargs.trust_remote_code)
    ensure_chat_template(tokenizer)
    dtype = "bfloat16" if rargs.bf16 else "float16" if rargs.fp16 else "float32"
    set_seed(rargs.seed)  # the new score head (and LoRA) are drawn before the trainer seeds itself
    model = load_sequence_classifier(model_args.model_name_or_path, num_labels=1, revision=model_args.model_revision,
                                     dtype=dtype, trust_remote_code=rargs.trust_remote_code, what="model")
    model.config.pad_token_id = tokenizer.pad_token_id  # the score is read at the last non-pad token
    # Measured inside train(): an evaluate() before train() leaves the model unwrapped by DDP (see pretrain.py).
    rargs.eval_on_start = eval_ds is not None

    trainer = RewardTrainer(model=model, args=rargs, train_dataset=formats.pair_columns(train_ds),
                            eval_dataset=formats.pair_columns(eval_ds),
                            processing_class=tokenizer, peft_config=get_peft_config(model_args))
    result = interrupt.train(trainer, resume_from)  # Ctrl-C: checkpoint, then exit 130
    initial = next((r for r in trainer.state.log_history if "eval_loss" in r), {})
    final = trainer.evaluate() if eval_ds is not None else {}

    trainer.save_model(rargs.output_dir)  # on every process: under FSDP or ZeRO-3 gathering the weights takes them all
    if trainer.is_world_process_zero():
        save_config(f"{rargs.output_dir}/hfllm_args.yaml", args, model_args, rargs)
        run_folder.plot_losses(trainer.state.log_history, f"{rargs.output_dir}/loss.png", "reward model loss")
        metrics = {
            "model_name_or_path": model_args.model_name_or_path, "dataset_name": args.dataset_name,
            "train_pairs": len(train_ds), "eval_pairs": len(eval_ds) if eval_ds is not None else 0,
            "dropped_empty_pairs": dropped, "use_peft": model_args.use_peft, "global_step": result.global_step,
            "train_loss": result.training_loss, "train_seconds": round(result.metrics.get("train_runtime", 0), 1),
            "eval_accuracy_before": initial.get("eval_accuracy"), "eval_accuracy": final.get("eval_accuracy"),
            "eval_margin_before": initial.get("eval_margin"), "eval_margin": final.get("eval_margin"),
            "eval_loss": final.get("eval_loss"), "world_size": rargs.world_size,
        }
        run_folder.write_metrics(rargs.output_dir, metrics, stage="reward")
        if push:
            from hfllm.hub.push import push_stage_from_args

            print(f"pushed to {push_stage_from_args(rargs)}")
        if final:
            print(f"\npairwise accuracy on {metrics['eval_pairs']} held-out pairs: "
                  f"{initial.get('eval_accuracy', 0):.1%} -> {final.get('eval_accuracy', 0):.1%}")
        print(f"saved reward model to {rargs.output_dir}")
    return 0
