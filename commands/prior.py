"""`cvae fit-prior`: give an existing model a learned prior p(z | c), without retraining it;
`cvae merge`: a model between two others' weights, with a prior fitted to it."""
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
    p.add_argument("--components", type=int, default=d.components,
                   help="mixture components in all, split among the labels of the model's first condition")
    p.add_argument("--shared-components", dest="per_label", action="store_false",
                   help="one set of components for all labels, each with a label distribution (they blur the "
                        "labels into each other: samples show the asked style less often)")
    p.add_argument("--draws", type=int, default=d.draws, help="posterior samples per image")
    p.add_argument("--iterations", type=int, default=d.iterations, help="EM iterations at most")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--val-fraction", type=float, help="images left out, as in training (default: the model's own)")
    p.add_argument("--workers", type=int, default=2, help="decoding workers")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")


def _fit_run(a: argparse.Namespace) -> int:
    from ..vae_core.checkpoint import load_model, save_with_prior
    from ..vae_core.prior import PriorConfig, fit_prior_on_folder

    cfg = PriorConfig(components=a.components, per_label=a.per_label, draws=a.draws, iterations=a.iterations, seed=a.seed)
    model = load_model(a.model, a.device)
    prior, skipped = fit_prior_on_folder(model, a.data, cfg, a.val_fraction, a.workers, progress=True)
    for path, why in skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    out = save_with_prior(a.model, model, a.out)
    info = prior.info
    print(f"wrote {out}: a {info['components']}-component prior fitted to {info['images']} images "
          f"({info['latents']} posterior draws, {info['iterations']} EM iterations)")
    return 0


def _merge_args(p: argparse.ArgumentParser) -> None:
    from ..vae_core.limits import arg_type

    p.description = ("Write a model whose weights lie between two models' (for a fine-tune and the model it started "
                     "from: between what the fine-tune gained and what it cost), with a prior fitted to its encodings.")
    p.add_argument("first", help="a .safetensors model (weight 0)")
    p.add_argument("second", help="a .safetensors model of the same architecture and labels (weight 1)")
    p.add_argument("data", help="image folder labelled as in training, to fit the merged model's prior")
    p.add_argument("--weight", type=arg_type("merge_weight"), required=True,
                   help="how far from the first model toward the second, 0 to 1")
    p.add_argument("--out", required=True, help="the new model file (neither input is ever overwritten)")
    p.add_argument("--seed", type=int, default=0, help="seed of the prior's fit")
    p.add_argument("--workers", type=int, default=2, help="decoding workers")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")


def _merge_run(a: argparse.Namespace) -> int:
    import warnings

    import torch

    from ..vae_core.checkpoint import (
        load_model,
        merge_models,
        refuse_input_as_output,
        save_model,
        stored_in_half,
        weights_digest,
    )
    from ..vae_core.device import resolve_device
    from ..vae_core.prior import PriorConfig, fit_prior_on_folder

    refuse_input_as_output(a.out, a.first, a.second)
    first, second = load_model(a.first, "cpu"), load_model(a.second, "cpu")
    fractions = {m.train_config.get("val_fraction") for m in (first, second)}
    if len(fractions) > 1:
        warnings.warn(f"the two models held out different validation fractions ({sorted(map(str, fractions))}); "
                      "figures on the merged model's validation split are not fully held out")
    merged = merge_models(first, second, a.weight).to(resolve_device(a.device))
    merged.train_config = second.train_config  # the validation split fit-prior and the bench leave out
    prior, skipped = fit_prior_on_folder(merged, a.data, PriorConfig(seed=a.seed), workers=a.workers, progress=True)
    for path, why in skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    half = stored_in_half(a.first) and stored_in_half(a.second)
    extra = {"train_config": second.train_config,
             "merged": {"first": str(a.first), "second": str(a.second), "weight": a.weight,
                        "digests": [weights_digest(first), weights_digest(second)]}}
    out = save_model(merged, a.out, 0, extra, dtype=torch.float16 if half else None)
    print(f"wrote {out}: {1 - a.weight:g} x {a.first} + {a.weight:g} x {a.second}, with a "
          f"{prior.info['components']}-component prior fitted to {prior.info['images']} images")
    return 0


COMMANDS = {"fit-prior": (_fit_args, _fit_run), "merge": (_merge_args, _merge_run)}
