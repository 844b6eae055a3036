"""cvae-art's library: a conditional VAE, its training, latent operations and video output.

Never imports ComfyUI, the node pack or the runner, so it works from a notebook or a script.
Where things live: model.py (the CVAE), prior.py (the learned prior and restyle's transport),
train.py (the loop), settings.py (every training setting's default, range and choices, for the
CLI and the Train node), limits.py (the ranges of every other number a user gives),
schedule.py (the one walk planner: keyframes, holds, loops, style sweeps), walk.py and video.py
(rendering), restyle.py and anomaly.py (folder jobs), files.py (atomic file writing),
checkpoint.py (model files), likelihood.py (the importance-sampled NLL).
"""
from .checkpoint import CheckpointError, load_model, save_model
from .conditions import ConditionError, blend_conditions, make_condition
from .model import CVAE, ModelConfig

__all__ = [
    "CVAE", "ModelConfig", "load_model", "save_model", "CheckpointError",
    "make_condition", "blend_conditions", "ConditionError",
]
