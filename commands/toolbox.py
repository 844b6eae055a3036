"""`cvae sample`, `cvae walk`, `cvae restyle`, `cvae anomaly`, `cvae augment`: the artist's toolbox on a checkpoint."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..vae_core.limits import arg_type


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a .safetensors checkpoint written by `cvae train`")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")


def _load(a: argparse.Namespace):
    from ..vae_core.checkpoint import load_model
    from ..vae_core.device import resolve_device
    from ..vae_core.distributed import local_device, world

    return load_model(a.model, device=local_device(resolve_device(a.device), world()))  # under torchrun: its GPU


def _prior_arg(p: argparse.ArgumentParser) -> None:
    from ..vae_core.prior import PRIOR_CHOICES

    p.add_argument("--prior", choices=PRIOR_CHOICES, default=PRIOR_CHOICES[0],
                   help="learned: the model's fitted p(z | c) (the default; models without one use normal); "
                        "normal: N(0, T^2 I)")


def _refine_arg(p: argparse.ArgumentParser, what: str) -> None:
    from ..vae_core.model import REFINE_DEFAULT, REFINE_STEP

    p.add_argument("--refine", type=arg_type("refine"), default=REFINE_DEFAULT,
                   help=f"passes that decode {what} and encode the drawing again, each moving the latent "
                        f"{REFINE_STEP:g} of the way there (default {REFINE_DEFAULT}; 0: one decode): they pull it "
                        "onto how the model draws")


def _prior_note(model, prior: str) -> str:
    """Say so when a model has no learned prior to draw from (and how to give it one)."""
    if prior == "learned" and not model.has_learned_prior:
        print("note: this model has no learned prior, so latents come from N(0, I); "
              "`cvae fit-prior MODEL DATA --out NEW` gives it one and makes samples look like the data", file=sys.stderr)
        return "normal"
    return prior


def _provenance(command: str, a: argparse.Namespace) -> str:
    """The settings that made a file, stored in it so it can be made again."""
    settings = {k: v for k, v in vars(a).items() if k != "device" and v is not None}
    return json.dumps({"command": command, **settings}, default=str)


# -- sample ----------------------------------------------------------------------------------------
def _sample_args(p: argparse.ArgumentParser) -> None:
    _model_arg(p)
    p.add_argument("--cond", help="condition: 'style=noto', a blend 'style=noto:0.5,openmoji:0.5', factors separated by ';' (default: null)")
    p.add_argument("--n", type=arg_type("count"), default=16, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=arg_type("temperature"), default=1.0, help="1: the prior as learned; below 1 is tamer, above 1 wilder")
    _prior_arg(p)
    _refine_arg(p, "each sample")
    p.add_argument("--nrow", type=arg_type("nrow"), help="grid columns (default: square-ish)")
    p.add_argument("--out", required=True, help="a .png grid, or a folder for one PNG per sample")


def _sample_run(a: argparse.Namespace) -> int:
    from ..vae_core.images import grid, save_png

    model = _load(a)
    cond = model.condition(a.cond, 1)
    prior = _prior_note(model, a.prior)
    images = model.sample(a.n, cond, seed=a.seed, temperature=a.temperature, prior=prior, refine=a.refine)
    what = (f"{a.n} sample(s) ({model.describe(cond) or 'unconditional'}, seed {a.seed}, "
            f"temperature {a.temperature:g}, {prior} prior, {a.refine} refine pass(es))")
    text = {"cvae": _provenance("sample", a)}
    out = Path(a.out)
    if out.suffix.lower() == ".png":
        save_png(out, grid(images, nrow=a.nrow or math.ceil(math.sqrt(a.n))), text)
        print(f"wrote {out}: {what}")
    else:
        for i, img in enumerate(images):
            save_png(out / f"sample_{i:04d}.png", img, text)
        print(f"wrote {a.n} PNG file(s) to {out}: {what}")
    return 0


# -- walk ------------------------------------------------------------------------------------------
def _walk_args(p: argparse.ArgumentParser) -> None:
    from ..vae_core.schedule import EASINGS
    from ..vae_core.video import DEFAULT_QUALITY, FORMATS, VIDEO_FORMATS, available_formats

    _model_arg(p)
    p.add_argument("--out", required=True, help=f"video file; the format follows the extension ({', '.join(VIDEO_FORMATS)})")
    p.add_argument("--codec", choices=available_formats(),
                   help="another encoder for the extension: " + "; ".join(f"{n} ({f.suffix}): {f.about}" for n, f in FORMATS.items()
                                                                        if n in available_formats()))
    p.add_argument("--keyframes", type=arg_type("keyframes"), default=4, help="random keyframes drawn from the prior (ignored with --from/--to)")
    p.add_argument("--from", dest="from_image", help="first keyframe: an image, encoded with --cond-from")
    p.add_argument("--to", dest="to_image", help="last keyframe: an image, encoded with --cond-to")
    p.add_argument("--frames", type=arg_type("frames"), help="exactly this many frames in the file (default 96, or what --segment-frames add up to)")
    p.add_argument("--segment-frames", help="frames per keyframe segment, e.g. '24,48,24' (K-1 counts; K with --loop)")
    p.add_argument("--fps", type=arg_type("fps"), default=24)
    p.add_argument("--easing", choices=list(EASINGS), default="linear")
    p.add_argument("--method", choices=["slerp", "lerp"], default="slerp")
    p.add_argument("--loop", action="store_true", help="the last frame flows back into the first (seamless loop)")
    p.add_argument("--pingpong", action="store_true", help="play forward, then back")
    p.add_argument("--hold", type=arg_type("hold"), default=0, help="extra frames to stay on each keyframe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=arg_type("temperature"), default=1.0, help="spread of the random keyframes (1: the prior as learned)")
    _prior_arg(p)
    _refine_arg(p, "each random keyframe")
    p.add_argument("--renormalize", action="store_true", help="keep every frame's latent at the typical radius of N(0, T^2 I) (for --prior normal walks)")
    p.add_argument("--cond", help="condition for every frame (default: null)")
    p.add_argument("--cond-from", help="condition at the start (a sweep to --cond-to)")
    p.add_argument("--cond-to", help="condition at the end")
    p.add_argument("--quality", type=arg_type("quality"), default=DEFAULT_QUALITY, help="0..100, higher is better")
    p.add_argument("--size", type=arg_type("video_size"), help="output size in pixels (default: the model's resolution)")
    p.add_argument("--chunk", type=arg_type("chunk"), default=32, help="frames decoded per batch")
    p.add_argument("--audio", help="a sound file (WAV, MP3, FLAC, ...) for the video's track, cut or padded with "
                                   "silence to its length (.mp4 / .mov: AAC, .webm: Opus)")


def _walk_run(a: argparse.Namespace) -> int:
    import torch

    from ..vae_core import latent
    from ..vae_core.images import load_image, to_tensor
    from ..vae_core.schedule import keyframe_path, sweep_condition
    from ..vae_core.walk import render_walk

    if bool(a.from_image) != bool(a.to_image):
        raise ValueError("--from and --to go together (two images to morph between)")
    try:
        seg = [int(x) for x in a.segment_frames.split(",")] if a.segment_frames else None
    except ValueError:
        raise ValueError(f"--segment-frames {a.segment_frames!r}: expected whole numbers separated by commas") from None
    model = _load(a)
    cond_from = model.condition(a.cond_from or a.cond, 1)
    cond_to = model.condition(a.cond_to or a.cond, 1)
    if a.from_image:
        imgs = [to_tensor(load_image(p, model.resolution)) for p in (a.from_image, a.to_image)]
        keys = torch.cat([latent.encode(model, imgs[0], cond_from), latent.encode(model, imgs[1], cond_to)])
    else:
        keys = model.prior_sample(a.keyframes, a.seed, a.temperature, cond_from, _prior_note(model, a.prior))
        with torch.inference_mode():
            keys = model.refine(keys, cond_from, a.refine)
    schedule_args = dict(easing=a.easing, loop=a.loop, pingpong=a.pingpong)
    frames = a.frames if a.frames is not None else (None if seg else 96)
    z = keyframe_path(keys, frames, a.method, hold=a.hold, segment_frames=seg, **schedule_args)
    if a.renormalize:
        z = latent.renormalize(z, a.temperature)
    if a.cond_from or a.cond_to:
        cond = sweep_condition(cond_from, cond_to, len(z), keys.shape[0], hold=a.hold, segment_frames=seg, **schedule_args)
    else:
        cond = cond_from
    audio = None
    if a.audio:
        from ..vae_core.video import load_audio

        audio = load_audio(a.audio)
    path = render_walk(model, z, cond, a.out, fps=a.fps, quality=a.quality, chunk=a.chunk, size=a.size,
                       metadata={"cvae": _provenance("walk", a)}, audio=audio, codec=a.codec)
    side = a.size or model.resolution
    print(f"wrote {path}: {len(z)} frames at {a.fps:g} fps, {side}x{side}")
    return 0


# -- restyle ---------------------------------------------------------------------------------------
def _restyle_args(p: argparse.ArgumentParser) -> None:
    _model_arg(p)
    p.add_argument("in_dir", help="folder of images (searched recursively)")
    p.add_argument("out_dir", help="where the restyled images go, same relative paths and names")
    p.add_argument("--to", dest="target", required=True, help="target condition or blend, e.g. 'style=openmoji:0.7,noto:0.3'")
    p.add_argument("--from", dest="source", help="source condition (default: each image's sub-folder label, else null)")
    p.add_argument("--batch-size", type=arg_type("batch_size"), default=32)
    p.add_argument("--sample", action="store_true", help="encode with a sample of q(z|x) instead of its mean")
    p.add_argument("--seed", type=int, default=0, help="noise seed for --sample")
    p.add_argument("--size", choices=["model", "source"], default="model", help="output at the model's resolution or the source's")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist (default: skip them)")
    p.add_argument("--background", default="white", help="colour that transparent pixels are composited on")
    from ..vae_core.prior import TRANSPORT_CHOICES

    p.add_argument("--transport", choices=TRANSPORT_CHOICES, default=TRANSPORT_CHOICES[0],
                   help="prior: carry each latent from the source style's part of the learned prior to the target's "
                        "(the default: measured closer to real drawings in the target style); none: decode it as encoded")
    _refine_arg(p, "in the target style")


def _restyle_run(a: argparse.Namespace) -> int:
    from ..vae_core.distributed import world
    from ..vae_core.restyle import restyle_folder

    model = _load(a)
    if a.transport == "prior" and not model.has_learned_prior:
        print("note: this model has no learned prior, so latents are decoded as encoded; "
              "`cvae fit-prior MODEL DATA --out NEW` gives it one", file=sys.stderr)
    report = restyle_folder(model, a.in_dir, a.out_dir, a.target, a.source, batch_size=a.batch_size, sample=a.sample,
                            size=a.size, overwrite=a.overwrite, background=a.background, seed=a.seed,
                            transport=a.transport, refine=a.refine)
    if not world().main:  # under torchrun, rank 0 reports for all
        return 0
    for path in report.written:
        print(path)
    for path, why in report.failed:
        print(f"skipped {path}: {why}", file=sys.stderr)
    if not report.written and not report.existing:
        raise ValueError(f"{a.in_dir}: no readable image to restyle"
                         + (f" ({len(report.failed)} unreadable, listed above)" if report.failed else ""))
    print(f"restyled {len(report.written)} image(s) into {a.out_dir}"
          + (f"; {len(report.existing)} already there (--overwrite to redo)" if report.existing else "")
          + (f"; {len(report.failed)} unreadable, skipped" if report.failed else ""))
    return 0


# -- anomaly ---------------------------------------------------------------------------------------
def _anomaly_args(p: argparse.ArgumentParser) -> None:
    _model_arg(p)
    p.add_argument("folder", help="folder of images (searched recursively)")
    p.add_argument("--cond", help="condition for every image (default: sub-folder label, else null)")
    p.add_argument("--samples", type=arg_type("samples"), default=8, help="latent samples for the ELBO estimate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--by", choices=["neg_elbo", "recon_error"], default="neg_elbo", help="ranking score")
    p.add_argument("--top", type=arg_type("top"), default=20, help="how many of the worst to print (0 = all)")
    p.add_argument("--csv", help="write every score to this CSV file")
    p.add_argument("--heatmaps", help="folder for error heat maps of the --top worst images")
    p.add_argument("--heat-scale", type=_heat_scale, default="image",
                   help="heat map colours: image (each map to its own worst 1%%), batch (one scale for all) or a "
                        "fixed error (mean squared error per pixel value) for the hot end")
    p.add_argument("--batch-size", type=arg_type("batch_size"), default=32)


def _heat_scale(text: str) -> str | float:
    import torch

    from ..vae_core.anomaly import HEAT_SCALES, heat_scales

    if text in HEAT_SCALES:
        return text
    try:
        heat_scales(torch.ones(1, 1, 1), float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {', '.join(HEAT_SCALES)} or a positive number") from None
    return float(text)


def _anomaly_run(a: argparse.Namespace) -> int:
    import csv
    import io

    import numpy as np

    from ..vae_core.anomaly import HEAT_DISPLAY, anomaly_scores, heatmap, score_folder
    from ..vae_core.distributed import world
    from ..vae_core.files import write_text
    from ..vae_core.images import load_image, save_png, to_tensor
    from ..vae_core.conditions import subfolder_condition

    model = _load(a)
    scores = score_folder(model, a.folder, a.cond, samples=a.samples, seed=a.seed, batch_size=a.batch_size, by=a.by)
    if not world().main:  # under torchrun, rank 0 reports and writes for all
        return 0
    for path, why in scores.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    if not len(scores):
        raise ValueError(f"{a.folder}: no readable image to score"
                         + (f" ({len(scores.skipped)} unreadable, listed above)" if scores.skipped else ""))
    top = scores if a.top <= 0 else scores[: a.top]
    print(f"{'neg_elbo':>12} {'recon_mse':>10}  path (worst first, {len(scores)} image(s))")
    for path, err, nelbo in top:
        print(f"{nelbo:12.1f} {err:10.5f}  {path}")
    if a.csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["path", "recon_error", "neg_elbo"])
        w.writerows(scores)
        write_text(a.csv, buf.getvalue())
        print(f"wrote {a.csv}")
    if a.heatmaps and top:
        out = Path(a.heatmaps)
        paths = [Path(p) for p, _, _ in top]
        images = to_tensor(np.stack([load_image(p, model.resolution) for p in paths]))
        cond = model.condition(a.cond, 1) if a.cond else subfolder_condition(model, [p.relative_to(a.folder) for p in paths])
        res = anomaly_scores(model, images, cond, samples=1, seed=a.seed)
        shown = to_tensor(np.stack([load_image(p, max(HEAT_DISPLAY, model.resolution)) for p in paths]))
        maps = heatmap(res.error_map, shown, scale=a.heat_scale, colorbar=True)
        for rank, (p, m) in enumerate(zip(paths, maps)):
            save_png(out / f"{rank:03d}_{p.stem}.png", m)
        print(f"wrote {len(paths)} heat map(s) to {out}")
    return 0


# -- augment ---------------------------------------------------------------------------------------
def _augment_args(p: argparse.ArgumentParser) -> None:
    _model_arg(p)
    p.add_argument("out_dir", help="folder for OUT_DIR/<label>/s<seed>_<index>.png and manifest.csv (a training folder again)")
    p.add_argument("--per-label", type=arg_type("count"), required=True, help="samples of each label (or each --cond)")
    p.add_argument("--cond", action="append", help="draw this condition instead of every label; repeat for several")
    p.add_argument("--factor", help="whose labels to draw (default: the model's first factor)")
    p.add_argument("--seed", type=arg_type("seed"), default=0, help="another seed writes new files beside the old ones")
    p.add_argument("--temperature", type=arg_type("temperature"), default=1.0, help="1: the prior as learned")
    _prior_arg(p)
    _refine_arg(p, "each sample")


def _augment_run(a: argparse.Namespace) -> int:
    from ..vae_core.augment import augment
    from ..vae_core.checkpoint import weights_digest

    model = _load(a)
    prior = _prior_note(model, a.prior)
    res = augment(model, a.out_dir, a.per_label, weights_digest(model), seed=a.seed, temperature=a.temperature,
                  conds=a.cond, factor=a.factor, prior=prior, refine=a.refine)
    print(f"wrote {len(res.written)} PNG file(s) to {a.out_dir}" + (f", kept {res.kept} already there" if res.kept else "")
          + f"; listed in {res.manifest}")
    return 0


COMMANDS = {
    "sample": (_sample_args, _sample_run),
    "walk": (_walk_args, _walk_run),
    "restyle": (_restyle_args, _restyle_run),
    "anomaly": (_anomaly_args, _anomaly_run),
    "augment": (_augment_args, _augment_run),
}
