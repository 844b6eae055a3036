"""Image nodes: lay a batch out as one contact sheet."""
from __future__ import annotations

from ..vae_core.images import grid
from ..vae_core.limits import widget
from .common import to_bchw, to_image


class CVAEImageGrid:
    DESCRIPTION = (
        "Lays an image batch out as one image: a grid of nrow images per row, left to right, top to bottom, "
        "with white gaps (a single image comes back as it is). Compare samples, styles or analogy results at a glance, in one file."
    )
    CATEGORY = "CVAE/image"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("grid",)
    OUTPUT_TOOLTIPS = ("One image holding the whole batch.",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The images to lay out (one batch: all the same size)."}),
            "nrow": ("INT", {"default": 8, **widget("nrow"), "step": 1, "tooltip": "Images per row; the last row may be shorter."}),
            "padding": ("INT", {"default": 2, "min": 0, "max": 256, "step": 1, "tooltip": "White gap between images and around the grid, in pixels."}),
        }}

    def make(self, images, nrow, padding):
        return (to_image(grid(to_bchw(images, "images"), nrow, padding)[None]),)


NODE_CLASS_MAPPINGS = {"CVAEImageGrid": CVAEImageGrid}
NODE_DISPLAY_NAME_MAPPINGS = {"CVAEImageGrid": "CVAE Image Grid"}
