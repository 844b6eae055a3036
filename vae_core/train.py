"""Training: read top to bottom. AdamW, EMA weights for sampling, gradient clipping, a NaN guard,
atomic checkpoints, exact resume, sample grids and a loss plot in the run folder.

Everything random in a step (batch, label dropout, flips, reparameterisation noise) is drawn from
a generator seeded by (seed, step), so a resumed run continues exactly as an uninterrupted one.
"""
from __future__ import annotations

import copy
import json
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import load_state, save_model, save_state
from .device import resolve_amp, resolve_device
from .files import write_json
from .conditions import labels_to_condition
from .data import ImageSet, batch_indices, load_image_set
from .images import grid, save_png, to_tensor
from .losses import LossConfig, Swapped, VAELoss, kl_divergence
from .metrics import quality_report
from .model import CVAE, ModelConfig, reparameterize
from .plots import loss_plot

LR_SCHEDULES = ("constant", "cosine")
# Training-time augmentation: mirror images, and/or shift them by up to SHIFT_FRACTION of the
# resolution (edges repeated, so a drawing on a plain background stays on it). Off by default:
# on the emoji set the bundled model fits its training images at 25.5 dB and new ones at 20.1,
# yet 1,200 fine-tune steps with flip+shift gave new ones 19.6 dB (BENCHMARKS.md, samples).
AUGMENT_CHOICES = ("none", "flip", "shift", "flip+shift")
SHIFT_FRACTION = 1 / 16
LR_FINAL = 0.1  # cosine ends at this fraction of --lr

RUN_CONFIG = "config.json"
STATE_FILE = "state.safetensors"
MODEL_FILE = "model.safetensors"


def shift_images(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Each image [B, C, H, W] moved by its (dy, dx) in whole pixels, the edge pixels repeated
    into the gap (a plain background stays plain; nothing wraps around)."""
    m = int(offsets.abs().max()) if len(offsets) else 0
    if m == 0:
        return x
    h, w = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (m, m, m, m), mode="replicate")
    return torch.stack([padded[i, :, m - dy:m - dy + h, m - dx:m - dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


class TrainingDiverged(RuntimeError):
    pass


def learning_rate(cfg: "TrainConfig", step: int) -> float:
    """The generator's learning rate at `step`: a function of the step alone, so a resumed run
    follows the same schedule (a resume that changes --steps stretches the remaining cosine)."""
    if cfg.lr_schedule == "constant" or cfg.steps <= 0:
        return cfg.lr
    t = min(1.0, step / cfg.steps)
    return cfg.lr * (LR_FINAL + (1 - LR_FINAL) * 0.5 * (1 + math.cos(math.pi * t)))


def _defer_sigint() -> tuple[Callable[[], bool], Callable[[], None]]:
    """(interrupted, restore): Ctrl-C sets a flag the loop checks between steps, because an
    interrupt landing after the optimizer step but before the EMA update would save a state that
    cannot resume exactly. A second Ctrl-C stops at once. Only in the main thread, and only where
    Python's default handler is in place (a host's own handler, or an ignored SIGINT, is kept)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return (lambda: False), (lambda: None)
    hits: list[int] = []

    def handler(signum, frame) -> None:
        hits.append(signum)
        if len(hits) > 1:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    return (lambda: bool(hits)), (lambda: signal.signal(signal.SIGINT, signal.default_int_handler))


@dataclass
class TrainConfig:
    data: str = ""
    out: str = "runs/cvae"
    conditions: list[str] | None = None  # None: sub-folder names when there are sub-folders
    controls: list[str] = field(default_factory=list)  # numeric metadata columns: continuous conditions
    steps: int = 20_000
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "constant"  # constant | cosine (to LR_FINAL * lr at `steps`)
    weight_decay: float = 1e-4
    ema_decay: float = 0.999
    grad_clip: float = 1e5  # total-norm clip; losses are per-image sums, so norms are large
    label_dropout: float = 0.1  # teaches the null condition
    val_fraction: float = 0.05
    seed: int = 0
    background: str = "white"
    augment: str = "none"  # AUGMENT_CHOICES
    log_every: int = 50
    checkpoint_every: int = 500
    sample_every: int = 500
    keep_checkpoints: int = 3
    workers: int = 2
    amp: str = "auto"  # AMP_CHOICES: bf16 autocast where the device computes bf16 natively (device.py)
    device: str = "auto"
    max_minutes: float = 0.0  # stop (and save) after this much wall time; 0 = no limit
    fit_prior: bool = True  # fit a learned prior p(z | c) to the training encodings at the end (prior.py)
    init: str = ""  # a model file whose weights start the run (fine-tuning); same architecture and labels
    # Processes under torchrun, recorded; batch_size is the effective batch over all of them.
    world_size: int = 1
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"], d["loss"] = self.model.to_dict(), self.loss.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        if isinstance(d.get("amp"), bool):  # written before amp had "auto"
            d["amp"] = "bf16" if d["amp"] else "fp32"
        model = ModelConfig.from_dict(d.pop("model", {}))
        loss = LossConfig.from_dict(d.pop("loss", {}))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__}, model=model, loss=loss)


@dataclass
class TrainResult:
    model: CVAE  # EMA weights, eval mode
    history: list[dict]
    run_dir: Path
    step: int
    skipped: list[tuple[str, str]]
    stopped: str  # "done" | "time limit"


class TrainForward(torch.nn.Module):
    """One training forward pass, the module DistributedDataParallel wraps: the reconstruction
    and, when the classifier, cycle or swapped-adversarial terms are on, the first latents decoded under other labels
    (and, for the cycle, that drawing encoded and decoded under its own labels again)."""

    def __init__(self, model: CVAE, cycle: bool):
        super().__init__()
        self.model, self.cycle = model, cycle

    def forward(self, x: torch.Tensor, cond: dict, eps: torch.Tensor, swap: dict | None):
        logits, mu, logvar = self.model(x, cond, eps)
        if swap is None:
            return logits, mu, logvar, None, None
        half = len(x) // 2 or 1
        swapped = self.model.decode_logits(reparameterize(mu[:half], logvar[:half], eps[:half]), swap)
        back = None
        if self.cycle:
            back_mu, _ = self.model.encode(torch.sigmoid(swapped), swap)
            back = self.model.decode_logits(back_mu, {k: v[:half] for k, v in cond.items()})
        return logits, mu, logvar, swapped, back


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        data: ImageSet | None = None,
        resume: bool = False,
        progress: bool = True,
        callback: Callable[[int, int, dict], None] | None = None,
    ):
        self.run_dir = Path(cfg.out)
        self.progress, self.callback = progress, callback
        state = None
        if resume:
            state_path = self.run_dir / STATE_FILE
            if not state_path.is_file():
                raise FileNotFoundError(f"--resume: {state_path} does not exist; nothing to resume in {self.run_dir}")
            try:
                saved = TrainConfig.from_dict(json.loads((self.run_dir / RUN_CONFIG).read_text(encoding="utf-8"))["train"])
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise ValueError(f"--resume: {self.run_dir / RUN_CONFIG} is missing, truncated or not this run's "
                                 f"config ({err}); the run cannot be resumed, start it again in a new --out") from None
            saved.steps, saved.max_minutes = cfg.steps, cfg.max_minutes  # the two things a resume may change
            saved.data = cfg.data or saved.data
            cfg = saved
            state = load_state(state_path)
        for name, choices in (("lr_schedule", LR_SCHEDULES), ("augment", AUGMENT_CHOICES)):
            if getattr(cfg, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {getattr(cfg, name)!r}")
        self.cfg = cfg
        device = resolve_device(cfg.device)
        self.world, self._owns_group = distributed.init(device)
        self.device = distributed.local_device(device, self.world)
        self.amp = resolve_amp(cfg.amp, self.device)
        if cfg.batch_size % self.world.size:
            raise ValueError(f"batch size {cfg.batch_size} does not split over {self.world.size} processes; "
                             f"use a multiple of {self.world.size} (it is the batch of all processes together)")
        # A resume may change the number of processes: the step and the effective batch carry over.
        cfg.world_size = self.world.size
        if not self.world.main:
            self.progress, self.callback = False, None
        if data is None:
            cache = self.run_dir / "cache" / (f"rank{self.world.rank}" if self.world.distributed else "")
            data = load_image_set(
                cfg.data, cfg.model.resolution, cfg.conditions, cfg.background, cfg.workers,
                cache_dir=cache, vocab=cfg.model.conditions or None if resume else None,
                progress=progress, controls=cfg.controls,
                control_ranges=cfg.model.controls if resume and cfg.controls else None,
            )
        if data.images.shape[1] != cfg.model.resolution:
            raise ValueError(f"images are {data.images.shape[1]} px, the model is {cfg.model.resolution} px")
        self.data = data
        cfg.model.conditions = data.vocab
        cfg.model.controls = data.control_ranges
        self.train_idx, self.val_idx = data.split(cfg.val_fraction)
        torch.manual_seed(cfg.seed)  # initial weights
        self.model = CVAE(cfg.model).to(self.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        if cfg.init and state is None:
            self._load_init(cfg.init)
        self.loss = VAELoss(cfg.loss, cfg.model.recon, cfg.model.latent_dim, cfg.model.conditions).to(self.device)
        self.forward = TrainForward(self.model, cycle=cfg.loss.cycle_weight > 0)
        self.net: torch.nn.Module = self.forward
        self.disc_net = self.loss.disc
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DDP(self.forward, device_ids=ids)
            if self.loss.disc is not None:
                self.disc_net = DDP(self.loss.disc, device_ids=ids)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
        self.d_opt = (
            torch.optim.AdamW(self.loss.disc.parameters(), lr=cfg.loss.disc_lr, betas=(0.5, 0.9), weight_decay=0.0)
            if self.loss.disc is not None else None
        )
        judges = [m for m in (self.loss.critic, self.loss.style_cls) if m is not None]
        self.c_opt = (
            torch.optim.AdamW([p for m in judges for p in m.parameters()], lr=cfg.loss.latent_adv_lr, betas=(0.5, 0.9),
                              weight_decay=0.0)
            if judges else None
        )
        self.step, self.history = 0, []
        self.pending: dict[str, list[float]] = {}  # logs since the last history entry
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.opt.load_state_dict(state["opt"])
            if self.loss.disc is not None:
                self.loss.disc.load_state_dict(state["disc"])
                self.d_opt.load_state_dict(state["disc_opt"])  # type: ignore[union-attr]
            if self.loss.critic is not None:
                self.loss.critic.load_state_dict(state["critic"])
            if self.loss.style_cls is not None:
                self.loss.style_cls.load_state_dict(state["style_cls"])
            if self.c_opt is not None:
                self.c_opt.load_state_dict(state["critic_opt"])
            self.step, self.history = int(state["step"]), list(state["history"])
            self.pending = {k: list(v) for k, v in state.get("pending", {}).items()}
        if self.world.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.run_dir / RUN_CONFIG, {"train": cfg.to_dict()})

    def _load_init(self, path: str) -> None:
        from .checkpoint import CheckpointError, load_model

        src = load_model(path, "cpu")
        mine, theirs = self.cfg.model.to_dict(), src.config.to_dict()
        differ = sorted(k for k in mine if mine[k] != theirs.get(k))
        if differ:
            raise CheckpointError(
                f"--init {path}: its model differs from this run's in {', '.join(differ)} "
                f"({', '.join(f'{k}={theirs.get(k)!r}' for k in differ)}); pass the same settings to fine-tune it"
            )
        weights = {k: v for k, v in src.state_dict().items() if not k.startswith("prior.")}  # refitted at the end
        self.model.load_state_dict(weights)
        self.ema.load_state_dict(weights)

    # -- one step ------------------------------------------------------------------------------
    def _batch(self, step: int) -> tuple[torch.Tensor, dict, torch.Tensor, dict | None]:
        """This process's share of the step's batch. Everything is drawn for the whole batch and
        then split by rank, so the batch of a step does not depend on the number of processes."""
        cfg = self.cfg
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = batch_indices(self.train_idx, cfg.batch_size, step, cfg.seed)
        x = to_tensor(self.data.images[idx])
        if "flip" in cfg.augment:
            flip = torch.rand(len(idx), generator=g) < 0.5
            x[flip] = x[flip].flip(-1)
        if "shift" in cfg.augment:
            most = max(1, round(x.shape[-1] * SHIFT_FRACTION))
            x = shift_images(x, torch.randint(-most, most + 1, (len(idx), 2), generator=g))
        cond = self.data.condition(idx, drop=lambda n: torch.rand(n, generator=g) < cfg.label_dropout)
        cond = {k: v.to(self.device) for k, v in cond.items()}
        eps = torch.randn(len(idx), cfg.model.latent_dim, generator=g)
        swap = None
        if self.loss.swaps:  # drawn last, so runs without it keep their random stream
            swap = labels_to_condition(self.data.vocab, {
                f: torch.randint(len(labels), (len(idx) // 2 or 1,), generator=g) for f, labels in self.data.vocab.items()})
        w = self.world
        per = len(idx) // w.size
        mine = slice(w.rank * per, (w.rank + 1) * per)
        x, cond, eps = x[mine], {k: v[mine] for k, v in cond.items()}, eps[mine]
        if swap is not None:  # the first half of each share is drawn again under these labels
            half = per // 2 or 1
            swap = {k: v[w.rank * half : (w.rank + 1) * half].to(self.device) for k, v in swap.items()}
            swap |= {c: cond[c][:half] for c in self.data.controls}
        return x.to(self.device), cond, eps.to(self.device), swap

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def train_step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        x, cond, eps, swap = self._batch(step)
        self.model.train()
        # The judges (PatchGAN, LPIPS, classifiers) run under autocast with the VAE: left in fp32,
        # the PatchGAN alone took two thirds of a bf16 step. The loss terms themselves are fp32.
        with self._autocast():
            logits, mu, logvar, swapped_logits, back_logits = self.net(x, cond, eps, swap)
            logits, mu, logvar = logits.float(), mu.float(), logvar.float()
            swapped = None if swap is None else Swapped(swapped_logits.float(), swap,
                                                         None if back_logits is None else back_logits.float())
            loss, logs = self.loss.generator(x, logits, mu, logvar, self.model.log_sigma, self.model.decoder.last_layer,
                                             step, cond, swapped, self.disc_net)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {float(loss.detach())} at step {step} ({', '.join(f'{k}={v:.4g}' for k, v in logs.items())}). "
                + self._last_good()
            )
        self.opt.zero_grad(set_to_none=True)
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(cfg, step)
        loss.backward()
        logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
        if not math.isfinite(logs["grad_norm"]):  # before the update, so no NaN reaches the weights or the EMA
            raise TrainingDiverged(
                f"gradient norm became {logs['grad_norm']} at step {step} (loss {logs['loss']:.4g}). {self._last_good()}"
            )
        self.opt.step()
        if self.loss.adversarial_active(step):
            assert self.d_opt is not None
            with self._autocast():
                d_loss, d_logs = self.loss.discriminator(x, self.disc_net)
            self.d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_opt.step()
            logs.update(d_logs)
        if self.c_opt is not None:
            with self._autocast():
                c_loss, c_logs = self.loss.critic_step(mu, x, cond)
            self.c_opt.zero_grad(set_to_none=True)
            c_loss.backward()
            distributed.average_gradients([p for group in self.c_opt.param_groups for p in group["params"]])
            self.c_opt.step()
            logs.update(c_logs)
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(self.ema.parameters(), self.model.parameters()):
                pe.lerp_(p, 1 - decay)
        logs["sigma"] = float(self.model.log_sigma.detach().exp())
        return logs

    def _last_good(self) -> str:
        model = self.run_dir / MODEL_FILE
        if not model.is_file():
            return "No checkpoint was saved before that; start again with a lower --lr or --grad-clip."
        return f"The last good checkpoint is {model}; resume with a lower --lr or --grad-clip."

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.cfg
        start_time = time.time()
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", disable=not self.progress, dynamic_ncols=True)
        stopped = "done"
        t_log, imgs = time.time(), 0
        interrupted, restore_sigint = _defer_sigint()
        try:
            while self.step < cfg.steps:
                logs = distributed.mean(self.train_step(self.step))
                self.step += 1
                imgs += cfg.batch_size
                for k, v in logs.items():
                    self.pending.setdefault(k, []).append(v)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    entry = {"step": self.step, **{k: float(np.mean(v)) for k, v in self.pending.items()}}
                    entry["images_per_s"] = imgs / max(time.time() - t_log, 1e-9)
                    self.history.append(entry)
                    self.pending, t_log, imgs = {}, time.time(), 0
                    bar.set_postfix({k: f"{entry[k]:.4g}" for k in ("loss", "recon", "kl", "images_per_s") if k in entry})
                bar.update(1)
                if self.callback is not None:
                    self.callback(self.step, cfg.steps, self.history[-1] if self.history else {})
                # Every process stops at the same step, whichever one was told to.
                if distributed.any_rank(interrupted()):
                    raise KeyboardInterrupt
                if self.step % cfg.sample_every == 0:
                    self.save_samples()
                if self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                    self.save(validate=True)
                if distributed.any_rank(bool(cfg.max_minutes) and time.time() - start_time > cfg.max_minutes * 60):
                    stopped = "time limit"
                    break
        except TrainingDiverged:
            raise
        except BaseException:
            # Ctrl-C or a cancel from the host: keep the work done so far.
            self.save()
            if self.progress:
                tqdm.write(f"interrupted at step {self.step}; saved {self.run_dir / STATE_FILE} (continue with --resume)")
            raise
        finally:
            bar.close()
            restore_sigint()
        distributed.finish(self._owns_group)
        if cfg.fit_prior and self.world.main:
            self.fit_prior()
        self.save(validate=True)
        self.save_samples()
        return TrainResult(self.ema, self.history, self.run_dir, self.step, self.data.skipped, stopped)

    def prior_images(self) -> np.ndarray:
        """The uint8 images the prior is fitted to: the training split as the model sees it."""
        return self.data.images[self.train_idx]

    def fit_prior(self) -> None:
        """The learned prior, fitted to the EMA model's encodings of the training split."""
        from .prior import fit_prior

        idx = self.train_idx
        fit_prior(self.ema, self.prior_images(), {f: v[idx] for f, v in self.data.labels.items()},
                  controls={c: v[idx] for c, v in self.data.controls.items()})

    # -- outputs -------------------------------------------------------------------------------
    def validate(self, limit: int = 256) -> dict[str, float]:
        idx = self.val_idx[:limit] if len(self.val_idx) else self.train_idx[:limit]
        x = to_tensor(self.data.images[idx]).to(self.device)
        cond = self.data.condition(idx)
        with torch.inference_mode():
            mu, logvar = self.ema.encode(x, cond)
            recon = self.ema.decode(mu, cond)
            kl = float(kl_divergence(mu, logvar).sum(1).mean())
        report = {f"val_{k}": v for k, v in quality_report(recon.cpu(), x.cpu()).items()}
        report["val_kl"] = kl
        return report

    def save(self, validate: bool = False) -> Path:
        """The state, the model and a checkpoint; rank 0 alone writes them."""
        if not self.world.main:
            return self.run_dir / MODEL_FILE
        extra: dict = {"train_config": self.cfg.to_dict(), "precision": "bf16" if self.amp else "fp32"}
        if validate:  # before the state, so a resumed history has the same entries
            extra["validation"] = self.validate()
            if self.history:
                self.history[-1].update(extra["validation"])
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            # The prior is fitted to the final weights, and again after a resumed run.
            "ema": {k: v for k, v in self.ema.state_dict().items() if not k.startswith("prior.")},
            "opt": self.opt.state_dict(),
            "history": self.history,
            "pending": self.pending,
        }
        if self.loss.disc is not None:
            state["disc"] = self.loss.disc.state_dict()
            state["disc_opt"] = self.d_opt.state_dict()  # type: ignore[union-attr]
        if self.loss.critic is not None:
            state["critic"] = self.loss.critic.state_dict()
        if self.loss.style_cls is not None:
            state["style_cls"] = self.loss.style_cls.state_dict()
        if self.c_opt is not None:
            state["critic_opt"] = self.c_opt.state_dict()
        save_state(self.run_dir / STATE_FILE, state)
        path = save_model(self.ema, self.run_dir / MODEL_FILE, self.step, extra)
        # What the file says about the model travels with it in memory too (the Save Model node).
        self.ema.step, self.ema.train_config = self.step, extra["train_config"]  # type: ignore[assignment]
        self.ema.validation = extra.get("validation", getattr(self.ema, "validation", {}))  # type: ignore[assignment]
        snap = save_model(self.ema, self.run_dir / "checkpoints" / f"step_{self.step:07d}.safetensors", self.step, extra)
        snaps = sorted(snap.parent.glob("step_*.safetensors"))
        old = snaps[: max(0, len(snaps) - self.cfg.keep_checkpoints)]  # [:-0] would keep them all
        for f in old:
            f.unlink()
            f.with_suffix(".json").unlink(missing_ok=True)
        if self.history:
            save_png(self.run_dir / "loss.png", loss_plot(self.history))
        return path

    def save_samples(self, per_row: int = 8) -> Path:
        """Rows of prior samples per label of the first factor (fixed seed), then val reconstructions."""
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        if not self.world.main:
            return path
        rows = []
        factors = list(self.data.vocab)
        specs = [f"{factors[0]}={lab}" for lab in self.data.vocab[factors[0]][:8]] if factors else [None]
        with torch.inference_mode():
            for spec in specs:
                rows.append(self.ema.sample(per_row, self.ema.condition(spec, per_row), seed=1234).cpu())
            idx = (self.val_idx if len(self.val_idx) else self.train_idx)[:per_row]
            x = to_tensor(self.data.images[idx]).to(self.device)
            cond = self.data.condition(idx)
            mu, _ = self.ema.encode(x, cond)
            rows += [x.cpu(), self.ema.decode(mu, cond).cpu()]
        images = torch.cat([r if len(r) == per_row else torch.cat([r, torch.ones(per_row - len(r), *r.shape[1:])]) for r in rows])
        return save_png(path, grid(images, nrow=per_row))


def train(cfg: TrainConfig, data: ImageSet | None = None, resume: bool = False, progress: bool = True,
          callback: Callable[[int, int, dict], None] | None = None) -> TrainResult:
    return Trainer(cfg, data, resume, progress, callback).run()
