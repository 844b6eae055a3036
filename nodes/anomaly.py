"""Anomaly node: how badly the model explains each image, as scores and heat maps."""
from __future__ import annotations

import torch

from ..vae_core.anomaly import HEAT_DISPLAY, HEAT_SCALES, heatmap, scores_in_batches
from ..vae_core.files import write_text
from ..vae_core.images import fit
from ..vae_core.limits import widget
from . import comfy
from .common import CHUNK, cond_input, model_cond, model_input, seed_input, split_names, to_bchw

RANKINGS = ["neg_elbo", "recon_error"]


class CVAEAnomalyScore:
    DESCRIPTION = (
        "Scores each image by how badly the model explains it (higher = more unusual): the reconstruction "
        "error and the negative ELBO. Outputs heat maps of where the reconstruction fails, the images "
        "ranked most unusual first, and a score table, which it also saves as a .tsv in the output folder "
        "(opens in any spreadsheet) and shows on the node."
    )
    CATEGORY = "CVAE/anomaly"
    RETURN_TYPES = ("IMAGE", "IMAGE", "STRING")
    RETURN_NAMES = ("heatmap", "ranked", "scores")
    OUTPUT_TOOLTIPS = (
        "Where the reconstruction fails, coloured over each image (input order), with a colour bar whose "
        "right end is labelled with the error it stands for.",
        "The input images, most unusual first.",
        "Tab-separated, one line per image, most unusual first: rank, index, file, recon_error, neg_elbo.",
    )
    FUNCTION = "score"
    OUTPUT_NODE = True
    COLUMNS = ("rank", "index", "file", "recon_error", "neg_elbo")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": model_input("A model trained on normal images of this kind."),
                "image": ("IMAGE", {"tooltip": "Images to score; any size, cropped to a centred square."}),
                "rank_by": (RANKINGS, {"default": "neg_elbo", "tooltip": "neg_elbo also counts how unusual the latent is; recon_error only how badly it is redrawn."}),
                "samples": ("INT", {"default": 8, **widget("samples"), "step": 1, "tooltip": "Latent draws for the ELBO estimate: more is steadier and slower."}),
                "seed": seed_input("Seed of the ELBO draws; same seed, same scores."),
                "overlay": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Opacity of the hottest colour over the image; cooler errors are fainter, and where the image is redrawn well it shows untouched."}),
                "filename_prefix": ("STRING", {"default": "cvae/anomaly/scores", "tooltip": "The score table is saved as <prefix>_00001_.tsv inside the output folder (numbered, never overwritten); may hold subfolders."}),
            },
            "optional": {
                "cond": cond_input("The images' expected condition (one, or one per image); not connected = unconditional."),
                "file_names": ("STRING", {"forceInput": True, "tooltip": "Names for the score table, one per line (from CVAE Load Image Folder)."}),
                "heat_scale": (list(HEAT_SCALES), {"default": HEAT_SCALES[0], "tooltip": "image: each heat map coloured to its own worst 1% (shows where, in every image); batch: one scale for all (compares images; the worst image alone glows)."}),
            },
        }

    def score(self, model, image, rank_by, samples, seed, overlay, filename_prefix, cond=None, file_names=None,
              heat_scale=HEAT_SCALES[0]):
        x = to_bchw(image)
        n = x.shape[0]
        names = split_names(file_names) if file_names else []
        if names and len(names) != n:
            raise ValueError(f"file_names has {len(names)} names for {n} images; connect the names of these images")
        c = model_cond(model, cond, n)
        x = fit(x, model.resolution) if min(x.shape[-2:]) <= model.resolution else fit(x, min(x.shape[-2:]))
        with comfy.Progress(n, "anomaly") as bar:
            res = scores_in_batches(model, x, c, samples, seed, CHUNK, bar.callback)
        recon, elbo, maps = res.recon_error, res.neg_elbo, res.error_map
        # At least HEAT_DISPLAY px, so the colour bar's label can be read.
        shown_x = fit(x, HEAT_DISPLAY) if x.shape[-1] < HEAT_DISPLAY else x
        heat = torch.from_numpy(heatmap(maps, shown_x, alpha=overlay, scale=heat_scale, colorbar=True)).float().div_(255.0)
        order = torch.argsort(elbo if rank_by == "neg_elbo" else recon, descending=True, stable=True)
        rows = []
        for rank, i in enumerate(order.tolist(), 1):
            rows.append((rank, i, names[i] if names else "", f"{float(recon[i]):.6g}", f"{float(elbo[i]):.6g}"))
        table = "\n".join("\t".join(map(str, row)) for row in [self.COLUMNS, *rows])
        target = comfy.save_target(filename_prefix)
        path = target.path("tsv")
        write_text(path, table + "\n")
        top = rows[0]
        which = top[2] or f"image {top[1]} of the batch (0-based)"
        shown = f"{target.subfolder}/{path.name}" if target.subfolder else path.name
        summary = (f"Most unusual (rank 1, by {rank_by}): {which}, recon_error {top[3]}, neg_elbo {top[4]}; "
                   f"it is the first image of 'ranked'. Table saved as {shown} in the output folder.")
        ranked = x[order].permute(0, 2, 3, 1).contiguous().cpu()
        return {"ui": {"text": [summary + "\n\n" + table], "files": [str(path)]}, "result": (heat, ranked, table)}


NODE_CLASS_MAPPINGS = {"CVAEAnomalyScore": CVAEAnomalyScore}
NODE_DISPLAY_NAME_MAPPINGS = {"CVAEAnomalyScore": "CVAE Anomaly Score"}
