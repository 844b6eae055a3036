"""Model nodes: load, save and train a CVAE."""
from __future__ import annotations

import copy
import re
import sys

import numpy as np
import torch

from ..vae_core.checkpoint import load_model, save_model
from ..vae_core.data import image_set_from_arrays
from ..vae_core.images import fit, list_images, to_uint8
from ..vae_core.plots import loss_plot
from ..vae_core.prior import PriorConfig, fit_prior_on_folder
from ..vae_core.settings import node_widgets, train_config, values_from_widgets
from ..vae_core.train import train
from . import comfy
from .common import MODEL_TYPE, model_input, seed_input, to_bchw


def describe_model(model) -> str:
    """One line per fact an artist needs to wire conditions: factors and their labels."""
    lines = [f"{model.resolution} px, latent {model.config.latent_dim} dims, step {getattr(model, 'step', 0)}"]
    lines += [f"{factor}: {', '.join(labels)}" for factor, labels in model.vocab.items()] or ["unconditional"]
    lines += [f"{name}: control, trained on {lo:g} to {hi:g}" for name, (lo, hi) in model.controls.items()]
    return "\n".join(lines)


class CVAELoadModel:
    DESCRIPTION = "Loads a CVAE model: the bundled emoji model or a .safetensors from models/cvae."
    CATEGORY = "CVAE/model"
    RETURN_TYPES = (MODEL_TYPE, "STRING")
    RETURN_NAMES = ("model", "info")
    OUTPUT_TOOLTIPS = ("The loaded model.", "Resolution, latent size and the labels of each condition factor.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_name": (comfy.model_list(), {
                "default": comfy.BUNDLED_MODEL,
                "tooltip": "Model file. The bundled model draws 64 px emoji in four styles "
                           "(noto, emojitwo, openmoji, twemoji2015); your own go in models/cvae.",
            }),
        }}

    @classmethod
    def IS_CHANGED(cls, model_name, **_):
        try:
            st = comfy.resolve_model(model_name).stat()
        except FileNotFoundError:
            return f"missing {model_name}"
        return f"{st.st_mtime_ns}:{st.st_size}"

    def load(self, model_name):
        model = load_model(comfy.resolve_model(model_name), device=comfy.torch_device())
        return (model, describe_model(model))


class CVAESaveModel:
    DESCRIPTION = (
        "Saves a CVAE model into models/cvae so CVAE Load Model lists it (after a refresh). Headless "
        "(cvae run), into models/cvae inside the output folder."
    )
    CATEGORY = "CVAE/model"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("The file written.",)
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": model_input("The model to save."),
            "filename_prefix": ("STRING", {"default": "my_model", "tooltip": "Name inside models/cvae (my_model gives models/cvae/my_model_00001_.safetensors); may hold subfolders; a number is appended so nothing is overwritten."}),
            "half_precision": ("BOOLEAN", {"default": False, "tooltip": "Store float16 weights: half the file size, tiny differences in output."}),
        }}

    def save(self, model, filename_prefix, half_precision):
        target = comfy.save_target(filename_prefix, root=comfy.model_save_directory())
        path = target.path("safetensors")
        # The step, training settings and validation figures the model came with (loaded or trained).
        extra = {k: v for k in ("train_config", "validation") if (v := getattr(model, k, None))}
        save_model(model, path, step=getattr(model, "step", 0), extra=extra, dtype=torch.float16 if half_precision else None)
        # 'files' is what `cvae run` prints; the frontend shows 'text'.
        return {"ui": {"text": [str(path)], "files": [str(path)]}, "result": (str(path),)}


def parse_labels(text: str, count: int) -> list[str]:
    """'a, b, c' or one per line; a single label applies to every image."""
    labels = [x.strip() for x in re.split(r"[,\n]", text) if x.strip()]
    if len(labels) == 1:
        return labels * count
    if len(labels) != count:
        raise ValueError(f"labels: got {len(labels)} labels for {count} images; give one label per image, or one for all")
    return labels


def folder_state(folder: str) -> str:
    """What IS_CHANGED reports for a node that reads a folder: its files' signature, so adding or
    editing an image reruns the node."""
    from .folders import folder_signature

    try:
        return folder_signature(comfy.resolve_folder(folder))
    except (FileNotFoundError, ValueError):
        return f"missing {folder}"


FEW_IMAGES = 500  # below this, starting DataLoader workers costs more than decoding in-process


def loader_workers(folder: str) -> int:
    """DataLoader workers for decoding a training folder once: none for an IMAGE batch (already
    decoded) or a small folder; 2 for a big one, on Linux only (forking worker processes inside a
    host process such as ComfyUI is only safe there)."""
    if not folder or not sys.platform.startswith("linux"):
        return 0
    return 2 if len(list_images(folder)) >= FEW_IMAGES else 0


SETTING_WIDGETS = node_widgets()


class CVAETrainModel:
    DESCRIPTION = (
        "Trains a new CVAE on an image folder (sub-folder names or a metadata.csv column are the labels) "
        "or on an IMAGE batch with a labels list. Writes a run folder (checkpoints, samples, loss plot) under "
        "the output folder; Cancel stops and keeps the work done so far."
    )
    CATEGORY = "CVAE/model"
    RETURN_TYPES = (MODEL_TYPE, "IMAGE")
    RETURN_NAMES = ("model", "loss_plot")
    OUTPUT_TOOLTIPS = ("The trained model (EMA weights).", "Loss curves of the run.")
    FUNCTION = "train"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "folder": ("STRING", {"default": "samples", "tooltip": "Image folder to train on (absolute, or relative to the input folder; 'samples' is the bundled set). Ignored when 'images' is connected."}),
                "factor": ("STRING", {"default": "style", "tooltip": "Name of the condition factor: the metadata.csv column, or the name given to sub-folder labels. Empty: unconditional."}),
                **SETTING_WIDGETS[0],  # resolution ... adversarial_start: vae_core/settings.py
                "seed": seed_input("Seed of the initial weights and of the batch order."),
                "run_name": ("STRING", {"default": "cvae/train", "tooltip": "Run folder inside the output folder (numbered, never overwritten)."}),
            },
            "optional": {
                "images": ("IMAGE", {"tooltip": "Train on these images instead of a folder."}),
                "labels": ("STRING", {"default": "", "multiline": True, "tooltip": "With 'images': one label per image (comma or newline separated), or one label for all. Empty: unconditional."}),
                **SETTING_WIDGETS[1],  # added later: optional, so workflows saved before still validate
                "controls": ("STRING", {"default": "", "tooltip": "Numeric metadata.csv columns to train as continuous controls (e.g. brightness), comma separated; set them with CVAE Control."}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, folder="", images=None, **_):
        if images is not None or not folder.strip():
            return ""
        return folder_state(folder)

    def train(self, folder, factor, seed, run_name, images=None, labels="", controls="", **widgets):
        values = values_from_widgets(widgets)
        res, steps = values["model.resolution"], values["steps"]
        factor = factor.strip()
        target = comfy.save_target(run_name)
        run_dir = target.folder / f"{target.filename}_{target.counter:05}_"
        if images is None:
            data = None
            data_path = str(comfy.resolve_folder(folder, "folder"))
        else:
            if controls.strip():
                raise ValueError("controls need a folder with a metadata.csv (their numbers are its columns); "
                                 "disconnect 'images' or clear 'controls'")
            data_path = ""
            x = fit(to_bchw(images, "images"), res)
            if labels.strip() and not factor:
                raise ValueError("labels are given but factor is empty; name the factor (e.g. style) or clear the labels")
            label_map = {factor: parse_labels(labels, x.shape[0])} if factor and labels.strip() else {}
            data = image_set_from_arrays(to_uint8(x), label_map)
        cfg = train_config(
            {**values, "seed": seed % 2**31}, data=data_path, out=str(run_dir), conditions=[factor] if factor else [],
            log_every=max(1, min(50, steps // 20)), sample_every=max(steps, 1), checkpoint_every=max(500, steps // 10),
            workers=loader_workers(data_path), device=str(comfy.torch_device()),
            controls=[c.strip() for c in controls.split(",") if c.strip()],
        )
        history: list[dict] = []
        bar = comfy.Progress(steps, "train")

        def on_step(step: int, total: int, logs: dict) -> None:
            preview = None
            if logs and (not history or history[-1]["step"] != logs["step"]):  # a new log entry: redraw
                history.append(dict(logs))
                preview = loss_plot(history)
            bar.update(1, {k: logs[k] for k in ("loss", "recon", "kl") if k in logs}, preview)

        # ComfyUI runs nodes under inference_mode; training needs autograd back.
        with torch.inference_mode(False), torch.enable_grad():
            try:
                result = train(cfg, data=data, progress=False, callback=on_step)
            finally:
                bar.close()
        plot = loss_plot(result.history) if result.history else np.full((200, 320, 3), 255, np.uint8)
        return (result.model.eval(), torch.from_numpy(plot.astype(np.float32) / 255.0)[None])


class CVAEFitPrior:
    DESCRIPTION = (
        "Gives a model a learned prior without retraining it: a Gaussian mixture fitted to its encodings of an image "
        "folder labelled as in training. CVAE Sample then draws from where real images encode (recognisable output "
        "instead of blobs). Save it with CVAE Save Model to keep it."
    )
    CATEGORY = "CVAE/model"
    RETURN_TYPES = (MODEL_TYPE, "STRING")
    RETURN_NAMES = ("model", "info")
    OUTPUT_TOOLTIPS = ("A copy of the model with the fitted prior.", "What the prior was fitted to.")
    FUNCTION = "fit"

    @classmethod
    def INPUT_TYPES(cls):
        d = PriorConfig()
        return {"required": {
            "model": model_input("The model to give a prior."),
            "folder": ("STRING", {"default": "samples", "tooltip": "Image folder labelled like the training data (sub-folders or metadata.csv); absolute, or relative to the input folder. 'samples' is the bundled set."}),
            "components": ("INT", {"default": d.components, "min": 1, "max": 1024, "step": 1, "tooltip": "Mixture components in all; more follow the encodings more closely; a folder with fewer than twice as many images uses fewer."}),
            "seed": seed_input("Seed of the fit (initial centres, posterior draws)."),
            "per_label": ("BOOLEAN", {"default": d.per_label, "tooltip": "On: the components are split among the labels of the model's first condition, each label's share fitted to its own images (samples show the asked style more often). Off: components shared by all labels."}),
        }}

    @classmethod
    def IS_CHANGED(cls, folder="", **_):
        return folder_state(folder)

    def fit(self, model, folder, components, seed, per_label=PriorConfig.per_label):
        root = comfy.resolve_folder(folder, "folder")
        fitted = copy.deepcopy(model)  # the loaded model is cached and shared with other nodes
        prior, skipped = fit_prior_on_folder(fitted, root, PriorConfig(components=components, per_label=per_label, seed=seed % 2**31),
                                             workers=loader_workers(str(root)))
        info = (f"prior: {prior.info['components']} components fitted to {prior.info['images']} images in {root}"
                + (f"; skipped {len(skipped)} unreadable file(s), first {skipped[0][0]}" if skipped else ""))
        return (fitted, info)


NODE_CLASS_MAPPINGS = {
    "CVAELoadModel": CVAELoadModel,
    "CVAESaveModel": CVAESaveModel,
    "CVAETrainModel": CVAETrainModel,
    "CVAEFitPrior": CVAEFitPrior,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "CVAELoadModel": "CVAE Load Model",
    "CVAESaveModel": "CVAE Save Model",
    "CVAETrainModel": "CVAE Train Model",
    "CVAEFitPrior": "CVAE Fit Prior",
}
