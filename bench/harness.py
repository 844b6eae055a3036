"""Benchmarks behind `cvae bench`: speed, memory and image quality, measured on the real code paths.

Every part returns a `Table` (rows of plain numbers plus notes saying what was measured), so the
CLI can print it or dump JSON. Nothing here asserts a timing; the numbers are for BENCHMARKS.md.
Throughputs are medians over repeated timed calls after a warm-up, so one stall on a shared
machine does not decide a figure.
"""
from __future__ import annotations

import contextlib
import csv
import gzip
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..vae_core.checkpoint import load_model, load_state, read_metadata
from ..vae_core.conditions import labels_to_condition
from ..vae_core.data import ImageSet, image_set_from_arrays, load_image_set
from ..vae_core.device import BF16_CPU_FLAGS, cpu_flags, native_bf16
from ..vae_core.images import to_tensor
from ..vae_core.likelihood import importance_sampled_nll
from ..vae_core.losses import LossConfig, kl_divergence
from ..vae_core.metrics import psnr, quality_report, ssim
from ..vae_core.model import CVAE, ModelConfig
from ..vae_core.prior import TRANSPORT_CHOICES
from ..vae_core.model import REFINE_DEFAULT
from ..vae_core.restyle import restyle_latents
from ..vae_core.train import MODEL_FILE, STATE_FILE, Trainer, TrainConfig

STYLES = ("a", "b", "c", "d")  # the synthetic four-label condition of speed benchmarks
NLL_ANCHORS = {"VAE, 1 stochastic layer (Burda et al. 2016)": 86.76,
               "VAE, 2 stochastic layers (Burda et al. 2016)": 85.33,
               "IWAE k=50, 2 stochastic layers (Burda et al. 2016)": 82.90,
               "VampPrior, HVAE (Tomczak & Welling 2018)": 78.45,
               "NVAE (Vahdat & Kautz 2020)": 78.01}


# -- tables ----------------------------------------------------------------------------------------
@dataclass
class Table:
    name: str
    title: str
    columns: list[str]
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "columns": self.columns, "rows": self.rows, "notes": self.notes}

    def format(self) -> str:
        """A Markdown table (pastes into BENCHMARKS.md as is), then the notes."""
        cells = [[_cell(r.get(c)) for c in self.columns] for r in self.rows]
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join("---" for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        a = abs(v)
        if a >= 1e5 or (0 < a < 1e-3):
            return f"{v:.3g}"
        if a >= 100:
            return f"{v:,.0f}"
        return f"{v:.3g}" if a < 1 else f"{v:.3g}" if a < 10 else f"{v:.1f}"
    return str(v)


def machine_info() -> dict:
    """What the figures came from: CPU, cores, threads, torch, and the load when they were taken."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16_flags": sorted(cpu_flags() & BF16_CPU_FLAGS),
        "python": platform.python_version(),
        "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    if hasattr(os, "getloadavg"):
        info["load_avg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


# -- timing ------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], device: torch.device | str = "cpu", warmup: int = 1,
               repeats: int = 5, min_seconds: float = 0.0) -> list[float]:
    """Seconds per call of `fn`, `repeats` times (more until `min_seconds` of timed work)."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return times


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5,
                device: torch.device | str = "cpu") -> float:
    """FLOP/s of a large square torch.mm: the practical ceiling a conv net's FLOP rate is read against."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    best = min(time_calls(lambda: torch.mm(a, b), device, warmup=1, repeats=repeats))
    return 2 * n**3 / best


def count_flops(fn: Callable[[], object]) -> int:
    """Matmul/conv FLOPs (forward and backward) that torch dispatches while `fn` runs."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


# -- train -------------------------------------------------------------------------------------------
# Each option on top of plain MSE, then the setting the bundled model is trained with, then both
# again under bf16 autocast (TrainConfig.amp); every other row is fp32.
_BUNDLED = dict(recon="gaussian", loss=dict(ssim_weight=1.0, adv_weight=0.5, adv_start=0, disc_channels=32))
TRAIN_SETTINGS: dict[str, dict] = {
    "mse": dict(recon="mse", loss={}),
    "mse+ssim": dict(recon="mse", loss=dict(ssim_weight=1.0)),
    "mse+lpips": dict(recon="mse", loss=dict(lpips_weight=1.0, lpips_random_backbone=True)),
    "mse+adv": dict(recon="mse", loss=dict(adv_weight=0.5, adv_start=0, disc_channels=32)),
    "gaussian+ssim+adv": _BUNDLED,
    "mse-bf16": dict(recon="mse", loss={}, amp="bf16"),
    "gaussian+ssim+adv-bf16": {**_BUNDLED, "amp": "bf16"},
}


def synthetic_image_set(n: int, resolution: int, seed: int = 0) -> ImageSet:
    """n random uint8 images with a four-label `style` factor: speed does not depend on content."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, resolution, resolution, 3), dtype=np.uint8)
    return image_set_from_arrays(images, {"style": [STYLES[i % len(STYLES)] for i in range(n)]})


def bench_train(resolution: int = 64, batch_size: int = 64, settings: list[str] | None = None, warmup: int = 2,
                repeats: int = 6, device: str = "cpu", peak_n: int = 2048, model: ModelConfig | None = None,
                peer: str | Path | None = None) -> Table:
    """Images/s of the real Trainer.train_step (batching, loss, backward, AdamW, EMA) per loss setting,
    and its FLOP rate as a fraction of the measured fp32 / bf16 matmul peak; with `peer` (a checkout
    of AntixK/PyTorch-VAE), its ConditionalVAE's step too, timed alike in the same run."""
    unknown = [s for s in settings or [] if s not in TRAIN_SETTINGS]
    if unknown:
        raise ValueError(f"unknown training setting {unknown[0]!r}; choose from {', '.join(TRAIN_SETTINGS)}")
    dev = torch.device(device)

    def measure_peaks() -> dict[str, float]:
        return {"fp32": matmul_peak(torch.float32, peak_n, repeats=10, device=dev),
                "bf16": matmul_peak(torch.bfloat16, peak_n, repeats=10, device=dev)}

    # Measured before and after the training steps, keeping the better: a brief stall on a shared
    # machine must not make the ceiling look low (and every step look efficient).
    peaks = measure_peaks()
    data = synthetic_image_set(max(4 * batch_size, 64), resolution)
    table = Table("train", f"Training step, {resolution}x{resolution}, batch {batch_size}",
                  ["setting", "images/s", "ms/step", "GFLOP/step", "GFLOP/s", "peak", "% of peak"])
    for name in settings or list(TRAIN_SETTINGS):
        spec = TRAIN_SETTINGS[name]
        mcfg = ModelConfig(**{**(model.to_dict() if model else {}), "resolution": resolution, "recon": spec["recon"]})
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(out=tmp, batch_size=batch_size, workers=0, device=device, amp=spec.get("amp", "fp32"),
                              model=mcfg, loss=LossConfig(**spec["loss"]))
            trainer = Trainer(cfg, data=data, progress=False)
            step = iter(range(10**9))
            flops = count_flops(lambda: trainer.train_step(next(step)))
            times = time_calls(lambda: trainer.train_step(next(step)), dev, warmup=warmup, repeats=repeats)
        sec = statistics.median(times)
        peak_name = spec.get("amp", "fp32")
        table.rows.append({
            "setting": name, "images/s": batch_size / sec, "ms/step": 1000 * sec, "GFLOP/step": flops / 1e9,
            "GFLOP/s": flops / sec / 1e9, "peak": peak_name,
        })
    if peer is not None:
        step = peer_train_step(peer, batch_size, resolution, len(STYLES), dev)
        flops = count_flops(step)
        sec = statistics.median(time_calls(step, dev, warmup=warmup, repeats=repeats))
        table.rows.append({"setting": "peer: PyTorch-VAE ConditionalVAE", "images/s": batch_size / sec,
                           "ms/step": 1000 * sec, "GFLOP/step": flops / 1e9, "GFLOP/s": flops / sec / 1e9, "peak": "fp32"})
    peaks = {k: max(v, w) for (k, v), w in zip(peaks.items(), measure_peaks().values())}
    for row in table.rows:
        row["% of peak"] = 100 * row["GFLOP/s"] * 1e9 / peaks[row["peak"]]
    table.notes += [
        f"matmul peak measured in this run (torch.mm {peak_n}x{peak_n}, best of 10, before and after): fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, "
        f"bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s",
        "FLOPs are those torch.utils.flop_counter counts (convolutions and matmuls, forward and backward) in one "
        "Trainer.train_step; elementwise work (activations, losses, AdamW, EMA) costs time but no counted FLOPs",
        f"median of {repeats} steps after {warmup + 1} warm-up steps; +adv: PatchGAN (32 channels) and its adaptive "
        "weight from step 0; +lpips: a random AlexNet backbone (same cost as the real one); gaussian+ssim+adv: the "
        "bundled model's setting; -bf16: bf16 autocast (TrainConfig.amp), read against the bf16 peak",
        f"--amp auto picks {'bf16' if native_bf16(dev) else 'fp32'} on this "
        f"{machine_info()['cpu'] if dev.type == 'cpu' else dev.type} ({_bf16_evidence(dev)})",
    ]
    return table


def peer_train_step(root: str | Path, batch_size: int, resolution: int, classes: int,
                    device: torch.device) -> Callable[[], None]:
    """One training step of the peer, AntixK/PyTorch-VAE's ConditionalVAE, with its cvae.yaml
    settings (latent 128, Adam 5e-3, kld_weight 2.5e-4, MSE), on random images and one-hot labels.
    Only models/base.py, types_.py and cvae.py are loaded (its package __init__ imports every model,
    some needing a working torchvision); nothing of it is copied here."""
    import importlib.util
    import types

    folder = Path(root) / "models"
    if not (folder / "cvae.py").is_file():
        raise FileNotFoundError(f"--peer {root}: no models/cvae.py there; give a checkout of AntixK/PyTorch-VAE")
    saved = sys.modules.get("models")
    package = types.ModuleType("models")
    package.__path__ = [str(folder)]  # type: ignore[attr-defined]
    sys.modules["models"] = package
    try:
        for name in ("types_", "base", "cvae"):
            spec = importlib.util.spec_from_file_location(f"models.{name}", folder / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
            package.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("_")})
        torch.manual_seed(0)
        net = package.ConditionalVAE(in_channels=3, num_classes=classes, latent_dim=128, img_size=resolution).to(device)
    finally:
        for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
            del sys.modules[name]
        if saved is not None:
            sys.modules["models"] = saved
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch_size, 3, resolution, resolution, generator=g) * 2 - 1).to(device)
    y = torch.nn.functional.one_hot(torch.arange(batch_size) % classes, classes).float().to(device)

    def step() -> None:
        out = net(x, labels=y)
        loss = net.loss_function(*out, M_N=0.00025)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def _bf16_evidence(dev: torch.device) -> str:
    if dev.type == "cuda":
        return "torch.cuda.is_bf16_supported()"
    found = sorted(cpu_flags() & BF16_CPU_FLAGS)
    return f"CPU flags {', '.join(found)}" if found else "no native bf16 flag in /proc/cpuinfo"


# -- decode / render ----------------------------------------------------------------------------------
def untrained_model(resolution: int, device: str = "cpu", **config) -> CVAE:
    torch.manual_seed(0)
    cfg = ModelConfig(resolution=resolution, conditions={"style": list(STYLES)}, **config)
    return CVAE(cfg).to(device).eval()


def decode_frames(model: CVAE, z: torch.Tensor, cond: dict, batch: int) -> None:
    """Decode-only baseline: batched, inference mode, images kept as float tensors."""
    with torch.inference_mode():
        for i in range(0, len(z), batch):
            model.decode(z[i : i + batch], {k: v if len(v) == 1 else v[i : i + batch] for k, v in cond.items()})


def bench_decode(resolutions: tuple[int, ...] = (64, 128, 256), frames: int = 256, batch: int = 64,
                 repeats: int = 3, device: str = "cpu") -> Table:
    table = Table("decode", "Decoding (latent to image), untrained models of the default architecture",
                  ["resolution", "frames/s", "ms/frame", "GFLOP/frame", "GFLOP/s", "batch"])
    for r in resolutions:
        model = untrained_model(r, device)
        n = max(batch, frames * 64 * 64 // (r * r))  # keep each resolution's timing a few seconds
        z = model.prior_sample(n, seed=0)
        cond = model.condition(f"style={STYLES[0]}", n)
        flops = count_flops(lambda: decode_frames(model, z[:batch], cond, batch)) / batch
        sec = statistics.median(time_calls(lambda: decode_frames(model, z, cond, batch), device, repeats=repeats))
        table.rows.append({"resolution": r, "frames/s": n / sec, "ms/frame": 1000 * sec / n, "GFLOP/frame": flops / 1e9,
                           "GFLOP/s": flops * n / sec / 1e9, "batch": batch})
    table.notes.append(f"model.decode under torch.inference_mode in batches of {batch}; median of {repeats} runs; "
                       "GFLOP/frame from the FLOP counter")
    return table


def walk_latents(model: CVAE, frames: int, keys: int = 6, seed: int = 0) -> torch.Tensor:
    """A looping slerp walk through `keys` prior samples, [frames, D]."""
    from ..vae_core.schedule import keyframe_path

    return keyframe_path(model.prior_sample(keys, seed), frames, method="slerp", easing="ease-in-out", loop=True)


def render_cases(model: CVAE, name: str, resolutions: tuple[int, ...] = (128, 256),
                 device: str = "cpu") -> list[tuple[str, CVAE, int | None]]:
    """What `bench_render` times: `model` at its own size and upscaled to 256 px (the render node's
    default), and untrained models at each other resolution at their own size."""
    cases: list[tuple[str, CVAE, int | None]] = [(name, model, None), (name, model, 256)]
    return cases + [(f"untrained {r} px", untrained_model(r, device), None) for r in resolutions if r != model.resolution]


def bench_render(cases: list[tuple[str, CVAE, int | None]], frames: int = 480, chunk: int = 32, fps: float = 24,
                 repeats: int = 3, device: str = "cpu") -> Table:
    """Frames/s of render_walk to MP4 against decoding the same latents without the video.

    Two baselines: model.decode in the same chunks (one call at a time, all intra-op threads),
    and decode_chunks, the library's decoding with the same decoder threads render_walk uses; the
    ratio to the second is what the video path itself costs. cases: (name, model, video size;
    None = the model's own). The three are timed alternately so a change in machine load hits all
    alike; ratios are of medians. Larger models get fewer frames (`frames` at 64 px, scaled by the
    pixel count, at least 96) so each timing stays a few seconds."""
    from ..vae_core.walk import decode_chunks, decode_workers, render_walk

    table = Table("render", "Rendering a latent walk to H.264 MP4 vs decoding its frames",
                  ["model", "resolution", "video px", "frames", "model.decode frames/s", "decode_chunks frames/s",
                   "render frames/s", "render / model.decode", "render / decode_chunks", "MB"])
    for name, model, size in cases:
        n = max(min(frames, 96), frames * 64 * 64 // model.resolution ** 2)
        z = walk_latents(model, n)
        cond = model.condition(f"{next(iter(model.vocab))}={next(iter(model.vocab.values()))[0]}" if model.vocab else None, 1)
        decode_frames(model, z[:chunk], cond, chunk)  # warm-up
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "walk.mp4"
            calls = {"model": lambda: decode_frames(model, z, cond, chunk),
                     "chunks": lambda: sum(1 for _ in decode_chunks(model, z, cond, chunk)),
                     "render": lambda: render_walk(model, z, cond, out, fps=fps, chunk=chunk, size=size)}
            times: dict[str, list[float]] = {k: [] for k in calls}
            for _ in range(repeats):
                for k, fn in calls.items():
                    times[k] += time_calls(fn, device, warmup=0, repeats=1)
            mb = out.stat().st_size / 1e6
        fps_ = {k: n / statistics.median(v) for k, v in times.items()}
        table.rows.append({"model": name, "resolution": model.resolution, "video px": size or model.resolution,
                           "frames": n, "model.decode frames/s": fps_["model"], "decode_chunks frames/s": fps_["chunks"],
                           "render frames/s": fps_["render"], "render / model.decode": fps_["render"] / fps_["model"],
                           "render / decode_chunks": fps_["render"] / fps_["chunks"], "MB": mb})
    workers, threads = decode_workers(device)
    table.notes += [
        f"a looping slerp walk through 6 prior samples, {fps:g} fps, default quality (CRF 18), chunks of {chunk}; "
        f"median of {repeats} alternating runs each",
        f"decode_chunks and render_walk decode with {workers} thread(s)" + (f" of {threads} torch thread(s) each" if threads else "")
        + "; render adds the resize when the video is larger, uint8 conversion, libx264 encode and the atomic file write; "
        "goal: render >= 0.9x decode-only",
    ]
    return table


# -- quality ----------------------------------------------------------------------------------------
def _metadata_column(root: Path, column: str) -> dict[str, str]:
    meta = root / "metadata.csv"
    if not meta.is_file():
        return {}
    with open(meta, newline="", encoding="utf-8") as f:
        return {r["path"]: r.get(column) or "" for r in csv.DictReader(f)}


def _train_val_fraction(path: Path, default: float = 0.05) -> float:
    meta = read_metadata(path)
    return float(meta.get("train_config", {}).get("val_fraction", default))


def _batched(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def reconstruct(model: CVAE, images: np.ndarray, labels: dict[str, np.ndarray], batch: int = 256,
                decode_labels: dict[str, np.ndarray] | None = None, transport: str = TRANSPORT_CHOICES[0],
                refine: int = REFINE_DEFAULT) -> tuple[torch.Tensor, torch.Tensor]:
    """(decoded posterior means, KL per image) of uint8 images; under `decode_labels`, if given,
    restyled as `cvae restyle` does it (restyle_latents with `transport` and `refine`)."""
    out, kls = [], []
    with torch.inference_mode():
        for s in _batched(len(images), batch):
            x = to_tensor(images[s]).to(model.device)
            enc = labels_to_condition(model.vocab, {f: torch.from_numpy(v[s]) for f, v in labels.items()})
            dec = enc if decode_labels is None else labels_to_condition(
                model.vocab, {f: torch.from_numpy(v[s]) for f, v in decode_labels.items()})
            mu, logvar = model.encode(x, enc)
            z = mu if decode_labels is None else restyle_latents(model, mu, enc, dec, transport, refine)
            out.append(model.decode(z, dec).float().cpu())
            kls.append(kl_divergence(mu, logvar).sum(1).float().cpu())
    return torch.cat(out), torch.cat(kls)


def style_pairs(data: ImageSet, val_idx: np.ndarray, keys: dict[str, str], factor: str = "style") -> list[tuple[int, int]]:
    """(source, target) index pairs: every validation image of a key drawn in all styles, with the
    same key in each other style. Only validation sources, so the encoder never saw the input."""
    n_styles = len(data.vocab[factor])
    by_key: dict[str, dict[int, int]] = {}
    for i, name in enumerate(data.names):
        k, s = keys.get(name), int(data.labels[factor][i])
        if k and s >= 0:
            by_key.setdefault(k, {})[s] = i
    pairs = []
    for i in val_idx:
        styles = by_key.get(keys.get(data.names[i], ""), {})
        if len(styles) == n_styles:
            pairs += [(int(i), j) for s, j in sorted(styles.items()) if j != i]
    return pairs


def quality_model(model: CVAE, data: ImageSet, val_idx: np.ndarray, keys: dict[str, str], factor: str = "style") -> dict:
    labels = {f: v[val_idx] for f, v in data.labels.items()}
    recon, kl = reconstruct(model, data.images[val_idx], labels)
    real = to_tensor(data.images[val_idx])
    row = {"images": len(val_idx), **quality_report(recon, real), "kl/image": float(kl.mean())}
    pairs = style_pairs(data, val_idx, keys, factor) if factor in model.vocab else []
    row["pairs"] = len(pairs)
    if pairs:
        src, dst = (np.array(p) for p in zip(*pairs))
        moved, _ = reconstruct(model, data.images[src], {f: v[src] for f, v in data.labels.items()},
                               decode_labels={f: v[dst] for f, v in data.labels.items()})
        target, source = to_tensor(data.images[dst]), to_tensor(data.images[src])
        row.update({
            "transfer psnr": psnr(moved, target), "identity psnr": psnr(source, target),
            "transfer ssim": ssim(moved, target), "identity ssim": ssim(source, target),
        })
        row["psnr gain"] = row["transfer psnr"] - row["identity psnr"]
        row["ssim gain"] = row["transfer ssim"] - row["identity ssim"]
    return row


def bench_quality(models: dict[str, str | Path], data_root: str | Path, device: str = "cpu",
                  key_column: str = "key", factor: str = "style", workers: int = 2) -> Table:
    """Validation-split reconstruction quality, sharpness and style transfer of trained models.

    The split is the training split (ImageSet.split with the run's val_fraction, a hash of each path),
    so the figures are on images the model never trained on."""
    root = Path(data_root)
    keys = _metadata_column(root, key_column)
    table = Table("quality", f"Validation quality on {root.name}",
                  ["model", "step", "images", "psnr", "ssim", "sharpness_ratio", "hf_energy_ratio", "kl/image",
                   "pairs", "transfer psnr", "identity psnr", "psnr gain", "transfer ssim", "identity ssim", "ssim gain"])
    cache: dict[str, ImageSet] = {}
    fractions = set()
    for name, path in models.items():
        model = load_model(path, device)
        val_fraction = _train_val_fraction(Path(path))
        fractions.add(val_fraction)
        sig = json.dumps([model.resolution, model.vocab])
        if sig not in cache:
            cache[sig] = load_image_set(root, model.resolution, list(model.vocab), workers=workers, vocab=model.vocab, progress=False)
        data = cache[sig]
        _, val_idx = data.split(val_fraction)
        table.rows.append({"model": name, "step": getattr(model, "step", None), **quality_model(model, data, val_idx, keys, factor)})
    table.notes += [
        f"validation split: ImageSet.split({', '.join(map(str, sorted(fractions)))}) as in training; reconstructions "
        "decode the posterior mean under the image's own label",
        "sharpness_ratio: Laplacian variance of reconstructions over that of the real images; hf_energy_ratio: "
        "spectral energy above 1/4 Nyquist, same ratio (1.0 = as sharp as the data)",
        f"style transfer: each validation image of an emoji drawn in all {factor}s, encoded in its {factor} and "
        f"decoded as each other {factor}, against the real drawing in that {factor}; identity = the untouched "
        "source image as the prediction; gain = transfer - identity",
    ]
    return table


def bench_curve(run_dir: str | Path) -> Table:
    """Validation figures at each checkpoint of a training run against its training time, from the
    history in the run's state file (time = sum of the logged step windows; checkpoint writes and
    validation are not counted)."""
    run = Path(run_dir)
    history = load_state(run / STATE_FILE)["history"]
    batch = json.loads((run / "config.json").read_text())["train"]["batch_size"]
    table = Table("curve", f"Validation figures during training: {run}",
                  ["step", "train minutes", "images/s", "val_psnr", "val_ssim", "val_sharpness_ratio", "val_hf_energy_ratio", "val_kl"])
    seconds, prev = 0.0, 0
    for entry in history:
        step = int(entry["step"])
        seconds += (step - prev) * batch / max(entry.get("images_per_s", 0.0), 1e-9)
        prev = step
        if "val_psnr" in entry:
            table.rows.append({"step": step, "train minutes": seconds / 60, "images/s": entry.get("images_per_s"),
                               **{k: entry.get(k) for k in table.columns[3:]}})
    # A run stopped by its time limit validates at a step that is no logging step: its figures sit
    # on the last logged entry (or, in runs from before train.py validated ahead of the state
    # file, only in the model file). The model file says the real step.
    last = read_metadata(run / MODEL_FILE) if (run / MODEL_FILE).is_file() else {}
    final, logged = int(last.get("step", -1)), int(history[-1]["step"]) if history else -1
    if "validation" in last and final >= logged >= 0 and all(r["step"] != final for r in table.rows):
        val = last["validation"]
        if table.rows and table.rows[-1]["step"] == logged and table.rows[-1]["val_psnr"] == val.get("val_psnr"):
            table.rows.pop()
        extra = (final - logged) * batch / max(history[-1].get("images_per_s", 0.0), 1e-9)
        table.rows.append({"step": final, "train minutes": (seconds + extra) / 60, "images/s": history[-1].get("images_per_s"),
                           **{k: val.get(k) for k in table.columns[3:]}})
    table.notes.append("train minutes: sum over logged windows of steps x batch / measured images/s (excludes checkpoint, "
                       "validation and sample-grid writes)")
    return table


# -- restyle (peak memory in a fresh process) -------------------------------------------------------------
def write_png_folder(root: str | Path, n: int, size: int = 64, seed: int = 0) -> Path:
    """n real PNG files of random coloured blocks (cheap to make, non-trivial to decode)."""
    import cv2

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (64, size // 8, size // 8, 3), dtype=np.uint8)
    for i in range(n):
        img = cv2.resize(base[i % 64], (size, size), interpolation=cv2.INTER_NEAREST)
        img[i % size, :] = (i * 37) % 256  # every file differs
        cv2.imwrite(str(root / f"img_{i:06d}.png"), img)
    return root


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (VmHWM; ru_maxrss where /proc is absent)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def run_in_fresh_process(code: str, args: dict, timeout: float = 3600) -> dict:
    """Run `code` (which defines `main(**args) -> dict`) in a new Python; return its dict."""
    prog = f"import json, sys\n{code}\nprint(json.dumps(main(**json.loads(sys.argv[1]))))\n"
    proc = subprocess.run([sys.executable, "-c", prog, json.dumps(args)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def restyle_child(model: str, src: str, dst: str, device: str = "cpu") -> dict:
    """In a fresh process: restyle `src` into `dst`; time it and read this process's peak RSS."""
    from ..vae_core.restyle import restyle_folder

    m = load_model(model, device)
    spec = f"{next(iter(m.vocab))}={next(iter(m.vocab.values()))[-1]}" if m.vocab else None
    before = peak_rss_mb()
    t = time.perf_counter()
    report = restyle_folder(m, src, dst, target=spec, progress=False)
    return {"seconds": time.perf_counter() - t, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": before,
            "written": len(report.written), "failed": len(report.failed)}


def bench_restyle(model: str | Path | None = None, sizes: list[int] = (500, 5000), image_size: int = 128,
                  quick: bool = False, device: str = "cpu") -> Table:
    """Images/s of restyle_folder and its peak RSS per folder size, each in a fresh process."""
    table = Table("restyle", "Restyling a folder to a folder (PNG in, PNG out), each size in a fresh process",
                  ["images", "seconds", "images/s", "peak RSS MiB", "RSS before MiB", "growth vs first %"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if model is None:
            from ..vae_core.checkpoint import save_model

            model = save_model(untrained_model(32 if quick else 64), tmp / "untrained.safetensors")
        images = write_png_folder(tmp / "all", max(sizes), image_size)
        files = sorted(images.iterdir())
        first = None
        for n in sizes:
            src = tmp / f"src_{n}"
            src.mkdir()
            for f in files[:n]:
                os.link(f, src / f.name)  # the same bytes for every size, written once
            res = run_in_fresh_process(f"from {__name__} import restyle_child as main",
                                       {"model": str(model), "src": str(src), "dst": str(tmp / f"out_{n}"), "device": device})
            if res["written"] != n:
                raise RuntimeError(f"restyle wrote {res['written']} of {n} images ({res['failed']} failed)")
            first = first or res["peak_rss_mb"]
            table.rows.append({"images": n, "seconds": res["seconds"], "images/s": n / res["seconds"],
                               "peak RSS MiB": res["peak_rss_mb"], "RSS before MiB": res["rss_before_mb"],
                               "growth vs first %": 100 * (res["peak_rss_mb"] - first) / first})
    table.notes += [
        f"vae_core.restyle.restyle_folder, default batch, {image_size}x{image_size} RGB PNG inputs, "
        f"model {Path(model).name if model else ''}; peak RSS = VmHWM of the process (imports and model included); "
        "RSS before = after imports and model load; goal: growth within 10%",
    ]
    return table


# -- nll on binarised MNIST ------------------------------------------------------------------------------
def read_idx_images(path: str | Path) -> np.ndarray:
    """uint8 [N, rows, cols] from an MNIST idx3 file (gzipped or not)."""
    path = Path(path)
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    magic, n, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in range(0, 16, 4))
    if magic != 2051 or len(raw) != 16 + n * rows * cols:
        raise ValueError(f"{path}: not an idx3 image file (magic {magic}, {len(raw)} bytes for {n}x{rows}x{cols})")
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)


def mnist_image_set(images: np.ndarray, resolution: int = 32) -> ImageSet:
    """Grey digits zero-padded to the model resolution and repeated to RGB, unlabelled."""
    pad = resolution - images.shape[1]
    lo, hi = pad // 2, pad - pad // 2
    padded = np.pad(images, ((0, 0), (lo, hi), (lo, hi)))
    return image_set_from_arrays(np.repeat(padded[..., None], 3, axis=3))


class BinarizedTrainer(Trainer):
    """Trainer whose batches are dynamically binarised: each pixel ~ Bernoulli(grey level), drawn
    fresh every step (from the step's seed, so a resume stays exact). The grey value is sampled
    once and copied to the three channels."""

    def _batch(self, step: int):
        x, cond, eps, swap = super()._batch(step)
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step + 7_777_777)
        grey = torch.bernoulli(x[:, :1].cpu(), generator=g).to(x.device)
        return grey.expand_as(x).contiguous(), cond, eps, swap

    def prior_images(self) -> np.ndarray:
        """Binarised digits (once, seeded), the kind of data the model is scored on."""
        binary = binarize(self.data.images[self.train_idx][..., 0], self.cfg.seed + 424_242)
        return (binary[:, 0, :, :, None] * 255).to(torch.uint8).expand(-1, -1, -1, 3).contiguous().numpy()


def nll_train_config(out: str | Path, steps: int, minutes: float, batch_size: int = 128, latent_dim: int = 32,
                     lr: float = 1e-3, seed: int = 0, device: str = "cpu") -> TrainConfig:
    """An unconditional Bernoulli VAE at 32x32.

    The model always has three output channels and the digit is copied to all three, so the BCE
    term counts each pixel three times; beta = 3 puts the KL on the same scale: the loss is 3x the
    channel-average of three per-channel -ELBOs. BCE is convex in the logits, so that average bounds
    from above the -ELBO of the decoder with channel-averaged logits, the one evaluated."""
    return TrainConfig(
        out=str(out), steps=steps, max_minutes=minutes, batch_size=batch_size, lr=lr, label_dropout=0.0,
        val_fraction=0.0, seed=seed, workers=0, device=device, checkpoint_every=2000, sample_every=2000, log_every=100,
        model=ModelConfig(resolution=32, latent_dim=latent_dim, recon="bce"),
        loss=LossConfig(beta=3.0, kl_warmup_steps=2000),
    )


def binarize(images: np.ndarray, seed: int = 0) -> torch.Tensor:
    """uint8 [N, H, W] grey -> {0,1} float [N, 1, H, W], sampled once with `seed` (the fixed test set)."""
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.from_numpy(images).float().div(255)[:, None], generator=g)


def train_nll_model(mnist_dir: str | Path, out: str | Path, steps: int = 10**9, minutes: float = 10.0,
                    progress: bool = True, train_images: int | None = None, **config) -> Path:
    """Train the unconditional Bernoulli VAE on dynamically binarised MNIST; returns its model file."""
    train = read_idx_images(Path(mnist_dir) / "train-images-idx3-ubyte.gz")[:train_images]
    cfg = nll_train_config(out, steps, minutes, **config)
    BinarizedTrainer(cfg, data=mnist_image_set(train, cfg.model.resolution), progress=progress).run()
    return Path(out) / MODEL_FILE


def bench_nll(mnist_dir: str | Path, checkpoint: str | Path, k: int = 1000, test_images: int | None = None,
              chunk: int = 250, device: str = "cpu", seed: int = 0) -> Table:
    model = load_model(checkpoint, device)
    test = read_idx_images(Path(mnist_dir) / "t10k-images-idx3-ubyte.gz")
    if test_images and test_images < len(test):
        # Evenly spaced, not the first N: MNIST's first 5,000 test digits are the cleaner, easier half.
        test = test[np.linspace(0, len(test) - 1, test_images).round().astype(int)]
    pad = model.resolution - test.shape[1]
    test = np.pad(test, ((0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2)))
    x = binarize(test, seed)
    t = time.perf_counter()
    priors = ["learned", "normal"] if model.prior is not None else ["normal"]
    results = {p: importance_sampled_nll(model, x, k=k, chunk=chunk, seed=seed, prior=p) for p in priors}
    sec = (time.perf_counter() - t) / len(priors)
    meta = read_metadata(checkpoint)
    hist = meta.get("train_config", {})
    table = Table("nll", "Test NLL on dynamically binarised MNIST (nats, lower is better)",
                  ["estimate", "nats", "std. error", "test images", "samples k"])
    names = {"learned": "learned mixture prior", "normal": "N(0, I) prior"}
    for p, (nll, elbo) in results.items():
        for what, v in ((f"importance sampled k={k}", nll), ("-ELBO (same samples)", elbo)):
            table.rows.append({"estimate": f"ours, {names[p]}, {what}", "nats": float(v.mean()),
                               "std. error": float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan"),
                               "test images": len(v), "samples k": k})
    nll = results[priors[0]][0]
    for name, v in NLL_ANCHORS.items():
        table.rows.append({"estimate": name, "nats": v})
    table.notes += [
        f"model {checkpoint}: step {meta.get('step')}, latent {model.config.latent_dim}, "
        f"batch {hist.get('batch_size')}; test digits padded 28->{model.resolution} px (the padding is always 0, "
        "so it costs the model almost nothing) and binarised once with a fixed seed",
        f"evaluation took {sec / 60:.1f} min per prior ({len(nll) * k / sec:,.0f} decoded samples/s)",
        "the learned prior: the Gaussian mixture that training fits to the encodings of binarised training digits "
        "(prior.py); the same weights, so the difference is the prior alone",
    ]
    if k < 1000:
        table.notes.append(f"k={k} < 1000: a looser estimate, not comparable with the published anchors")
    if len(nll) < 10_000:
        table.notes.append(f"{len(nll)} of the 10,000 test images, evenly spaced over the set; the std. error says "
                           "how far the mean may move")
    return table
