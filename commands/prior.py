"""`cvae fit-prior`: give an existing model a learned prior p(z | c), without retraining it."""
from __future__ import annotations

import argparse
import sys


def _fit_args(p: argparse.ArgumentParser) -> None:
    from ..vae_core.prior import PriorConfig

    d = PriorConfig()
    p.description = ("Fit a Gaussian-mixture prior to a model's encodings of an image folder (labelled as in training) "
                     "and write the model with it; samplers then draw from where the encodings are.")
    p.add_argument("model", help="a .safetensors checkpoint written by `cvae train`")
    p.add_argument("data", help="image folder labelled as in training (sub-folders or metadata.csv)")
    p.add_argument("--out", required=True, help="the new model file (the input model is never overwritten)")
    p.add_argument("--components", type=int, default=d.components, help="mixture components shared by all labels")
    p.add_argument("--draws", type=int, default=d.draws, help="posterior samples per image")
    p.add_argument("--iterations", type=int, default=d.iterations, help="EM iterations at most")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--val-fraction", type=float, help="images left out, as in training (default: the model's own)")
    p.add_argument("--workers", type=int, default=2, help="decoding workers")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")


def _fit_run(a: argparse.Namespace) -> int:
    from ..vae_core.checkpoint import load_model, save_with_prior
    from ..vae_core.prior import PriorConfig, fit_prior_on_folder

    cfg = PriorConfig(components=a.components, draws=a.draws, iterations=a.iterations, seed=a.seed)
    model = load_model(a.model, a.device)
    prior, skipped = fit_prior_on_folder(model, a.data, cfg, a.val_fraction, a.workers, progress=True)
    for path, why in skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    out = save_with_prior(a.model, model, a.out)
    info = prior.info
    print(f"wrote {out}: a {info['components']}-component prior fitted to {info['images']} images "
          f"({info['latents']} posterior draws, {info['iterations']} EM iterations)")
    return 0


COMMANDS = {"fit-prior": (_fit_args, _fit_run)}
