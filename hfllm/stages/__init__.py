"""The stages of a model's life, one module each, in pipeline order.

This table is the one list of them: ``hfllm --help`` and the dispatcher (cli.py), the pipeline
runner, the model card, ``hfllm push`` of a run folder and the app's model discovery all read
it. Every stage writes ``metrics.json`` last, so a folder with it is a finished stage.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str          # the pipeline's command, and `hfllm <name>` unless ``argv`` says otherwise
    module: str        # where main(argv) is
    help: str          # one line for `hfllm --help`
    card: str          # what the model card says this stage did
    output: str        # what its folder holds: "data", "tokenizer", "model" (a causal LM) or "reward"
    trl: bool = False  # trains with TRL (its version goes into the model card)
    argv: tuple = ()   # words before the flags: `hfllm data clean` is the "clean" stage
    base: bool = False  # its model continues text: it was not trained to answer chats


STAGES = {s.name: s for s in (
    Stage("clean", "hfllm.data.clean", "clean and deduplicate a text corpus",
          "a corpus cleaned and deduplicated by `hfllm data clean`", "data", argv=("clean",)),
    Stage("tokenizer", "hfllm.stages.tokenizer", "train a byte-level BPE tokenizer",
          "a byte-level BPE tokenizer trained with `tokenizers`", "tokenizer"),
    Stage("pretrain", "hfllm.stages.pretrain", "pretrain a decoder-only model built from a config",
          "pretraining on next-token prediction with `transformers.Trainer`", "model", base=True),
    Stage("sft", "hfllm.stages.sft", "supervised fine-tuning (full or LoRA) with trl.SFTTrainer",
          "supervised fine-tuning with `trl.SFTTrainer`", "model", trl=True),
    Stage("reward", "hfllm.stages.reward", "train a reward model on preference pairs",
          "a reward model trained on preference pairs with `trl.RewardTrainer`", "reward", trl=True),
    Stage("dpo", "hfllm.stages.dpo", "direct preference optimisation with trl.DPOTrainer",
          "direct preference optimisation with `trl.DPOTrainer`", "model", trl=True),
    Stage("kto", "hfllm.stages.kto", "KTO on answers marked good or bad (or pairs) with trl.KTOTrainer",
          "Kahneman-Tversky optimisation on desirable and undesirable answers with `trl.KTOTrainer`", "model", trl=True),
    Stage("orpo", "hfllm.stages.orpo", "ORPO (SFT and preference in one loss, no reference model)",
          "odds-ratio preference optimisation with `trl.experimental.orpo.ORPOTrainer`", "model", trl=True),
    Stage("simpo", "hfllm.stages.simpo", "SimPO (length-normalised preference, no reference model)",
          "simple preference optimisation (SimPO) with `trl.experimental.cpo.CPOTrainer`", "model", trl=True),
    Stage("ppo", "hfllm.stages.ppo", "PPO with a reward model or rule rewards",
          "PPO reinforcement learning against a reward model or rule rewards", "model", trl=True),
    Stage("grpo", "hfllm.stages.grpo", "GRPO with trl.GRPOTrainer",
          "GRPO reinforcement learning with `trl.GRPOTrainer`", "model", trl=True),
    Stage("rloo", "hfllm.stages.rloo", "RLOO with trl.RLOOTrainer",
          "RLOO reinforcement learning with `trl.RLOOTrainer`", "model", trl=True),
)}

MODEL_STAGES = tuple(name for name, s in STAGES.items() if s.output == "model")  # what chat/push look for
CHAT_STAGES = tuple(name for name in MODEL_STAGES if not STAGES[name].base)  # what the playground opens on
REWARD_STAGES = tuple(name for name, s in STAGES.items() if s.output == "reward")
