"""What every node file shares: our socket types, input specs, and the IMAGE <-> tensor edge.

ComfyUI's IMAGE is float [B, H, W, C] in 0..1 on the CPU; vae_core works on [B, 3, H, W] on the
model's device. The conversion happens here and nowhere else.
"""
from __future__ import annotations

import torch

from ..vae_core.conditions import CONTROL_WIDTH, Cond, repeat_condition
from ..vae_core.limits import widget
from ..vae_core.model import REFINE_DEFAULT
from ..vae_core.prior import TRANSPORT_CHOICES
from ..vae_core.schedule import EASINGS
from ..vae_core.walk import decode_chunks
from .comfy import Progress

MODEL_TYPE = "CVAE_MODEL"
LATENT_TYPE = "CVAE_LATENT"  # {"z": Tensor[B, latent_dim] on the CPU}
COND_TYPE = "CVAE_COND"  # vae_core Cond: {factor: weights Tensor[B, n_labels + 1]}

SEED_MAX = 0xFFFFFFFFFFFFFFFF
CHUNK = 64  # images per forward pass: bounded memory, frequent progress and cancel checks


def model_input(tooltip: str = "A CVAE model from CVAE Load Model or CVAE Train Model.") -> tuple:
    return (MODEL_TYPE, {"tooltip": tooltip})


def seed_input(tooltip: str) -> tuple:
    return ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "step": 1, "control_after_generate": True, "tooltip": tooltip})


def cond_input(tooltip: str) -> tuple:
    return (COND_TYPE, {"tooltip": tooltip})


def restyle_inputs() -> dict:
    """transport and refine, as Restyle Folder and Restyle Latent both take them."""
    return {
        "transport": (list(TRANSPORT_CHOICES), {"default": TRANSPORT_CHOICES[0], "tooltip": "prior: move each latent from the source style's part of the learned prior to the target style's (closer to real drawings in that style); none: decode it as encoded. Models without a learned prior always use none."}),
        "refine": ("INT", {"default": REFINE_DEFAULT, **widget("refine"), "step": 1, "tooltip": "Passes that decode in the target style and encode the drawing again, each moving the latent part of the way there (0: one decode): they pull it onto how the model draws that style, closer to a real drawing in it."}),
    }


def latent_input(tooltip: str) -> tuple:
    return (LATENT_TYPE, {"tooltip": tooltip})


# -- images ------------------------------------------------------------------------------------
def to_bchw(image: torch.Tensor, what: str = "image") -> torch.Tensor:
    """ComfyUI IMAGE [B,H,W,C] -> float [B,3,H,W]; alpha is composited on white, grey repeated."""
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        raise ValueError(f"{what}: expected an IMAGE batch [B, H, W, C], got {getattr(image, 'shape', type(image))}")
    x = image.float()
    if x.shape[-1] == 4:
        x = x[..., :3] * x[..., 3:] + (1 - x[..., 3:])
    elif x.shape[-1] == 1:
        x = x.expand(-1, -1, -1, 3)
    elif x.shape[-1] != 3:
        raise ValueError(f"{what}: expected 1, 3 or 4 channels, got {x.shape[-1]}")
    return x.permute(0, 3, 1, 2).contiguous()


def to_image(x: torch.Tensor) -> torch.Tensor:
    """float [B,3,H,W] -> ComfyUI IMAGE [B,H,W,3] float32 0..1 on the CPU."""
    return x.detach().clamp(0, 1).permute(0, 2, 3, 1).float().cpu().contiguous()


# -- latents and conditions --------------------------------------------------------------------
def make_latent(z: torch.Tensor) -> dict:
    return {"z": z.detach().float().cpu()}


def latent_z(latent: dict, model=None, what: str = "latent") -> torch.Tensor:
    """The [B, D] latents of a CVAE_LATENT, checked against the model's latent size."""
    if not isinstance(latent, dict) or not isinstance(latent.get("z"), torch.Tensor):
        raise ValueError(f"{what}: expected a CVAE_LATENT from a CVAE node (a dict with 'z')")
    z = latent["z"]
    if z.dim() != 2:
        raise ValueError(f"{what}: latents must be [batch, dims], got {list(z.shape)}")
    if model is not None and z.shape[1] != model.config.latent_dim:
        raise ValueError(
            f"{what} has {z.shape[1]} dims but the model has {model.config.latent_dim}; "
            "it was made with another model: encode or sample it with this one"
        )
    return z


def model_cond(model, cond: Cond | None, batch: int, what: str = "cond") -> Cond:
    """A condition for `batch` rows on the model's device; None is the unconditional (null) label."""
    if cond is None:
        return model.condition(None, batch)
    controls = model.controls
    if set(cond) - set(controls) != set(model.vocab):
        raise ValueError(
            f"{what} has factors {sorted(cond)} but the model has {sorted(model.vocab)}"
            + (f" and controls {sorted(controls)}" if controls else "") + "; make the condition from this model"
        )
    for factor, labels in model.vocab.items():
        if cond[factor].shape[-1] != len(labels) + 1:
            raise ValueError(f"{what}: factor {factor!r} has other labels than the model's ({', '.join(labels)})")
    for name in set(cond) & set(controls):
        if cond[name].shape[-1] != CONTROL_WIDTH:
            raise ValueError(f"{what}: {name!r} is not a control condition; make it from this model")
    try:
        return repeat_condition(model.with_controls({k: v.to(model.device) for k, v in cond.items()}), batch)
    except ValueError as err:
        raise ValueError(f"{what}: {err}; use one condition or one per item") from None


def cond_rows(cond: Cond | None) -> int:
    """Rows of a condition batch; None (unconditional) counts as one."""
    return max((w.shape[0] for w in cond.values()), default=1) if cond else 1


def broadcast_latent(z: torch.Tensor, cond: Cond | None) -> torch.Tensor:
    """A single latent with K conditions becomes K copies, one per condition: one image drawn in
    (or morphing through) K styles without repeating the latent by hand."""
    rows = cond_rows(cond)
    return z.repeat(rows, 1) if z.shape[0] == 1 and rows > 1 else z


def single_cond(model, cond: Cond, what: str = "cond") -> Cond:
    """One condition row for this model (a batch of several is refused, naming the input)."""
    rows = cond_rows(cond)
    if rows != 1:
        raise ValueError(f"{what} has {rows} rows; connect a single condition")
    return model_cond(model, cond, 1, what)


# -- batched model calls with progress and cancel ----------------------------------------------
def decode(model, z: torch.Tensor, cond: Cond | None, desc: str = "decode") -> torch.Tensor:
    """IMAGE [B,H,W,3] from latents [B,D], CHUNK at a time with progress and cancel."""
    c = model_cond(model, cond, z.shape[0])
    out = []
    with Progress(z.shape[0], desc) as bar:
        for images in decode_chunks(model, z, c, CHUNK):
            out.append(to_image(images))
            bar.update(images.shape[0])
    return torch.cat(out)


# -- inputs shared by several nodes ------------------------------------------------------------
def split_names(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def path_inputs() -> dict:
    """How a walk moves between keyframes; shared by CVAE Interpolate and CVAE Render Walk."""
    return {
        "method": (["slerp", "lerp"], {"default": "slerp", "tooltip": "slerp follows the sphere where latents live (no washed-out middle); lerp is a straight line."}),
        "easing": (list(EASINGS), {"default": "ease-in-out", "tooltip": "Speed curve between two keyframes; ease-in-out lingers near each keyframe."}),
        "hold": ("INT", {"default": 0, **widget("hold"), "step": 1, "tooltip": "Extra frames each keyframe stays still."}),
        "loop": ("BOOLEAN", {"default": False, "tooltip": "Return from the last keyframe to the first, so the video loops seamlessly."}),
        "pingpong": ("BOOLEAN", {"default": False, "tooltip": "Go through the keyframes and back again."}),
    }
