"""The conditional VAE: a convolutional encoder/decoder around a global latent vector.

Conditions enter the encoder at its bottleneck and modulate every decoder level (FiLM), so the
decoder can render one latent in any style. Images are [B, 3, H, W] floats in 0..1.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .conditions import (
    CONTROL_WIDTH, Cond, CondSpec, ConditionError, control_weights, describe_condition, is_cond, make_condition,
    repeat_condition,
)
from .limits import check
from .prior import PRIOR_CHOICES

RECON_LOSSES = ("mse", "l1", "bce", "gaussian")


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + eps * sigma: a draw of q(z | x) from the standard-normal noise `eps`."""
    return mu + eps * torch.exp(0.5 * logvar)


# Decode-and-encode passes after sampling or restyling (CVAE.refine), each moving the latent
# REFINE_STEP of the way to its re-encoding (a damped fixed-point iteration). Measured in `cvae
# bench samples` on the bundled model (BENCHMARKS.md): full steps (1.0) overshoot and level off
# after two passes (restyle +0.044, samples FID 14.8); 10 passes of 0.3 restyle at +0.048, sharper,
# with samples at FID 13.0; smaller steps or more passes gain nothing more.
REFINE_DEFAULT = 10
REFINE_STEP = 0.3

# Sizes a model may have: beyond these a CPU or a GPU only runs out of memory (a latent of 2^31
# dims would ask for terabytes), so a checkpoint's header that claims them is refused first.
_SIZES = {"resolution": (32, 256), "latent_dim": (1, 4096), "base_channels": (1, 1024), "max_channels": (1, 4096),
          "encoder_blocks": (0, 16), "decoder_blocks": (0, 16), "embed_dim": (1, 1024)}


@dataclass
class ModelConfig:
    resolution: int = 64
    latent_dim: int = 128
    base_channels: int = 32
    max_channels: int = 256
    # Residual blocks per level, except at the finest level where they cost most of a CPU step
    # (measured: 112 -> 165 images/s at 64 px). The decoder carries the capacity.
    encoder_blocks: int = 0
    decoder_blocks: int = 1
    embed_dim: int = 32
    conditions: dict[str, list[str]] = field(default_factory=dict)
    # Continuous controls: name -> [lo, hi], the range of the numeric column in training.
    controls: dict[str, list[float]] = field(default_factory=dict)
    # The reconstruction likelihood is part of the model: "gaussian" learns its variance
    # (a sigma-VAE), which the ELBO and anomaly scores need.
    recon: str = "gaussian"

    def __post_init__(self) -> None:
        for name, (lo, hi) in _SIZES.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                what = "a power of two" if name == "resolution" else "a whole number"
                raise ValueError(f"{name} must be {what} from {lo} to {hi}, got {v!r}")
        r = self.resolution
        if r & (r - 1):
            raise ValueError(f"resolution must be a power of two from 32 to 256, got {r}")
        if self.recon not in RECON_LOSSES:
            raise ValueError(f"recon must be one of {RECON_LOSSES}, got {self.recon!r}")
        if not isinstance(self.conditions, dict):
            raise ValueError(f"conditions must map factor names to label lists, got {type(self.conditions).__name__}")
        for factor, labels in self.conditions.items():
            if not isinstance(factor, str) or not isinstance(labels, (list, tuple)) or not 1 <= len(labels) <= 100_000 \
                    or not all(isinstance(x, str) for x in labels) or len(set(labels)) != len(labels):
                raise ValueError(f"condition {factor!r}: labels must be a list of 1 to 100000 distinct names")
        self.conditions = {k: list(v) for k, v in self.conditions.items()}
        if not isinstance(self.controls, dict):
            raise ValueError(f"controls must map names to [lo, hi], got {type(self.controls).__name__}")
        for name, span in self.controls.items():
            ok = isinstance(span, (list, tuple)) and len(span) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in span)
            if not isinstance(name, str) or not ok or not span[0] < span[1]:
                raise ValueError(f"control {name!r}: its range must be two finite numbers lo < hi, got {span!r}")
            if name in self.conditions:
                raise ValueError(f"{name!r} is both a condition factor and a control")
        self.controls = {k: [float(v[0]), float(v[1])] for k, v in self.controls.items()}

    @property
    def channels(self) -> list[int]:
        """Channels after each stride-2 level, from resolution/2 down to 4x4."""
        levels = int(math.log2(self.resolution // 4))
        return [min(self.base_channels * 2**i, self.max_channels) for i in range(levels)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


class ResBlock(nn.Module):
    def __init__(self, ch: int, cond_dim: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        # FiLM: the condition scales and shifts features; zero-initialised so training starts
        # from the unconditional block.
        self.film = nn.Linear(cond_dim, 2 * ch) if cond_dim else None
        if self.film is not None:
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(x))
        if self.film is not None and c is not None:
            scale, shift = self.film(c)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        return x + self.conv2(F.silu(h))


class ConditionEmbedding(nn.Module):
    """One embedding table per factor (last row: null); weights mix rows linearly."""

    def __init__(self, conditions: dict[str, list[str]], dim: int, controls: dict[str, list[float]] | None = None):
        super().__init__()
        rows = {f: len(labels) + 1 for f, labels in conditions.items()} | {c: CONTROL_WIDTH for c in controls or {}}
        self.factors = list(rows)
        self.tables = nn.ParameterDict({f: nn.Parameter(torch.randn(n, dim) * 0.5) for f, n in rows.items()})
        self.out_dim = dim * len(self.factors)

    def forward(self, cond: Cond) -> torch.Tensor:
        return torch.cat([cond[f].to(self.tables[f].dtype) @ self.tables[f] for f in self.factors], dim=1)


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig, cond_dim: int):
        super().__init__()
        chs = cfg.channels
        layers: list[nn.Module] = []
        prev = 3
        for i, ch in enumerate(chs):
            layers.append(nn.Conv2d(prev, ch, 4, stride=2, padding=1))
            layers += [ResBlock(ch) for _ in range(cfg.encoder_blocks if i > 0 else 0)]
            prev = ch
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev * 16 + cond_dim, 2 * cfg.latent_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.silu(self.body(x * 2 - 1)).flatten(1)
        mu, logvar = self.head(torch.cat([h, c], dim=1)).chunk(2, dim=1)
        return mu, logvar.clamp(-30, 20)


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig, cond_dim: int):
        super().__init__()
        chs = list(reversed(cfg.channels))
        self.top = chs[0]
        self.fc = nn.Linear(cfg.latent_dim + cond_dim, chs[0] * 16)
        self.blocks = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, ch in enumerate(chs):
            finest = i == len(chs) - 1
            n_blocks = 0 if finest else cfg.decoder_blocks
            self.blocks.append(nn.ModuleList([ResBlock(ch, cond_dim) for _ in range(n_blocks)]))
            out = 3 if finest else chs[i + 1]
            self.ups.append(nn.ConvTranspose2d(ch, out, 4, stride=2, padding=1))

    @property
    def last_layer(self) -> torch.Tensor:
        """The weight the adaptive adversarial weight measures gradients at."""
        return self.ups[-1].weight

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, c], dim=1)).view(z.shape[0], self.top, 4, 4)
        for blocks, up in zip(self.blocks, self.ups):
            for block in blocks:
                h = block(h, c)
            h = up(F.silu(h))
        return h  # logits


class CVAE(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = ConditionEmbedding(config.conditions, config.embed_dim, config.controls)
        self.encoder = Encoder(config, self.embed.out_dim)
        self.decoder = Decoder(config, self.embed.out_dim)
        # log sigma of the Gaussian likelihood; trained only when recon == "gaussian".
        self.log_sigma = nn.Parameter(torch.zeros(()), requires_grad=config.recon == "gaussian")
        # p(z | c) fitted to the encodings (prior.py); None: the standard normal of training.
        self.add_module("prior", None)

    # -- the Python API ------------------------------------------------------------------------
    @property
    def vocab(self) -> dict[str, list[str]]:
        return self.config.conditions

    @property
    def controls(self) -> dict[str, list[float]]:
        """Continuous controls: name -> [lo, hi] seen in training."""
        return self.config.controls

    def set_control(self, cond: Cond, name: str, amount: float) -> tuple[Cond, float]:
        """`cond` with control `name` (empty: the model's only control) at `amount` of its trained
        range (0: the lowest value, 1: the highest), in every row; and that value in its units."""
        if not self.controls:
            raise ConditionError("this model has no controls; train it with --control NAME (a numeric metadata column)")
        name = name.strip() or (next(iter(self.controls)) if len(self.controls) == 1 else "")
        if name not in self.controls:
            raise ConditionError(f"control {name!r}: this model's controls are {', '.join(self.controls)}")
        lo, hi = self.controls[name]
        value = lo + float(amount) * (hi - lo)
        cond = self.condition(cond, 1) if not cond else self.with_controls(cond)
        rows = max(w.shape[0] for w in cond.values())
        w = control_weights(torch.full((rows,), value), lo, hi).to(self.device)
        return {**cond, name: w}, value

    def describe(self, cond: Cond, row: int = 0) -> str:
        """A spec of one condition row ('style=noto;brightness=0.9') that condition() reads back."""
        return describe_condition(self.vocab, cond, row, self.controls)

    @property
    def device(self) -> torch.device:
        return self.log_sigma.device

    @property
    def resolution(self) -> int:
        return self.config.resolution

    def condition(self, spec: CondSpec | Cond = None, batch: int = 1) -> Cond:
        """A condition for this model from 'style=noto', 'style=noto:0.5,openmoji:0.5', a dict, or
        a Cond already made (checked against this model's factors, on its device, `batch` rows)."""
        if not is_cond(spec):
            return make_condition(self.vocab, spec, batch, self.device, self.controls)
        cond: Cond = spec  # type: ignore[assignment]
        if set(cond) - set(self.controls) != set(self.vocab) or any(
                cond[f].shape[-1] != self._width(f) for f in cond if f in self.vocab or f in self.controls):
            raise ConditionError(f"the condition has factors {sorted(cond)} with other labels than this model's "
                                 f"{dict(self.vocab)}{self._controls_text()}; make it from this model")
        return repeat_condition(self.with_controls({k: v.to(self.device) for k, v in cond.items()}), batch)

    def _width(self, factor: str) -> int:
        return CONTROL_WIDTH if factor in self.controls else len(self.vocab[factor]) + 1

    def _controls_text(self) -> str:
        return f" and controls {sorted(self.controls)}" if self.controls else ""

    def with_controls(self, cond: Cond) -> Cond:
        """`cond` with the controls it leaves out set to null (unknown), so code that knows only the
        labels (a prior fit, a restyle by sub-folder) works on a model with controls."""
        missing = [c for c in self.controls if c not in cond]
        if not missing:
            return cond
        rows = max((w.shape[0] for w in cond.values()), default=1)
        null = torch.tensor([0.0, 0.0, 1.0], device=self.device).expand(rows, -1)
        return {**cond, **{c: null for c in missing}}

    def _cond_vec(self, cond: Cond | None, batch: int) -> torch.Tensor:
        if cond is None:
            cond = self.condition(None, batch)
        cond = repeat_condition(self.with_controls({k: v.to(self.device) for k, v in cond.items()}), batch)
        if not self.embed.factors:
            return torch.zeros(batch, 0, device=self.device)
        return self.embed(cond)

    def encode(self, images: torch.Tensor, cond: Cond | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z | x, c)."""
        self._check_images(images)
        return self.encoder(images, self._cond_vec(cond, images.shape[0]))

    def decode_logits(self, z: torch.Tensor, cond: Cond | None = None) -> torch.Tensor:
        return self.decoder(z, self._cond_vec(cond, z.shape[0]))

    def decode(self, z: torch.Tensor, cond: Cond | None = None) -> torch.Tensor:
        """Images in 0..1 from latents [B, latent_dim]."""
        return torch.sigmoid(self.decode_logits(z, cond))

    def forward(
        self, images: torch.Tensor, cond: Cond | None = None, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction logits, mu, logvar, for z = mu + eps * sigma (eps ~ N(0, I) if not given)."""
        c = self._cond_vec(cond, images.shape[0])
        mu, logvar = self.encoder(images, c)
        eps = torch.randn_like(mu) if eps is None else eps.to(mu)
        return self.decoder(reparameterize(mu, logvar, eps), c), mu, logvar

    def prior_sample(self, n: int, seed: int, temperature: float = 1.0, cond: Cond | None = None,
                     prior: str = "learned") -> torch.Tensor:
        """n latents from the learned prior p(z | c) (prior="learned", where the model has one) or
        from N(0, T^2 I) (prior="normal"), drawn on the CPU so a seed gives the same latents on
        every device. A one-row `cond` applies to every sample; null or None is unconditional."""
        if prior not in PRIOR_CHOICES:
            raise ValueError(f"prior must be one of {', '.join(PRIOR_CHOICES)}, got {prior!r}")
        g = torch.Generator().manual_seed(int(seed))
        if prior == "learned" and self.prior is not None:
            return self.prior.sample(n, g, temperature, cond).to(self.device)
        return (torch.randn(n, self.config.latent_dim, generator=g) * temperature).to(self.device)

    @property
    def has_learned_prior(self) -> bool:
        return self.prior is not None

    @torch.inference_mode()
    @torch.no_grad()
    def refine(self, z: torch.Tensor, cond: Cond | None, passes: int = REFINE_DEFAULT) -> torch.Tensor:
        """Latents after `passes` rounds of decoding under `cond` and encoding the drawing again,
        each moving a latent REFINE_STEP of the way to its re-encoding: this pulls it onto what
        the model draws for that condition (its autoencoder's fixed points). A full step
        overshoots: the damped iteration (Krasnoselskii-Mann) has the same fixed points and stops
        at one nearer where the latent started, which keeps more of a restyled image's drawing.
        Measured in `cvae bench samples`: prior samples' FID 24 -> 13, restyles closer to the
        real target drawing."""
        check("refine", passes)
        for _ in range(passes):
            z = torch.lerp(z, self.encode(self.decode(z, cond), cond)[0], REFINE_STEP)
        return z

    @torch.no_grad()
    def sample(self, n: int, cond: Cond | None = None, seed: int = 0, temperature: float = 1.0,
               prior: str = "learned", refine: int = REFINE_DEFAULT) -> torch.Tensor:
        z = self.refine(self.prior_sample(n, seed, temperature, cond, prior), cond, refine)
        return self.decode(z, cond)

    def _check_images(self, images: torch.Tensor) -> None:
        r = self.config.resolution
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2:] != (r, r):
            raise ValueError(f"expected images [B, 3, {r}, {r}], got {list(images.shape)}; resize with images.fit()")
