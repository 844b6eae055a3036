"""Condition nodes: a label, a weighted blend of labels, a blend of two conditions, a control."""
from __future__ import annotations

import torch

from ..vae_core.conditions import ConditionError, blend_conditions, common_rows
from ..vae_core.limits import widget
from .common import COND_TYPE, cond_input, cond_rows, model_cond, model_input

LABEL_TOOLTIP = "A label of the factor (see the model's info output), or 'null' for no condition."


def _factor(model, factor: str) -> str:
    """The named factor, or the model's only one when left empty."""
    factor = factor.strip()
    if not factor and len(model.vocab) == 1:
        return next(iter(model.vocab))
    return factor


class CVAECondition:
    DESCRIPTION = (
        "A condition (e.g. a style) from one label. A full spec such as 'style=noto;group=animals' in "
        "'label' sets several factors at once."
    )
    CATEGORY = "CVAE/condition"
    RETURN_TYPES = (COND_TYPE,)
    RETURN_NAMES = ("cond",)
    OUTPUT_TOOLTIPS = ("The condition, for decode, sample, encode and render walk.",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": model_input("The model whose labels the condition uses."),
            "factor": ("STRING", {"default": "style", "tooltip": "Condition factor; empty means the model's only factor."}),
            "label": ("STRING", {"default": "noto", "tooltip": LABEL_TOOLTIP}),
        }}

    def make(self, model, factor, label):
        label = label.strip()
        spec = label if "=" in label else f"{_factor(model, factor)}={label}"
        return (model.condition(spec, 1),)


class CVAEConditionBlendLabels:
    DESCRIPTION = (
        "A blend of up to four labels of one factor, e.g. 70% noto + 30% openmoji. Weights are normalised "
        "to sum to 1; a negative weight pushes away from a label. Empty labels are ignored."
    )
    CATEGORY = "CVAE/condition"
    RETURN_TYPES = (COND_TYPE,)
    RETURN_NAMES = ("cond",)
    OUTPUT_TOOLTIPS = ("The blended condition.",)
    FUNCTION = "make"
    DEFAULT_LABELS = ("noto", "openmoji", "emojitwo", "twemoji2015")

    @classmethod
    def INPUT_TYPES(cls):
        required = {
            "model": model_input("The model whose labels the condition uses."),
            "factor": ("STRING", {"default": "style", "tooltip": "Condition factor; empty means the model's only factor."}),
        }
        for i, label in enumerate(cls.DEFAULT_LABELS, 1):
            required[f"label_{i}"] = ("STRING", {"default": label, "tooltip": LABEL_TOOLTIP + " Empty: unused."})
            required[f"weight_{i}"] = ("FLOAT", {
                "default": 1.0 if i <= 2 else 0.0, "min": -4.0, "max": 4.0, "step": 0.01,
                "tooltip": f"Weight of label_{i} (relative; 0 = unused).",
            })
        return {"required": required}

    def make(self, model, factor, **pairs):
        items = []
        for i in range(1, len(self.DEFAULT_LABELS) + 1):
            label, weight = pairs[f"label_{i}"].strip(), float(pairs[f"weight_{i}"])
            if label and weight != 0:
                items.append(f"{label}:{weight}")
        if not items:
            raise ValueError("all labels are empty or weighted 0; give at least one label a non-zero weight")
        return (model.condition(f"{_factor(model, factor)}=" + ",".join(items), 1),)


class CVAEConditionMix:
    DESCRIPTION = "Blends two conditions: 0 = cond_a, 1 = cond_b; beyond 0..1 extrapolates."
    CATEGORY = "CVAE/condition"
    RETURN_TYPES = (COND_TYPE,)
    RETURN_NAMES = ("cond",)
    OUTPUT_TOOLTIPS = ("(1 - amount) * cond_a + amount * cond_b.",)
    FUNCTION = "mix"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "cond_a": cond_input("The condition at amount 0."),
            "cond_b": cond_input("The condition at amount 1 (from the same model)."),
            "amount": ("FLOAT", {"default": 0.5, "min": -1.0, "max": 2.0, "step": 0.01, "tooltip": "How far from cond_a toward cond_b."}),
        }}

    def mix(self, cond_a, cond_b, amount):
        if set(cond_a) != set(cond_b) or any(cond_a[k].shape[-1] != cond_b[k].shape[-1] for k in cond_a):
            raise ValueError("cond_a and cond_b come from models with different factors or labels; make both from one model")
        if not cond_a:  # an unconditional model: nothing to blend
            return ({},)
        try:
            common_rows(cond_a, cond_b)
        except ConditionError as err:
            raise ValueError(f"cond_a and cond_b: {err}") from None
        device = next(iter(cond_a.values())).device
        return (blend_conditions(cond_a, {k: v.to(device) for k, v in cond_b.items()}, float(amount)),)


class CVAEConditionBatch:
    DESCRIPTION = (
        "Joins conditions into a batch: one per image for Decode, or one per keyframe for Render Walk "
        "(the style then morphs in step with the walk). Up to four inputs, joined in order a, b, c, d."
    )
    CATEGORY = "CVAE/condition"
    RETURN_TYPES = (COND_TYPE,)
    RETURN_NAMES = ("cond",)
    OUTPUT_TOOLTIPS = ("The rows of cond_a, then cond_b, then cond_c and cond_d when connected.",)
    FUNCTION = "join"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "cond_a": cond_input("First condition(s)."),
                "cond_b": cond_input("Condition(s) appended after cond_a (same model)."),
            },
            "optional": {
                "cond_c": cond_input("Condition(s) appended after cond_b (same model)."),
                "cond_d": cond_input("Condition(s) appended after cond_c (same model)."),
            },
        }

    def join(self, cond_a, cond_b, cond_c=None, cond_d=None):
        parts = {name: c for name, c in zip("abcd", (cond_a, cond_b, cond_c, cond_d)) if c is not None}
        for name, c in parts.items():
            if set(cond_a) != set(c) or any(cond_a[k].shape[-1] != c[k].shape[-1] for k in cond_a):
                raise ValueError(f"cond_a and cond_{name} come from models with different factors or labels; make them from one model")
        return ({k: torch.cat([c[k].to(cond_a[k].device) for c in parts.values()]) for k in cond_a},)


class CVAEControl:
    DESCRIPTION = (
        "Sets a continuous control (a numeric column the model was trained with, e.g. brightness) on a "
        "condition. amount 0 is the lowest value seen in training and 1 the highest; beyond that the model "
        "extrapolates. Two of these into Condition Mix or Condition Batch sweep the control in a walk."
    )
    CATEGORY = "CVAE/condition"
    RETURN_TYPES = (COND_TYPE, "FLOAT")
    RETURN_NAMES = ("cond", "value")
    OUTPUT_TOOLTIPS = ("The condition with the control set (every row).", "The control's value in its own units.")
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": model_input("The model whose control this sets (see its info output)."),
                "control": ("STRING", {"default": "", "tooltip": "Control name; empty means the model's only control."}),
                "amount": ("FLOAT", {"default": 0.5, **widget("control_amount"), "step": 0.01, "display": "slider",
                                     "tooltip": "0 = the lowest value in training, 1 = the highest."}),
            },
            "optional": {"cond": cond_input("A condition to set the control on (e.g. a style); none: null labels.")},
        }

    def make(self, model, control, amount, cond=None):
        cond = model_cond(model, cond, cond_rows(cond)) if cond is not None else None
        out, value = model.set_control(cond or {}, control, amount)
        return (out, value)


NODE_CLASS_MAPPINGS = {
    "CVAECondition": CVAECondition,
    "CVAEConditionBlendLabels": CVAEConditionBlendLabels,
    "CVAEConditionMix": CVAEConditionMix,
    "CVAEConditionBatch": CVAEConditionBatch,
    "CVAEControl": CVAEControl,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "CVAECondition": "CVAE Condition",
    "CVAEConditionBlendLabels": "CVAE Condition Blend Labels",
    "CVAEConditionMix": "CVAE Condition Mix",
    "CVAEConditionBatch": "CVAE Condition Batch",
    "CVAEControl": "CVAE Control",
}
