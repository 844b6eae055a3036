"""Every training setting declared once: its default (read from the dataclasses TrainConfig,
LossConfig and ModelConfig), range, choices and help. `cvae train`'s options and the Train node's
widgets are both made from SETTINGS, so they cannot drift from each other or from the defaults.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from .limits import RANGES, Range, arg_type
from .losses import LPIPS_BACKBONES, LossConfig
from .model import RECON_LOSSES, ModelConfig
from .train import AUGMENT_CHOICES, LR_FINAL, LR_SCHEDULES, TrainConfig


@dataclass(frozen=True)
class Setting:
    path: str  # the field: "lr", "loss.beta", "model.latent_dim"
    help: str
    range: str | Range | None = None  # a RANGES name, or a Range of its own
    choices: tuple | None = None
    cli: str | None = None  # the option; default "--" + the field's name with dashes
    node: str | None = None  # the Train node's widget; None: not on the node
    node_optional: bool = False  # added after workflows were saved: optional, so they still validate
    step: float | None = None  # the widget's step
    node_default: Any = None  # where the node starts elsewhere (a quick first run in ComfyUI)

    @property
    def option(self) -> str:
        return self.cli or "--" + self.path.rpartition(".")[2].replace("_", "-")

    @property
    def default(self) -> Any:
        head, _, name = self.path.rpartition(".")
        return getattr({"": TrainConfig(), "loss": LossConfig(), "model": ModelConfig()}[head], name)

    @property
    def bounds(self) -> Range | None:
        return RANGES[self.range] if isinstance(self.range, str) else self.range


_WEIGHT = "loss_weight"
SETTINGS: tuple[Setting, ...] = (
    Setting("model.resolution", "training resolution: images are resized and centre-cropped", choices=(32, 64, 128, 256),
            node="resolution"),
    Setting("steps", "optimizer steps; a 64 px model needs a few thousand for recognisable output", "steps", node="steps",
            node_default=2000),
    Setting("batch_size", "images per step", "batch_size", node="batch_size"),
    Setting("lr", "AdamW learning rate; lower it if the loss jumps or becomes NaN", Range(1e-6, 0.1, integer=False),
            node="learning_rate", step=1e-5),
    Setting("lr_schedule", f"cosine: decay to {LR_FINAL:g} x the learning rate at the last step (recovers "
            "reconstruction at the end of a run)", choices=LR_SCHEDULES, node="lr_schedule", node_optional=True),
    Setting("model.latent_dim", "size of the latent vector", Range(2, 1024), node="latent_dim"),
    Setting("model.base_channels", "channels of the first level (doubling per level)", Range(4, 1024)),
    Setting("model.max_channels", "channels at most, per level", Range(4, 4096)),
    Setting("model.recon", "reconstruction loss; gaussian learns its own noise level (the best default)",
            choices=RECON_LOSSES, node="recon_loss"),
    Setting("loss.beta", "KL weight: higher gives a smoother latent space and blurrier images", Range(0.0, 100.0, integer=False),
            node="beta", step=0.01),
    Setting("loss.kl_warmup_steps", "steps over which the KL weight ramps up from 0 (a quarter of the run or less)",
            Range(0, 1_000_000), cli="--kl-warmup", node="kl_warmup", node_optional=True, node_default=500),
    Setting("loss.free_bits", "nats per latent dimension that cost nothing (keeps dimensions in use)",
            Range(0.0, 10.0, integer=False), node="free_bits", node_optional=True, step=0.01),
    Setting("loss.ssim_weight", "weight of the SSIM (structure) loss: sharper edges", Range(0.0, 10.0, integer=False),
            node="ssim_weight", step=0.01),
    Setting("loss.ms_ssim_weight", "weight of the multi-scale SSIM loss", Range(0.0, 10.0, integer=False),
            node="ms_ssim_weight", node_optional=True, step=0.01),
    Setting("loss.lpips_weight", "weight of the LPIPS perceptual loss (needs the torchvision backbone file; nothing is "
            "downloaded)", Range(0.0, 10.0, integer=False), node="lpips_weight", node_optional=True, step=0.01),
    Setting("loss.lpips_net", "LPIPS backbone", choices=tuple(sorted(LPIPS_BACKBONES)), node="lpips_net", node_optional=True),
    Setting("loss.adv_weight", "PatchGAN hinge loss weight (0 = off): sharper detail, slower steps",
            Range(0.0, 10.0, integer=False), node="adversarial_weight", step=0.01),
    Setting("loss.adv_start", "step at which the discriminator starts", Range(0, 1_000_000), node="adversarial_start"),
    Setting("loss.disc_channels", "PatchGAN width (32 is enough at 64 px and half the cost)", Range(4, 512)),
    Setting("loss.latent_adv_weight", "latent style adversary (Fader): push style out of z so the condition carries it "
            "(0 = off)", _WEIGHT),
    Setting("loss.style_cls_weight", "style classification of latents decoded under other labels (StarGAN-style; "
            "0 = off)", _WEIGHT),
    Setting("loss.cycle_weight", "cycle consistency of those decodes (StarGAN-style): a restyle keeps the content "
            "(0 = off)", _WEIGHT),
    Setting("loss.swap_adv_weight", "the PatchGAN judges those decodes too, at this share of its weight (StarGAN's "
            "adversarial loss on translated images): restyles that look like real drawings (0 = off)",
            Range(0.0, 10.0, integer=False)),
    Setting("augment", "training augmentation: mirror images (flip), move them by up to 1/16 of their size (shift), "
            "or both: less overfitting on small sets", choices=AUGMENT_CHOICES),
    Setting("label_dropout", "share of labels dropped to null per batch (teaches the unconditional decoder)", "fraction"),
    Setting("val_fraction", "share of images held out for validation (by a hash of the path)", "fraction"),
    Setting("seed", "seed of the initial weights and of the batch order", "seed"),
    Setting("checkpoint_every", "steps between checkpoints", "steps"),
    Setting("sample_every", "steps between sample grids", "steps"),
    Setting("workers", "DataLoader workers for decoding", Range(0, 64)),
    Setting("max_minutes", "stop and save after this much time (0 = no limit)", "minutes"),
)


def setting(path: str) -> Setting:
    return next(s for s in SETTINGS if s.path == path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per setting, default, type, range and choices from the declaration."""
    for s in SETTINGS:
        kwargs: dict[str, Any] = {"default": s.default, "dest": s.path.replace(".", "__"),
                                  "help": f"{s.help} (default {s.default})"}
        if s.choices is not None:
            kwargs.update(choices=list(s.choices), type=type(s.default))
        elif isinstance(s.default, (int, float)) and not isinstance(s.default, bool):
            kwargs.update(type=arg_type(s.bounds), metavar=s.path.rpartition(".")[2].upper())
        parser.add_argument(s.option, **kwargs)


def values_from_args(a: argparse.Namespace) -> dict[str, Any]:
    return {s.path: getattr(a, s.path.replace(".", "__")) for s in SETTINGS}


def train_config(values: dict[str, Any], **train: Any) -> TrainConfig:
    """A TrainConfig from {setting path: value} (missing ones keep their defaults) and plain
    TrainConfig fields (data, out, conditions, ...). Every value is checked against its setting."""
    unknown = set(values) - {s.path for s in SETTINGS}
    if unknown:
        raise ValueError(f"unknown training setting(s) {sorted(unknown)}")
    parts: dict[str, dict[str, Any]] = {"": dict(train), "loss": {}, "model": {}}
    for s in SETTINGS:
        if s.path not in values:
            continue
        v = values[s.path]
        if s.choices is not None and v not in s.choices:
            raise ValueError(f"{s.option[2:]} must be one of {', '.join(map(str, s.choices))}, got {v!r}")
        if s.bounds is not None:
            s.bounds.check(v, s.option[2:])
        head, _, name = s.path.rpartition(".")
        parts[head][name] = v
    return TrainConfig(**parts[""], model=ModelConfig(**parts["model"]), loss=LossConfig(**parts["loss"]))


def node_widgets() -> tuple[dict[str, tuple], dict[str, tuple]]:
    """(required, optional) Train node widgets: name -> (type or choices, options)."""
    required: dict[str, tuple] = {}
    optional: dict[str, tuple] = {}
    for s in SETTINGS:
        if s.node is None:
            continue
        default = s.default if s.node_default is None else s.node_default
        opts: dict[str, Any] = {"default": default, "tooltip": s.help[0].upper() + s.help[1:] + "."}
        if s.choices is not None:
            spec: tuple = ([str(c) for c in s.choices], {**opts, "default": str(default)})
        else:
            r = s.bounds
            integer = isinstance(s.default, int)
            opts.update(min=int(r.lo) if integer else r.lo, max=int(r.hi) if integer else r.hi,
                        step=s.step or (1 if integer else 0.01))
            if not integer and s.step and s.step < 0.01:
                opts["round"] = s.step / 10
            spec = ("INT" if integer else "FLOAT", opts)
        (optional if s.node_optional else required)[s.node] = spec
    return required, optional


def values_from_widgets(widgets: dict[str, Any]) -> dict[str, Any]:
    """{setting path: value} from the Train node's widget values (choices come back as strings)."""
    out = {}
    for s in SETTINGS:
        if s.node is not None and s.node in widgets:
            v = widgets[s.node]
            out[s.path] = type(s.default)(v) if s.choices is not None else v
    return out
