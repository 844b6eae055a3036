"""Folder nodes: load an image folder, restyle a folder into another, save images with the workflow."""
from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import numpy as np
import torch

from ..vae_core._cv2 import ERRORS as CV2_ERRORS
from ..vae_core.augment import augment
from ..vae_core.checkpoint import weights_digest
from ..vae_core.images import ImageReadError, list_images, load_image, save_png
from ..vae_core.limits import widget
from ..vae_core.prior import TRANSPORT_CHOICES
from ..vae_core.model import REFINE_DEFAULT
from ..vae_core.restyle import restyle_folder
from . import comfy
from .common import cond_input, model_input, restyle_inputs, seed_input, single_cond, split_names, to_bchw

log = logging.getLogger("cvae_art")

ORDERS = ["natural", "name", "newest", "oldest"]


def folder_signature(root: Path) -> str:
    """Changes when an image below `root` is added, removed, renamed or rewritten."""
    h = hashlib.sha256()
    for p in list_images(root):
        st = p.stat()
        h.update(f"{p.relative_to(root)}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
    return h.hexdigest()


def _natural_key(path: Path) -> list:
    """img2 before img10: digit runs compare as numbers."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", path.as_posix())]


def select_files(root: Path, order: str, skip: int, every_nth: int, limit: int) -> list[Path]:
    files = list_images(root)
    if order == "natural":
        files.sort(key=lambda p: _natural_key(p.relative_to(root)))
    elif order in ("newest", "oldest"):
        files.sort(key=lambda p: p.stat().st_mtime_ns, reverse=order == "newest")
    files = files[skip::every_nth]
    return files[:limit] if limit else files


def png_names(names: list[str]) -> tuple[list[str], list[str]]:
    """(one distinct .png name per source name, notes on the renamed ones). `same.png` and
    `same.jpg` would both become same.png and one would replace the other: a name that collides
    keeps its extension in the stem (same_jpg.png), and an exact repeat gets a number."""
    first = [Path(n).with_suffix(".png").as_posix() for n in names]
    counts: dict[str, int] = {}
    for n in first:
        counts[n] = counts.get(n, 0) + 1
    out, notes, taken = [], [], set()
    for name, png in zip(names, first):
        if counts[png] > 1 and Path(name).suffix.lower() != ".png":
            png = Path(name).with_name(f"{Path(name).stem}_{Path(name).suffix[1:]}.png").as_posix()
        base, i = png, 2
        while png in taken:
            png = f"{base[:-4]}_{i}.png"
            i += 1
        taken.add(png)
        if png != first[len(out)]:
            notes.append(f"{name} saved as {png}: {first[len(out)]} was taken by another image of this batch")
        out.append(png)
    return out, notes


class CVAELoadImageFolder:
    DESCRIPTION = (
        "Loads the images of a folder (and its sub-folders) as one IMAGE batch, resized and centre-cropped "
        "to one square size. Unreadable files are skipped and listed in the console."
    )
    CATEGORY = "CVAE/folders"
    RETURN_TYPES = ("IMAGE", "STRING", "INT")
    RETURN_NAMES = ("image", "file_names", "count")
    OUTPUT_TOOLTIPS = (
        "The images.",
        "Their paths relative to the folder, one per line (for CVAE Save Images).",
        "How many images were loaded.",
    )
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "folder": ("STRING", {"default": "samples/noto", "tooltip": "Folder path: absolute, or relative to the input folder ('samples/...' are the pack's bundled samples)."}),
            "size": ("INT", {"default": 64, "min": 8, "max": 4096, "step": 1, "tooltip": "Images are resized (short side) and centre-cropped to size x size pixels."}),
            "limit": ("INT", {"default": 0, "min": 0, "max": 1_000_000, "step": 1, "tooltip": "Load at most this many images (0 = all)."}),
            "skip": ("INT", {"default": 0, "min": 0, "max": 1_000_000, "step": 1, "tooltip": "Skip this many images at the start."}),
            "every_nth": ("INT", {"default": 1, "min": 1, "max": 10000, "step": 1, "tooltip": "Take every n-th image after skipping."}),
            "order": (ORDERS, {"default": "natural", "tooltip": "natural: img2 before img10; name: plain text order; newest/oldest: by modification time."}),
            "background": ("STRING", {"default": "white", "tooltip": "Colour behind transparent pixels: white, black, grey or #rrggbb."}),
        }}

    @classmethod
    def IS_CHANGED(cls, folder, **_):
        try:
            return folder_signature(comfy.resolve_folder(folder))
        except (FileNotFoundError, ValueError):
            return f"missing {folder}"

    def load(self, folder, size, limit, skip, every_nth, order, background):
        root = comfy.resolve_folder(folder)
        files = select_files(root, order, skip, every_nth, limit)
        if not files:
            raise ValueError(f"folder {root}: no images to load (found none, or skip/every_nth/limit left none)")
        images, names, skipped = [], [], []
        with comfy.Progress(len(files), "load folder") as bar:
            for p in files:
                try:
                    images.append(load_image(p, size, background))
                    names.append(p.relative_to(root).as_posix())
                except (ImageReadError, *CV2_ERRORS) as err:
                    skipped.append(f"{p}: {err}")
                bar.update(1)
        for line in skipped:
            log.warning("CVAE Load Image Folder skipped %s", line)
        if not images:
            raise ValueError(f"folder {root}: none of the {len(files)} images could be read; first error: {skipped[0]}")
        batch = torch.from_numpy(np.stack(images)).float().div_(255.0)
        return (batch, "\n".join(names), len(names))


class CVAERestyleFolder:
    DESCRIPTION = (
        "Redraws every image of a folder (and its sub-folders) in another style, writing the same relative "
        "paths and file names into the target folder. Streams in batches, so any folder size works; files "
        "already in the target are kept (a re-run finishes an interrupted folder) unless overwrite is on."
    )
    CATEGORY = "CVAE/folders"
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("target_folder", "report")
    OUTPUT_TOOLTIPS = ("The folder written.", "How many files were written, kept or failed, and why.")
    FUNCTION = "restyle"
    OUTPUT_NODE = True
    PREVIEWS = 8

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": model_input(),
                "source_folder": ("STRING", {"default": "samples/noto", "tooltip": "Folder to restyle: absolute, or relative to the input folder ('samples/...' are the bundled samples)."}),
                "target_folder": ("STRING", {"default": "cvae/restyled", "tooltip": "Where the results go, inside the output folder (it cannot leave it). Never in or around the source folder."}),
                "target_cond": cond_input("The style to draw in (a single condition)."),
                "mode": (["mean", "sample"], {"default": "mean", "tooltip": "mean: faithful and deterministic; sample: a random variation per file."}),
                "seed": seed_input("Seed of the variations in 'sample' mode (each file gets its own, stable one)."),
                "size": (["model", "source"], {"default": "model", "tooltip": "model: write the model's resolution; source: scale back to each source image's size."}),
                "batch_size": ("INT", {"default": 32, **widget("batch_size"), "step": 1, "tooltip": "Images per forward pass."}),
                "overwrite": ("BOOLEAN", {"default": False, "tooltip": "Replace files already in the target folder (otherwise they are kept and skipped)."}),
                "background": ("STRING", {"default": "white", "tooltip": "Colour behind transparent pixels: white, black, grey or #rrggbb."}),
            },
            "optional": {
                "source_cond": cond_input("The source images' style; not connected = each file's first sub-folder name when it is a label, else unknown."),
                # Optional, so workflows saved before they existed still validate.
                **restyle_inputs(),
            },
        }

    @classmethod
    def IS_CHANGED(cls, source_folder, target_folder="", **_):
        try:
            sig = folder_signature(comfy.resolve_folder(source_folder))
        except (FileNotFoundError, ValueError):
            return f"missing {source_folder}"
        try:  # deleting outputs makes the node run again
            dst = _target_folder(target_folder)
            return sig + (folder_signature(dst) if dst.is_dir() else "")
        except ValueError:
            return sig

    def restyle(self, model, source_folder, target_folder, target_cond, mode, seed, size, batch_size, overwrite,
                background, source_cond=None, transport=TRANSPORT_CHOICES[0], refine=REFINE_DEFAULT):
        src = comfy.resolve_folder(source_folder, "source_folder")
        dst = _target_folder(target_folder)
        target = single_cond(model, target_cond, "target_cond")
        source = None if source_cond is None else single_cond(model, source_cond, "source_cond")
        with comfy.Progress(len(list_images(src)), "restyle") as bar:
            report = restyle_folder(model, src, dst, target, source, batch_size=batch_size, sample=mode == "sample",
                                    size=size, overwrite=overwrite, progress=False, callback=bar.callback,
                                    background=background, seed=seed, transport=transport, refine=refine)
        for path, why in report.failed:
            log.warning("CVAE Restyle Folder failed on %s: %s", path, why)
        if not report.written and not report.existing:  # as `cvae restyle` and Train: an error, not an empty success
            raise ValueError(f"source_folder {src}: no readable image to restyle"
                             + (f" ({len(report.failed)} unreadable: {report.failed[0][0]}: {report.failed[0][1]})" if report.failed else ""))
        lines = [f"{len(report.written)} written, {len(report.existing)} already there (kept), {len(report.failed)} failed, in {dst}"]
        lines += [f"failed {path}: {why}" for path, why in report.failed]
        out = comfy.output_directory()
        previews = []
        for p in map(Path, report.written[: self.PREVIEWS]):
            if p.resolve().is_relative_to(out):  # the frontend can only show files below output/
                rel = p.resolve().parent.relative_to(out).as_posix()
                previews.append({"filename": p.name, "subfolder": "" if rel == "." else rel, "type": "output"})
        # 'files': every file written, which `cvae run` lists and counts; 'images': the previews.
        return {"ui": {"images": previews, "text": ["\n".join(lines)], "files": list(report.written)},
                "result": (str(dst), "\n".join(lines))}


class CVAEAugmentFolder:
    DESCRIPTION = (
        "Draws new training images from the model: per_label samples of each style (or of the connected "
        "condition) into <target_folder>/<label>/, a folder you can train on again, and a manifest.csv listing "
        "each file with its condition, seed, temperature and the model's digest. Never overwrites: another seed "
        "writes beside the old files, the same settings keep them and add only what is missing."
    )
    CATEGORY = "CVAE/folders"
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("target_folder", "report")
    OUTPUT_TOOLTIPS = ("The folder written (train on it with CVAE Train Model).", "How many files were written or kept.")
    FUNCTION = "augment"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": model_input(),
                "target_folder": ("STRING", {"default": "cvae/augmented", "tooltip": "Where the images go, inside the output folder (it cannot leave it)."}),
                "per_label": ("INT", {"default": 16, **widget("count"), "step": 1, "tooltip": "Samples of each label (or of the connected condition)."}),
                "seed": seed_input("Names the files (s<seed>_<index>.png): another seed adds new ones beside them."),
                "temperature": ("FLOAT", {"default": 1.0, **widget("temperature"), "step": 0.01, "tooltip": "1 is the prior as learned; lower is more typical, higher more varied."}),
                "refine": ("INT", {"default": REFINE_DEFAULT, **widget("refine"), "step": 1, "tooltip": "Decode-and-encode passes after drawing (as CVAE Sample)."}),
            },
            "optional": {
                "cond": cond_input("Draw this condition only (its folder: the label, or the blend written out); not connected = every label of the model's first factor."),
            },
        }

    def augment(self, model, target_folder, per_label, seed, temperature, refine, cond=None):
        dst = _target_folder(target_folder)
        conds = None if cond is None else [model.describe(single_cond(model, cond))]
        with comfy.Progress(1, "augment") as bar:
            res = augment(model, dst, per_label, weights_digest(model), seed=seed, temperature=temperature,
                          conds=conds, refine=refine, callback=bar.callback)
        report = f"{len(res.written)} written, {res.kept} already there (kept), in {dst}; listed in {res.manifest}"
        return {"ui": {"text": [report], "files": [str(p) for p in res.written]}, "result": (str(dst), report)}


def _target_folder(path: str) -> Path:
    """Inside the output folder, confined like the filename prefixes (no absolute path, '~' or '..')."""
    path = path.strip().strip('"')
    if not path:
        raise ValueError("target_folder is empty; give a folder, e.g. cvae/restyled")
    return comfy.inside(comfy.output_directory(), path, "target_folder")


def png_text(prompt, extra_pnginfo) -> dict[str, str] | None:
    """The text chunks core SaveImage writes, so a PNG dropped on ComfyUI restores its graph."""
    if not comfy.metadata_enabled():
        return None
    text = {}
    if prompt is not None:
        text["prompt"] = json.dumps(prompt)
    for key, value in (extra_pnginfo or {}).items():
        text[key] = json.dumps(value)
    return text


class CVAESaveImages:
    DESCRIPTION = (
        "Saves images as PNG in the output folder, with the workflow embedded. With file_names, each image "
        "keeps its source name inside the prefix folder; otherwise files are numbered like core Save Image."
    )
    CATEGORY = "CVAE/folders"
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": ("STRING", {"default": "cvae/image", "tooltip": "Inside the output folder; may hold subfolders, cannot leave the output folder. With file_names it is the folder the names go in."}),
            },
            "optional": {
                "file_names": ("STRING", {"forceInput": True, "tooltip": "One name per image, one per line (from CVAE Load Image Folder); saved as name.png, replacing a same-named file from an earlier run. Names that would collide in this batch (same.png and same.jpg) keep their extension: same_jpg.png."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save(self, images, filename_prefix, file_names=None, prompt=None, extra_pnginfo=None):
        x = to_bchw(images, "images")
        text = png_text(prompt, extra_pnginfo)
        out = comfy.output_directory()
        if file_names is not None and split_names(file_names):
            names = split_names(file_names)
            if len(names) != x.shape[0]:
                raise ValueError(f"file_names has {len(names)} names for {x.shape[0]} images; connect the names of these images")
            folder = comfy.inside(out, filename_prefix.strip() or ".")
            pngs, notes = png_names(names)
            for note in notes:
                log.warning("CVAE Save Images: %s", note)
            paths = [comfy.inside(folder, n, "file name") for n in pngs]
        else:
            target = comfy.save_target(filename_prefix)
            paths = [target.path("png", i) for i in range(x.shape[0])]
        results = []
        with comfy.Progress(len(paths), "save") as bar:
            for img, path in zip(x, paths):
                save_png(path, img, text)
                rel = path.parent.relative_to(out).as_posix()
                results.append({"filename": path.name, "subfolder": "" if rel == "." else rel, "type": "output"})
                bar.update(1)
        return {"ui": {"images": results}}


NODE_CLASS_MAPPINGS = {
    "CVAELoadImageFolder": CVAELoadImageFolder,
    "CVAERestyleFolder": CVAERestyleFolder,
    "CVAESaveImages": CVAESaveImages,
    "CVAEAugmentFolder": CVAEAugmentFolder,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "CVAELoadImageFolder": "CVAE Load Image Folder",
    "CVAERestyleFolder": "CVAE Restyle Folder",
    "CVAESaveImages": "CVAE Save Images",
    "CVAEAugmentFolder": "CVAE Augment Folder",
}
