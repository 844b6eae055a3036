"""Latent nodes: encode, decode, sample, latent math, analogy, attribute vectors, batches."""
from __future__ import annotations

import torch

from ..vae_core import latent as ops
from ..vae_core.limits import widget
from ..vae_core.model import REFINE_DEFAULT
from ..vae_core.prior import PRIOR_CHOICES, TRANSPORT_CHOICES
from ..vae_core.restyle import restyle_latents
from ..vae_core.schedule import keyframe_path
from .common import (
    LATENT_TYPE,
    broadcast_latent,
    cond_input,
    decode,
    latent_input,
    latent_z,
    make_latent,
    model_cond,
    model_input,
    path_inputs,
    restyle_inputs,
    seed_input,
    to_bchw,
)

COND_DECODE_TOOLTIP = "Condition (e.g. style) to draw with; not connected = unconditional."


class CVAEEncode:
    DESCRIPTION = "Encodes images into CVAE latents (resized to the model's resolution first)."
    CATEGORY = "CVAE/latent"
    RETURN_TYPES = (LATENT_TYPE,)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("One latent per image.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": model_input(),
                "image": ("IMAGE", {"tooltip": "Images to encode; any size, cropped to a centred square."}),
                "mode": (["mean", "sample"], {"default": "mean", "tooltip": "mean: the most likely latent (deterministic); sample: a random draw around it."}),
                "seed": seed_input("Seed of the draw in 'sample' mode."),
            },
            "optional": {"cond": cond_input("The images' own condition (e.g. their style); not connected = unknown.")},
        }

    def encode(self, model, image, mode, seed, cond=None):
        x = to_bchw(image)
        c = model_cond(model, cond, x.shape[0])
        return (make_latent(ops.encode(model, x, c, sample=mode == "sample", seed=seed)),)


class CVAEDecode:
    DESCRIPTION = (
        "Decodes CVAE latents into images, drawn in the given condition (style). A single latent with a "
        "batch of K conditions gives K images: the same latent drawn once in each style."
    )
    CATEGORY = "CVAE/latent"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("One image per latent (per condition, for a single latent with several conditions).",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"model": model_input(), "latent": latent_input("Latents to decode.")},
            "optional": {"cond": cond_input(COND_DECODE_TOOLTIP + " One condition, one per latent, or a batch of them for a single latent.")},
        }

    def decode(self, model, latent, cond=None):
        return (decode(model, broadcast_latent(latent_z(latent, model), cond), cond),)


class CVAESample:
    DESCRIPTION = (
        "Draws random latents and decodes them: from the model's learned prior p(z | style), which puts them where "
        "real images encode, or from the standard normal N(0, T^2) of models without one; then refines them by "
        "decoding and encoding again (the latent output is the refined one)."
    )
    CATEGORY = "CVAE/latent"
    RETURN_TYPES = ("IMAGE", LATENT_TYPE)
    RETURN_NAMES = ("image", "latent")
    OUTPUT_TOOLTIPS = ("The decoded samples.", "Their latents, to edit or interpolate.")
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": model_input(),
                "count": ("INT", {"default": 8, **widget("count"), "step": 1, "tooltip": "How many samples."}),
                "seed": seed_input("Same seed, same samples."),
                "temperature": ("FLOAT", {"default": 1.0, **widget("temperature"), "step": 0.01, "tooltip": "Spread of the latents: 1 is the prior as learned, lower is more typical, higher more varied (and odder)."}),
            },
            # Optional, so workflows saved before the learned prior existed still validate.
            "optional": {
                "cond": cond_input(COND_DECODE_TOOLTIP),
                "prior": (list(PRIOR_CHOICES), {"default": PRIOR_CHOICES[0], "tooltip": "learned: the model's fitted p(z | style) (models without one fall back to normal; CVAE Fit Prior adds one). normal: N(0, T^2), what the model was trained against."}),
                "refine": ("INT", {"default": REFINE_DEFAULT, **widget("refine"), "step": 1, "tooltip": "Passes that decode each sample and encode the drawing again, each moving the latent part of the way there (0: one decode): they pull it onto how the model draws, so samples look more like the data."}),
            },
        }

    def sample(self, model, count, seed, temperature, cond=None, prior=PRIOR_CHOICES[0], refine=REFINE_DEFAULT):
        c = model_cond(model, cond, count)
        with torch.inference_mode():
            z = model.refine(model.prior_sample(count, seed, temperature, c, prior), c, refine)
        return (decode(model, z, cond), make_latent(z))


class CVAERestyleLatent:
    DESCRIPTION = (
        "Moves latents from the style they were encoded or drawn in to another, as Restyle Folder and `cvae "
        "restyle` do: carried from the source style's part of the learned prior to the target's, then refined in "
        "the target style. Decode the result with the target condition. A single latent with K target conditions "
        "gives K latents: one emoji in every style. Closer to the real drawing in the target style than decoding "
        "the latent as it is (BENCHMARKS, restyle)."
    )
    CATEGORY = "CVAE/latent"
    RETURN_TYPES = (LATENT_TYPE,)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The latents, ready to decode with the target condition.",)
    FUNCTION = "restyle"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": model_input(),
                "latent": latent_input("Latents to restyle (from Encode or Sample)."),
                "source": cond_input("The style the latents were encoded or drawn in: one condition, or one per latent."),
                "target": cond_input("The style to move them to: one condition, one per latent, or a batch of them for a single latent."),
                **restyle_inputs(),
            },
        }

    def restyle(self, model, latent, source, target, transport=TRANSPORT_CHOICES[0], refine=REFINE_DEFAULT):
        z = broadcast_latent(latent_z(latent, model), target)
        s, t = model_cond(model, source, z.shape[0], "source"), model_cond(model, target, z.shape[0], "target")
        with torch.inference_mode():
            return (make_latent(restyle_latents(model, z.to(model.device), s, t, transport, refine)),)


def _pair(a: dict, b: dict, names: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Two latent batches that broadcast (same size, or one of them a single latent)."""
    za, zb = latent_z(a, what=names[0]), latent_z(b, what=names[1])
    if za.shape[1] != zb.shape[1]:
        raise ValueError(f"{names[0]} has {za.shape[1]} dims and {names[1]} {zb.shape[1]}; they come from different models")
    if za.shape[0] != zb.shape[0] and 1 not in (za.shape[0], zb.shape[0]):
        raise ValueError(f"{names[0]} has {za.shape[0]} latents and {names[1]} {zb.shape[0]}; use equal batches or a single latent")
    return za, zb


class CVAELatentAdd:
    DESCRIPTION = "a + b, latent by latent (a single latent is added to every one of the other batch)."
    CATEGORY = "CVAE/latent/math"
    RETURN_TYPES = (LATENT_TYPE,)
    RETURN_NAMES = ("latent",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": latent_input("First latent(s)."), "b": latent_input("Latent(s) to add, e.g. an attribute vector.")}}

    def run(self, a, b):
        return (make_latent(ops.add(*_pair(a, b, ("a", "b")))),)


class CVAELatentSubtract:
    DESCRIPTION = "a - b, latent by latent."
    CATEGORY = "CVAE/latent/math"
    RETURN_TYPES = (LATENT_TYPE,)
    RETURN_NAMES = ("latent",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": latent_input("Latent(s) to subtract from."), "b": latent_input("Latent(s) to subtract.")}}

    def run(self, a, b):
        return (make_latent(ops.subtract(*_pair(a, b, ("a", "b")))),)


class CVAELatentScale:
    DESCRIPTION = "latent * factor: 0 is the average image, above 1 exaggerates, negative inverts."
    CATEGORY = "CVAE/latent/math"
    RETURN_TYPES = (LATENT_TYPE,)
    RETURN_NAMES = ("latent",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": latent_input("Latent(s) to scale."),
            "factor": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01, "tooltip": "Multiplier."}),
        }}

    def run(self, latent, factor):
        return (make_latent(ops.scale(latent_z(latent), float(factor))),)


class CVAELatentAnalogy:
    DESCRIPTION = "a - b + c: gives c what a has and b lacks (e.g. a = smiling cat, b = cat, c = dog)."
    CATEGORY = "CVAE/latent/math"
    RETURN_TYPES = (LATENT_TYPE,)
    RETURN_NAMES = ("latent",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "a": latent_input("Has the quality (e.g. smiling cat)."),
            "b": latent_input("Lacks it (e.g. cat)."),
            "c": latent_input("Receives it (e.g. dog)."),
        }}

    def run(self, a, b, c):
        za, zb = _pair(a, b, ("a", "b"))
        _, zc = _pair(a, c, ("a", "c"))
        return (make_latent(ops.analogy(za, zb, zc)),)


class CVAEAttributeVector:
    DESCRIPTION = (
        "The direction from images without an attribute to images with it (mean of one batch minus mean "
        "of the other). Add it to a latent, scaled, to add the attribute."
    )
    CATEGORY = "CVAE/latent/math"
    RETURN_TYPES = (LATENT_TYPE,)
    RETURN_NAMES = ("vector",)
    OUTPUT_TOOLTIPS = ("One latent: the attribute direction times strength.",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latents_with": latent_input("Latents of images that have the attribute."),
            "latents_without": latent_input("Latents of images that do not."),
            "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01, "tooltip": "Multiplier of the direction; negative removes the attribute."}),
        }}

    def run(self, latents_with, latents_without, strength):
        zw, zo = latent_z(latents_with, what="latents_with"), latent_z(latents_without, what="latents_without")
        if zw.shape[1] != zo.shape[1]:
            raise ValueError("latents_with and latents_without come from different models")
        return (make_latent(ops.scale(ops.attribute_vector(zw, zo), float(strength))),)


class CVAEAttributeSlider:
    DESCRIPTION = (
        "A named slider for an attribute: latent + amount x the attribute's direction (from CVAE Attribute "
        "Vector at strength 1, i.e. the whole difference between the two groups' means). Name it (\"smile\", "
        "\"outline\") and drag the amount; the node shows the name and amount it applied."
    )
    CATEGORY = "CVAE/latent/math"
    RETURN_TYPES = (LATENT_TYPE, "STRING")
    RETURN_NAMES = ("latent", "label")
    OUTPUT_TOOLTIPS = ("The latents moved along the attribute.", "'name +amount', e.g. for a file name or a note.")
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": latent_input("Latent(s) to move."),
            "attribute": latent_input("One latent: the attribute's direction (CVAE Attribute Vector)."),
            "name": ("STRING", {"default": "attribute", "tooltip": "What the direction means, shown on the node."}),
            "amount": ("FLOAT", {"default": 1.0, "min": -3.0, "max": 3.0, "step": 0.05, "display": "slider",
                                 "tooltip": "0: unchanged; 1: the whole difference between the two groups; negative: the opposite."}),
        }}

    def run(self, latent, attribute, name, amount):
        z, direction = _pair(latent, attribute, ("latent", "attribute"))
        if direction.shape[0] != 1:
            raise ValueError(f"attribute has {direction.shape[0]} latents; connect one direction (CVAE Attribute Vector)")
        label = f"{name.strip() or 'attribute'} {float(amount):+.2f}"
        return {"ui": {"text": [label]}, "result": (make_latent(ops.add(z, ops.scale(direction, float(amount)))), label)}


class CVAELatentBatch:
    DESCRIPTION = "Joins two latent batches into one (e.g. keyframes for CVAE Interpolate)."
    CATEGORY = "CVAE/latent/batch"
    RETURN_TYPES = (LATENT_TYPE,)
    RETURN_NAMES = ("latent",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": latent_input("First latents."), "b": latent_input("Latents appended after a.")}}

    def run(self, a, b):
        za, zb = latent_z(a, what="a"), latent_z(b, what="b")
        if za.shape[1] != zb.shape[1]:
            raise ValueError(f"a has {za.shape[1]} dims and b {zb.shape[1]}; they come from different models")
        return (make_latent(torch.cat([za, zb])),)


class CVAELatentFromBatch:
    DESCRIPTION = "Picks latents out of a batch."
    CATEGORY = "CVAE/latent/batch"
    RETURN_TYPES = (LATENT_TYPE,)
    RETURN_NAMES = ("latent",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": latent_input("A latent batch."),
            "index": ("INT", {"default": 0, "min": 0, "max": 65535, "step": 1, "tooltip": "First latent to take (0-based)."}),
            "length": ("INT", {"default": 1, "min": 1, "max": 65536, "step": 1, "tooltip": "How many to take."}),
        }}

    def run(self, latent, index, length):
        z = latent_z(latent)
        if index >= z.shape[0]:
            raise ValueError(f"index {index} is past the end of a batch of {z.shape[0]} latents (0 to {z.shape[0] - 1})")
        return (make_latent(z[index : index + length]),)


class CVAEInterpolate:
    DESCRIPTION = "A walk through keyframe latents: every keyframe is hit exactly, in between is interpolated."
    CATEGORY = "CVAE/latent"
    RETURN_TYPES = (LATENT_TYPE,)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("One latent per frame, for CVAE Decode or CVAE Render Walk (frames = 0).",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "keyframes": latent_input("Keyframe latents, in order (a batch: from Encode, Sample or Latent Batch)."),
            "frames": ("INT", {"default": 48, **widget("frames"), "step": 1, "tooltip": "Total frames of the walk, keyframes and holds included."}),
            **path_inputs(),
        }}

    def run(self, keyframes, frames, method, easing, hold, loop, pingpong):
        z = latent_z(keyframes, what="keyframes")
        return (make_latent(keyframe_path(z, frames, method, easing, loop, pingpong, hold)),)


NODE_CLASS_MAPPINGS = {
    "CVAEEncode": CVAEEncode,
    "CVAEDecode": CVAEDecode,
    "CVAESample": CVAESample,
    "CVAERestyleLatent": CVAERestyleLatent,
    "CVAELatentAdd": CVAELatentAdd,
    "CVAELatentSubtract": CVAELatentSubtract,
    "CVAELatentScale": CVAELatentScale,
    "CVAELatentAnalogy": CVAELatentAnalogy,
    "CVAEAttributeVector": CVAEAttributeVector,
    "CVAEAttributeSlider": CVAEAttributeSlider,
    "CVAEInterpolate": CVAEInterpolate,
    "CVAELatentBatch": CVAELatentBatch,
    "CVAELatentFromBatch": CVAELatentFromBatch,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "CVAEEncode": "CVAE Encode",
    "CVAEDecode": "CVAE Decode",
    "CVAESample": "CVAE Sample",
    "CVAERestyleLatent": "CVAE Restyle Latent",
    "CVAELatentAdd": "CVAE Latent Add",
    "CVAELatentSubtract": "CVAE Latent Subtract",
    "CVAELatentScale": "CVAE Latent Scale",
    "CVAELatentAnalogy": "CVAE Latent Analogy",
    "CVAEAttributeVector": "CVAE Attribute Vector",
    "CVAEAttributeSlider": "CVAE Attribute Slider",
    "CVAEInterpolate": "CVAE Interpolate",
    "CVAELatentBatch": "CVAE Latent Batch",
    "CVAELatentFromBatch": "CVAE Latent From Batch",
}
