"""cvae-art's library: a conditional VAE, its training, latent operations and video output.

Never imports ComfyUI or the node pack, so it works from a notebook or a script.
"""
from .checkpoint import CheckpointError, load_model, save_model
from .conditions import ConditionError, blend_conditions, make_condition
from .model import CVAE, ModelConfig

__all__ = [
    "CVAE", "ModelConfig", "load_model", "save_model", "CheckpointError",
    "make_condition", "blend_conditions", "ConditionError",
]
