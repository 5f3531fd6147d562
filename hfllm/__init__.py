"""hfllm: the whole life of a language model on the Hugging Face stack, as thin modules."""

__version__ = "0.1.0"

from hfllm.errors import UserError  # noqa: E402,F401
