"""hfllm ppo: the loop (loop.py), the arithmetic (core.py), the models and checkpoints (models.py)."""

from hfllm.stages.ppo.loop import ARGUMENTS, main  # noqa: F401
