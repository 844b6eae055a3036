"""Tiny real node classes for the runner tests (tests/test_runner.py). Plain module, no pytest:
tests/test_runner_comfyui.py also loads it into a real ComfyUI as a custom node pack."""
from __future__ import annotations

import collections
import json
from pathlib import Path

CALLS: collections.Counter = collections.Counter()


# ------------------------------------------------------------------------------ tiny node classes

class IntSource:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0, "min": -100, "max": 100})},
                "hidden": {"uid": "UNIQUE_ID"}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "make"

    def make(self, value, uid):
        CALLS[("IntSource", uid)] += 1
        return (value,)


class Add:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {"default": 0, "min": -1000, "max": 1000}),
                             "b": ("INT", {"default": 0, "min": -1000, "max": 1000})},
                "optional": {"c": ("INT", {"forceInput": True})}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "add"

    def add(self, a, b, c=0):
        CALLS["Add"] += 1
        return (a + b + c,)


class Seeded:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**32 - 1}),
                             "scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.5}),
                             "mode": (["sum", "product"],),
                             "flag": ("BOOLEAN", {"default": True}),
                             "label": ("STRING", {"default": ""})}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "compute"

    def compute(self, seed, scale, mode, flag, label):
        CALLS["Seeded"] += 1
        value = int(seed * scale) if mode == "product" else seed + int(scale)
        return (value + len(label) if flag else 0,)


class Range:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"count": ("INT", {"default": 3, "min": 0, "max": 10})}}
    RETURN_TYPES = ("INT",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "range"

    def range(self, count):
        CALLS["Range"] += 1
        return (list(range(count)),)


class Double:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"x": ("INT", {"forceInput": True})}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "double"

    def double(self, x):
        CALLS["Double"] += 1
        return (2 * x,)


class ListSum:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"values": ("INT", {"forceInput": True})}}
    RETURN_TYPES = ("INT",)
    INPUT_IS_LIST = True
    FUNCTION = "total"

    def total(self, values):
        CALLS["ListSum"] += 1
        return (sum(values),)


class Save:
    """Writes a real JSON file per call; reports it as ComfyUI's savers do."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"forceInput": True}),
                             "folder": ("STRING", {"default": ""}),
                             "prefix": ("STRING", {"default": "out"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "uid": "UNIQUE_ID"}}
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    def save(self, value, folder, prefix, prompt, extra_pnginfo, uid):
        CALLS[("Save", uid)] += 1
        folder = Path(folder)
        (folder / "sub").mkdir(parents=True, exist_ok=True)
        name = f"{prefix}_{uid}_{CALLS[('Save', uid)]:02}.json"
        (folder / "sub" / name).write_text(json.dumps({
            "value": value, "prompt_nodes": sorted(prompt), "uid": uid,
            "workflow_nodes": None if extra_pnginfo is None else len(extra_pnginfo["workflow"]["nodes"])}))
        return {"ui": {"images": [{"filename": name, "subfolder": "sub", "type": "output"}]}}


class Even:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"n": ("INT", {"default": 2, "min": 0, "max": 10})}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def VALIDATE_INPUTS(cls, n):
        return True if n % 2 == 0 else f"n must be even, got {n}"

    def run(self, n):
        return (n,)


class Picture:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}
    RETURN_TYPES = ("TEST_PICTURE",)
    FUNCTION = "run"

    def run(self):
        return ("picture",)


class Frame:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"picture": ("TEST_PICTURE",)}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, picture):
        return (len(picture),)


class Boom:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"x": ("INT", {"forceInput": True})}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, x):
        raise ValueError("the model file is corrupt")


CLASSES = {"TestInt": IntSource, "TestAdd": Add, "TestSeeded": Seeded, "TestRange": Range, "TestDouble": Double,
           "TestListSum": ListSum, "TestSave": Save, "TestEven": Even, "TestPicture": Picture, "TestFrame": Frame,
           "TestBoom": Boom}
NAMES = {"TestInt": "Integer", "TestSave": "Save value"}

NODE_CLASS_MAPPINGS = CLASSES
