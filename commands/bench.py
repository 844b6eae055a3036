"""`cvae bench PART`: speed, memory and quality benchmarks (tables for BENCHMARKS.md, --json for machines)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PARTS = ("train", "decode", "render", "restyle", "runner", "quality", "samples", "disentangle", "curve", "nll")
# The shared data next to a checkout (../shared/data); a user's clone passes paths instead.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _bench_args(p: argparse.ArgumentParser) -> None:
    from ..vae_core.prior import PRIOR_CHOICES

    p.description = "Measure speed, memory and quality. Each part runs alone; `all` runs every part it has inputs for."
    p.add_argument("part", choices=PARTS + ("all",), help="what to measure")
    p.add_argument("--json", action="store_true", help="print one JSON object (machine, tables) instead of tables")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the benchmark runs, the numbers mean little")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps")
    g = p.add_argument_group("train")
    g.add_argument("--settings", nargs="+", help="loss settings to time (default: all: mse, mse+ssim, mse+lpips, "
                   "mse+adv, gaussian+ssim+adv, mse-bf16, gaussian+ssim+adv-bf16)")
    g.add_argument("--peer", help="a checkout of AntixK/PyTorch-VAE: its ConditionalVAE's training step is timed in "
                   "the same run (cvae.yaml settings), for the comparison in BENCHMARKS.md")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--repeats", type=int, default=6, help="timed training steps per setting")
    g = p.add_argument_group("decode / render / restyle / runner")
    g.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 256],
                   help="decode, render: model resolutions (render: untrained models besides --model)")
    g.add_argument("--model", help="render/restyle/runner: a trained model file (default: an untrained 64 px model)")
    g.add_argument("--frames", type=int, default=480, help="render: frames in the walk at 64 px (fewer for larger models)")
    g.add_argument("--sizes", type=int, nargs="+", default=[500, 5000], help="restyle: folder sizes (images)")
    g = p.add_argument_group("quality / samples / curve")
    g.add_argument("--models", nargs="+", default=[], metavar="NAME=PATH", help="quality, samples, disentangle: model files to compare")
    g.add_argument("--temperatures", type=float, nargs="+", default=[1.0], help="samples: sampling temperatures to score")
    g.add_argument("--priors", nargs="+", choices=PRIOR_CHOICES, default=list(PRIOR_CHOICES),
                   help="samples: which priors to score (learned only where the model has one)")
    g.add_argument("--cache", default="runs/bench_cache", help="samples: where the domain classifier is cached")
    g.add_argument("--draws", type=int, default=None,
                   help="samples: draws of each sample row, averaged, with their spread (default: SAMPLE_DRAWS in "
                        "bench/samples.py; 1 with --quick)")
    g.add_argument("--data", default=str(SHARED_DATA / "emoji_styles"), help="quality: the emoji folder (metadata.csv with a key column)")
    g.add_argument("--runs", nargs="+", default=[], metavar="RUN_DIR", help="curve: run folders (validation history vs time)")
    g = p.add_argument_group("nll")
    g.add_argument("--mnist", default=str(SHARED_DATA / "mnist"), help="folder with the MNIST idx .gz files")
    g.add_argument("--checkpoint", help="evaluate this model instead of training one")
    g.add_argument("--minutes", type=float, default=0.0, help="train a model for this long first (0 = use --checkpoint)")
    g.add_argument("--steps", type=int, default=10**9, help="and at most this many steps")
    g.add_argument("--out", default="runs/bench_nll", help="run folder of the trained NLL model")
    g.add_argument("--k", type=int, default=1000, help="importance samples per test image (>= 1000 for the anchors)")
    g.add_argument("--test-images", type=int, default=1000,
                   help="N of the 10,000 test images, evenly spaced (default 1000: k=1000 samples each take minutes on a CPU)")


def _quick(a: argparse.Namespace) -> None:
    a.batch_size, a.repeats, a.resolutions, a.frames, a.sizes = 4, 1, [32, 64], 24, [8, 24]
    a.settings = a.settings or ["mse", "mse+adv"]
    a.k, a.test_images = min(a.k, 16), min(a.test_images, 8)
    a.draws = a.draws or 1


def _model_name(path: str) -> str:
    """runs/emoji_best/model.safetensors -> emoji_best; assets/cvae_emoji_64.safetensors -> cvae_emoji_64."""
    p = Path(path)
    return p.parent.name if p.stem == "model" and p.parent.name else p.stem


def _load_models(specs: list[str]) -> dict[str, Path]:
    models = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = _model_name(spec), spec
        if not Path(path).is_file():
            raise FileNotFoundError(f"--models {spec}: no such model file {path}")
        models[name] = Path(path)
    return models


def _speed_model(a: argparse.Namespace):
    from ..bench.harness import untrained_model
    from ..vae_core.checkpoint import load_model

    if a.model:
        return {_model_name(a.model): load_model(a.model, a.device)}
    return {"untrained 64 px": untrained_model(32 if a.quick else 64, a.device)}


def run_part(part: str, a: argparse.Namespace) -> list:
    from ..bench import harness as bench

    if part == "train":
        kw = dict(resolution=32, warmup=0, peak_n=256) if a.quick else {}
        return [bench.bench_train(batch_size=a.batch_size, settings=a.settings, repeats=a.repeats, device=a.device,
                                  peer=a.peer, **kw)]
    if part == "decode":
        return [bench.bench_decode(tuple(a.resolutions), frames=a.frames if a.quick else 256,
                                   batch=8 if a.quick else 64, repeats=1 if a.quick else 5, device=a.device)]
    if part == "render":
        ((name, model),) = _speed_model(a).items()
        cases = bench.render_cases(model, name, tuple(a.resolutions), a.device)
        return [bench.bench_render(cases, frames=a.frames, chunk=8 if a.quick else 32, repeats=1 if a.quick else 5,
                                   device=a.device)]
    if part == "restyle":
        return [bench.bench_restyle(a.model, a.sizes, quick=a.quick, device=a.device)]
    if part == "runner":
        from ..bench.runner import bench_runner

        return [bench_runner(a.model, quick=a.quick, device=a.device)]
    if part == "quality":
        if not a.models:
            raise ValueError("bench quality: give the models to compare, e.g. --models best=runs/emoji_best/model.safetensors")
        return [bench.bench_quality(_load_models(a.models), a.data, a.device)]
    if part == "samples":
        if not a.models:
            raise ValueError("bench samples: give the models to score, e.g. --models assets/cvae_emoji_64.safetensors")
        from ..bench.samples import SAMPLE_DRAWS, bench_samples

        for t in a.temperatures:
            if not (0 <= t <= 3):
                raise ValueError(f"--temperatures: {t} is outside 0..3")
        return bench_samples(_load_models(a.models), a.data, a.device, tuple(a.temperatures), tuple(a.priors),
                             cache_dir=a.cache, progress=not a.json, draws=SAMPLE_DRAWS if a.draws is None else a.draws)
    if part == "disentangle":
        if not a.models:
            raise ValueError("bench disentangle: give the models to score, e.g. --models assets/cvae_emoji_64.safetensors")
        from ..bench.disentangle import bench_disentangle

        return [bench_disentangle(_load_models(a.models), a.data, device=a.device)]
    if part == "curve":
        if not a.runs:
            raise ValueError("bench curve: give run folders with --runs DIR ...")
        return [bench.bench_curve(r) for r in a.runs]
    if part == "nll":
        checkpoint = a.checkpoint
        if a.minutes > 0 or a.quick and not checkpoint:
            kw = dict(train_images=256, batch_size=16, latent_dim=8) if a.quick else {}
            checkpoint = bench.train_nll_model(a.mnist, a.out, steps=3 if a.quick else a.steps, minutes=a.minutes,
                                               progress=not a.json, device=a.device, **kw)
        if not checkpoint:
            raise ValueError("bench nll: train a model with --minutes N, or evaluate one with --checkpoint FILE")
        return [bench.bench_nll(a.mnist, checkpoint, k=a.k, test_images=a.test_images, device=a.device)]
    raise ValueError(f"unknown part {part!r}")


def _bench_run(a: argparse.Namespace) -> int:
    from ..bench.harness import machine_info

    if a.quick:
        _quick(a)
    parts = list(PARTS) if a.part == "all" else [a.part]
    machine = machine_info()
    if not a.json:
        print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()) + "\n", flush=True)
    tables, skipped = [], []
    for part in parts:
        if a.part == "all" and ((part in ("quality", "samples", "disentangle") and not a.models) or (part == "curve" and not a.runs)
                                or (part == "nll" and not (a.checkpoint or a.minutes or a.quick))):
            skipped.append(part)
            continue
        for table in run_part(part, a):
            tables.append(table)
            if not a.json:
                print(table.format(), flush=True)
    if a.json:
        print(json.dumps({"machine": machine, "tables": [t.to_dict() for t in tables], "skipped": skipped}, indent=1))
    elif skipped:
        print(f"skipped (no inputs given): {', '.join(skipped)}; see `cvae bench --help`", file=sys.stderr)
    return 0


COMMANDS = {"bench": (_bench_args, _bench_run)}
