"""`cvae train`: train a model from an image folder."""
from __future__ import annotations

import argparse
import sys


def _train_args(p: argparse.ArgumentParser) -> None:
    from ..vae_core.device import AMP_CHOICES
    from ..vae_core.settings import add_arguments

    p.add_argument("data", help="image folder: sub-folder names are labels, or a metadata.csv with a 'path' column")
    p.add_argument("--out", required=True, help="run folder (config, checkpoints, samples, loss plot)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--condition", action="append", help="condition factor (sub-folder names, or a metadata.csv column); repeat for several; 'none' for unconditional")
    p.add_argument("--control", action="append", default=[], metavar="NAME",
                   help="a numeric metadata.csv column as a continuous condition (e.g. brightness; sample with "
                        "--cond NAME=VALUE); repeat for several")
    add_arguments(p)  # every setting with a default, range or choices: vae_core/settings.py
    p.add_argument("--lpips-weights", help="path to the torchvision backbone file (default: $TORCH_HOME/hub/checkpoints)")
    p.add_argument("--no-fit-prior", dest="fit_prior", action="store_false",
                   help="do not fit the learned prior p(z | c) at the end (samplers then use N(0, I))")
    p.add_argument("--init", default="", help="start from this model file's weights (fine-tune; same architecture and labels)")
    p.add_argument("--background", default="white", help="colour that transparent pixels are composited on")
    p.add_argument("--amp", choices=AMP_CHOICES, default="auto",
                   help="training precision: auto (bf16 autocast where the device computes bf16 natively: CUDA with "
                        "bf16, CPUs with AVX512-BF16 or AMX; fp32 elsewhere), bf16 or fp32 (default auto)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")


def _train_run(a: argparse.Namespace) -> int:
    from ..vae_core.distributed import world
    from ..vae_core.settings import train_config, values_from_args
    from ..vae_core.train import train

    conditions = None if not a.condition else [] if a.condition == ["none"] else a.condition
    cfg = train_config(values_from_args(a), data=a.data, out=a.out, conditions=conditions, background=a.background,
                       amp=a.amp, device=a.device, init=a.init, fit_prior=a.fit_prior,
                       controls=a.control)
    cfg.loss.lpips_weights = a.lpips_weights
    result = train(cfg, resume=a.resume)
    if not world().main:  # under torchrun, rank 0 speaks for all
        return 0
    for path, why in result.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable file(s)", file=sys.stderr)
    for factor, labels in result.model.vocab.items():
        hint = " (sub-folder names; --condition NAME gives the factor another name)" if factor == "label" and not a.condition else ""
        print(f"condition {factor}: {', '.join(labels)}{hint}; sample with --cond {factor}={labels[0]}")
    for name, (lo, hi) in result.model.controls.items():
        print(f"control {name}: trained on {lo:g} to {hi:g}; sample with --cond {name}={(lo + hi) / 2:g}")
    val = result.history[-1] if result.history else {}
    figures = ", ".join(f"{k[4:]} {val[k]:.4g}" for k in ("val_psnr", "val_ssim", "val_sharpness_ratio", "val_kl") if k in val)
    print(f"{result.stopped} at step {result.step}: {result.run_dir / 'model.safetensors'}" + (f" (validation: {figures})" if figures else ""))
    return 0


COMMANDS = {"train": (_train_args, _train_run)}


