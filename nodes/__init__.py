"""The node pack: thin adapters from ComfyUI types to vae_core calls, one module per domain."""
from . import anomaly, conditions, explorer, folders, images, latent, models, video

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
for _module in (models, latent, explorer, conditions, video, folders, images, anomaly):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
