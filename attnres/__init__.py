"""AttnRes Lens model library: PreNorm, Full and Block Attention Residuals (arXiv 2603.15031)."""

from .basic_tokenizers import CharTokenizer
from .checkpoint import CheckpointError, save_model
from .config import ModelConfig
from .device import select_device
from .loader import load_model
from .model import Internals, Model, ModelOutput

__all__ = [
    "CharTokenizer",
    "CheckpointError",
    "Internals",
    "Model",
    "ModelConfig",
    "ModelOutput",
    "load_model",
    "save_model",
    "select_device",
]
