"""Every training loss in one module, in the spirit of taming-transformers' vqperceptual.py.

Units: per-image sums over the D = 3*H*W pixel values, averaged over the batch, so that the
reconstruction term is a real negative log-likelihood and beta = 1 is the ELBO. Mean-type losses
(SSIM, LPIPS) are scaled by D to live on the same scale, as taming does.
"""
from __future__ import annotations

import math
import pickle
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from . import distributed
from .metrics import ssim_per_image

LPIPS_BACKBONES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


@dataclass
class LossConfig:
    beta: float = 1.0
    kl_warmup_steps: int = 1000
    free_bits: float = 0.0  # nats per latent dimension (batch-averaged), below which KL is free
    ssim_weight: float = 0.0
    ms_ssim_weight: float = 0.0
    lpips_weight: float = 0.0
    lpips_net: str = "alex"
    lpips_weights: str | None = None  # a torchvision backbone file; default $TORCH_HOME/hub/checkpoints
    lpips_random_backbone: bool = False  # wiring tests and timing only: no perceptual meaning
    adv_weight: float = 0.0
    adv_start: int = 2000
    disc_channels: int = 64
    disc_layers: int = 3
    disc_lr: float = 2e-4
    # Latent style adversary (Fader networks, Lample et al. 2017): a classifier learns to read
    # each condition from the encoder's mean, and the encoder is pushed to make its guess uniform,
    # so z holds content and the condition alone decides style. Nats per image, like the KL.
    latent_adv_weight: float = 0.0
    latent_adv_lr: float = 1e-3
    # Style classification of swapped decodes (StarGAN's domain loss, Choi et al. 2018): a
    # classifier learns each label from real images, and the decoder, given z and another label,
    # must draw something the classifier reads as that label. Unpaired. Nats per image.
    style_cls_weight: float = 0.0
    # Cycle consistency of swapped decodes (StarGAN's reconstruction loss): the drawing made under
    # another label, encoded under that label and decoded under the source label again, must give
    # the source image back (L1, per-image sum). It keeps the content through a restyle, so the
    # classifier term cannot swap the emoji for a typical drawing of the target style. Unpaired.
    cycle_weight: float = 0.0
    # The PatchGAN judges the swapped decodes too, at this share of its weight (StarGAN's
    # adversarial loss on translated images, Choi et al. 2018): without it only reconstructions
    # are judged, and a latent decoded under another label may come out as a fragment, since
    # nothing asks it to look like a real drawing. Needs adv_weight > 0. Unpaired.
    swap_adv_weight: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LossConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# -- reconstruction and KL ---------------------------------------------------------------------
def reconstruction_nll(kind: str, logits: torch.Tensor, target: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Per-image negative log-likelihood (or its stand-in for mse/l1), shape [B]."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)
    x = torch.sigmoid(logits)
    if kind == "mse":
        return (x - target).pow(2).flatten(1).sum(1)
    if kind == "l1":
        return (x - target).abs().flatten(1).sum(1)
    if kind == "gaussian":
        log_sigma = log_sigma.clamp(min=math.log(1e-3))
        d = target[0].numel()
        sq = (x - target).pow(2).flatten(1).sum(1)
        return sq / (2 * torch.exp(2 * log_sigma)) + d * (log_sigma + 0.5 * math.log(2 * math.pi))
    raise ValueError(f"unknown reconstruction loss {kind!r}")


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per latent dimension, shape [B, Z]."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_term(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Batch-mean KL per image with free bits: dimensions under `free_bits` nats cost nothing."""
    per_dim = kl_divergence(mu, logvar).mean(0)
    if free_bits > 0:
        per_dim = per_dim.clamp(min=free_bits)
    return per_dim.sum()


def warmup(cfg: LossConfig, step: int) -> float:
    """0 -> 1 over the KL warm-up; the style terms ramp with it, so early training only reconstructs."""
    if cfg.kl_warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / cfg.kl_warmup_steps)


def kl_weight(cfg: LossConfig, step: int) -> float:
    return cfg.beta * warmup(cfg, step)


# -- perceptual ----------------------------------------------------------------------------------
class LPIPSWeightsMissing(FileNotFoundError):
    pass


def lpips_backbone_path(net: str, weights: str | None = None) -> Path:
    if net not in LPIPS_BACKBONES:
        raise ValueError(f"LPIPS net must be one of {sorted(LPIPS_BACKBONES)}, got {net!r}")
    if weights:
        return Path(weights)
    return Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONES[net]


def build_lpips(net: str = "alex", weights: str | None = None, random_backbone: bool = False) -> nn.Module:
    """LPIPS with its real backbone loaded from disk, never downloaded.

    The `lpips` package ships its linear heads but fetches the torchvision backbone at
    construction, which fails offline; we build it with a random backbone and copy the real
    ImageNet weights in from the file. `random_backbone=True` is for wiring tests and timing only.
    """
    from ._torchvision import import_torchvision

    path = lpips_backbone_path(net, weights)  # checks the net name before anything is built
    state = None
    if not random_backbone:
        if not path.is_file():
            raise LPIPSWeightsMissing(
                f"LPIPS ({net}) needs the torchvision backbone weights {LPIPS_BACKBONES[net]}, not found at {path}. "
                f"Copy that file there (or pass its path with --lpips-weights), or train without LPIPS: "
                f"--ssim-weight / --ms-ssim-weight are perceptual and need no weights, and --adv-weight adds sharpness."
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
            raise ValueError(f"{path}: not the torchvision {net} weights LPIPS needs ({LPIPS_BACKBONES[net]}): {err}") from None
    tv = import_torchvision()
    import lpips

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    if state is not None:
        backbone = {"alex": tv.models.alexnet, "vgg": tv.models.vgg16, "squeeze": tv.models.squeezenet1_1}[net]()
        try:
            backbone.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"{path}: not the torchvision {net} weights LPIPS needs ({LPIPS_BACKBONES[net]}): {err}") from None
        for name, part in model.net.named_children():
            if name.startswith("slice"):
                for idx, layer in part.named_children():
                    layer.load_state_dict(backbone.features[int(idx)].state_dict())
    model.requires_grad_(False)
    return model.eval()


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 - SSIM per image (11x11 Gaussian window), shape [B]."""
    return 1.0 - ssim_per_image(x, y)


class MSSSIMLoss(nn.Module):
    """1 - MS-SSIM per image (kornia's Gaussian multi-scale form, without its L1 mix).

    Kornia's loss is alpha * (1 - MS-SSIM) + (1 - alpha) * Gaussian-L1, so alpha = 1 is pure
    MS-SSIM (alpha = 0 would be a blurred L1). Its scales are Gaussians at full resolution, not a
    dyadic pyramid, so it has no minimum image size (32 px works).
    """

    def __init__(self) -> None:
        super().__init__()
        import kornia

        self.inner = kornia.losses.MS_SSIMLoss(alpha=1.0, compensation=1.0, reduction="none")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):  # variances: fp32, as SSIM
            return self.inner(x.float(), y.float()).flatten(1).mean(1)


# -- adversarial ---------------------------------------------------------------------------------
class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix / taming NLayerDiscriminator): one real/fake logit per patch."""

    def __init__(self, channels: int = 64, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = channels
        for i in range(1, layers + 1):
            nxt = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            mods += [nn.Conv2d(ch, nxt, 4, stride, 1, bias=False), nn.BatchNorm2d(nxt), nn.LeakyReLU(0.2, True)]
            ch = nxt
        mods.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1).float()  # fp32 logits under autocast: the hinge sums stay exact


def label_cross_entropy(logits: dict[str, torch.Tensor], cond: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed over factors: cross-entropy of each head's logits against the rows' single labels."""
    total = next(iter(logits.values())).new_zeros(()) if logits else torch.zeros(())
    for f, y in LatentCritic.targets(cond).items():
        if f in logits and (y >= 0).any():
            total = total + F.cross_entropy(logits[f][y >= 0], y[y >= 0])
    return total


class LatentCritic(nn.Module):
    """One small MLP per condition factor that guesses its label from a latent."""

    def __init__(self, latent_dim: int, conditions: dict[str, list[str]], hidden: int = 256):
        super().__init__()
        self.heads = nn.ModuleDict({
            f: nn.Sequential(nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                             nn.Linear(hidden, len(labels)))
            for f, labels in conditions.items() if len(labels) > 1
        })

    @staticmethod
    def targets(cond: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Label index per row (-1 where the row is null or a blend: the encoder saw no single label)."""
        out = {}
        for f, w in cond.items():
            labels = w[:, :-1]
            idx = labels.argmax(1)
            single = (labels.max(1).values > 0.999) & (w[:, -1] < 1e-6)
            out[f] = torch.where(single, idx, torch.full_like(idx, -1))
        return out

    def loss(self, z: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the true labels (what the critic minimises)."""
        return label_cross_entropy({f: head(z).float() for f, head in self.heads.items()}, cond)

    def confusion(self, z: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-image cross-entropy against the uniform guess, minus its floor log(n): zero when the
        critic cannot tell the label from z (what the encoder minimises)."""
        total = z.new_zeros(())
        for f, y in self.targets(cond).items():
            if f in self.heads and (y >= 0).any():
                logp = F.log_softmax(self.heads[f](z[y >= 0]).float(), dim=1)
                total = total + (-logp.mean(1) - math.log(logp.shape[1])).mean()
        return total


class PixelStyleClassifier(nn.Module):
    """A small conv net with one head per condition factor, on images in 0..1."""

    def __init__(self, conditions: dict[str, list[str]], width: int = 32):
        super().__init__()
        chs = [width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = []
        prev = 3
        for ch in chs:
            layers += [nn.Conv2d(prev, ch, 4, 2, 1), nn.LeakyReLU(0.2, True)]
            prev = ch
        self.body = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({f: nn.Linear(prev, len(labels)) for f, labels in conditions.items() if len(labels) > 1})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.body(x * 2 - 1).mean((2, 3))
        return {f: head(h).float() for f, head in self.heads.items()}

    def loss(self, x: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        return label_cross_entropy(self(x), cond)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_weight(nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, max_weight: float = 1e4) -> torch.Tensor:
    """||d nll / d W_last|| / ||d g_loss / d W_last||: balances the GAN gradient against the
    reconstruction gradient at the decoder's last layer (Esser et al., taming-transformers)."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, max_weight).detach()


@dataclass
class Swapped:
    """The first latents of a batch decoded under other labels (`logits`, `labels`) and, for the
    cycle term, that drawing encoded under those labels and decoded under its own again."""
    logits: torch.Tensor
    labels: dict[str, torch.Tensor]
    back_logits: torch.Tensor | None = None


class VAELoss(nn.Module):
    """The whole objective: generator side and discriminator side, each term logged on its own."""

    def __init__(self, cfg: LossConfig, recon: str, latent_dim: int = 0, conditions: dict[str, list[str]] | None = None):
        super().__init__()
        self.cfg = cfg
        self.recon = recon
        self.conditions = {f: labels for f, labels in (conditions or {}).items() if len(labels) > 1}
        self.critic = (
            LatentCritic(latent_dim, conditions) if cfg.latent_adv_weight > 0 and conditions and latent_dim else None
        )
        if self.critic is not None and not len(self.critic.heads):
            self.critic = None
        self.style_cls = (
            PixelStyleClassifier(conditions) if cfg.style_cls_weight > 0 and conditions else None
        )
        if self.style_cls is not None and not len(self.style_cls.heads):
            self.style_cls = None
        self.lpips = build_lpips(cfg.lpips_net, cfg.lpips_weights, cfg.lpips_random_backbone) if cfg.lpips_weight > 0 else None
        self.ms_ssim = MSSSIMLoss() if cfg.ms_ssim_weight > 0 else None
        self.disc = PatchDiscriminator(cfg.disc_channels, cfg.disc_layers) if cfg.adv_weight > 0 else None
        self.fake_logits: torch.Tensor | None = None  # the generator's PatchGAN pass, for the discriminator's step

    @property
    def swaps(self) -> bool:
        """Whether a step decodes latents under other labels (for the classifier, the cycle or the
        PatchGAN on swapped decodes)."""
        return self.style_cls is not None or (bool(self.conditions) and (
            self.cfg.cycle_weight > 0 or (self.cfg.swap_adv_weight > 0 and self.disc is not None)))

    def adversarial_active(self, step: int) -> bool:
        return self.disc is not None and step >= self.cfg.adv_start

    def generator(
        self, x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
        log_sigma: torch.Tensor, last_layer: torch.Tensor, step: int, cond: dict[str, torch.Tensor] | None = None,
        swapped: Swapped | None = None, disc: nn.Module | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """`swapped`: the first latents of the batch decoded under other labels, for the style
        classification, cycle and swapped-adversarial terms. `disc`: the PatchGAN as wrapped for several processes."""
        cfg = self.cfg
        d = x[0].numel()
        nll = reconstruction_nll(self.recon, logits, x, log_sigma).mean()
        logs = {"recon": float(nll.detach())}
        x_hat = torch.sigmoid(logits)
        if cfg.ssim_weight > 0:
            s = ssim_loss(x_hat, x).mean()
            nll = nll + cfg.ssim_weight * d * s
            logs["ssim"] = float(s.detach())
        if self.ms_ssim is not None:
            s = self.ms_ssim(x_hat, x).mean()
            nll = nll + cfg.ms_ssim_weight * d * s
            logs["ms_ssim"] = float(s.detach())
        if self.lpips is not None:
            p = self.lpips(x_hat, x, normalize=True).float().mean()
            nll = nll + cfg.lpips_weight * d * p
            logs["lpips"] = float(p.detach())
        kl = kl_term(mu, logvar, cfg.free_bits)
        total = nll + kl_weight(cfg, step) * kl
        logs["kl"] = float(kl_divergence(mu, logvar).detach().sum(1).mean())
        if self.critic is not None and cond is not None:
            self.critic.requires_grad_(False)
            confusion = self.critic.confusion(mu, cond)
            self.critic.requires_grad_(True)
            total = total + warmup(cfg, step) * cfg.latent_adv_weight * confusion
            logs["z_confusion"] = float(confusion.detach())
        if self.style_cls is not None and swapped is not None:
            self.style_cls.requires_grad_(False)
            cls = self.style_cls.loss(torch.sigmoid(swapped.logits), swapped.labels)
            self.style_cls.requires_grad_(True)
            total = total + warmup(cfg, step) * cfg.style_cls_weight * cls
            logs["swap_cls"] = float(cls.detach())
        if swapped is not None and swapped.back_logits is not None:
            back = torch.sigmoid(swapped.back_logits)
            cycle = (back - x[: len(back)]).abs().flatten(1).sum(1).mean()
            total = total + warmup(cfg, step) * cfg.cycle_weight * cycle
            logs["cycle"] = float(cycle.detach())
        if self.adversarial_active(step):
            assert self.disc is not None
            # One PatchGAN pass on the reconstructions serves both players: its gradient at the
            # input, taken once, drives the generator (through a surrogate whose gradient at x_hat
            # is exactly that) and the adaptive weight, and the same logits are the fake half of
            # the discriminator's loss. Before, the generator's loss went back through the PatchGAN
            # twice and the discriminator ran it on the same reconstructions again.
            # A view of the detached leaf, not the leaf: autograd.grad cannot take a leaf when module
            # backward hooks are on (the bench's FLOP counter).
            # Swapped decodes, when judged, join the same pass (and the discriminator's fake half).
            judged = x_hat
            if swapped is not None and cfg.swap_adv_weight > 0:
                judged = torch.cat([x_hat, torch.sigmoid(swapped.logits)])
            fake_in = judged.detach().requires_grad_(True).view_as(judged)
            fake = (disc or self.disc)(fake_in)
            n = len(x_hat)
            g_loss = -fake[:n].mean()
            if len(fake) > n:
                g_swap = -fake[n:].mean()
                g_loss = g_loss + cfg.swap_adv_weight * g_swap
                logs["g_adv_swap"] = float(g_swap.detach())
            (g_at_x,) = torch.autograd.grad(g_loss, fake_in, retain_graph=True)
            g_surrogate = (judged * g_at_x).sum()
            # Averaged over the processes, so each scales its share of the batch alike.
            w = distributed.mean_tensor(adaptive_weight(nll, g_surrogate, last_layer)) * cfg.adv_weight
            total = total + w * (g_surrogate - g_surrogate.detach() + g_loss.detach())
            self.fake_logits = fake
            logs["g_adv"] = float(g_loss.detach())
            logs["adv_w"] = float(w)
        logs["loss"] = float(total.detach())
        return total, logs

    def critic_step(self, mu: torch.Tensor, x: torch.Tensor, cond: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The latent critic's and the pixel style classifier's own losses (whichever are on)."""
        loss, logs = mu.new_zeros(()), {}
        if self.critic is not None:
            c = self.critic.loss(mu.detach(), cond)
            loss, logs["z_critic"] = loss + c, float(c.detach())
        if self.style_cls is not None:
            c = self.style_cls.loss(x, cond)
            loss, logs["real_cls"] = loss + c, float(c.detach())
        return loss, logs

    def discriminator(self, x: torch.Tensor, disc: nn.Module | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The PatchGAN's hinge loss on real images and on the fake logits of this step's
        generator pass (which it has to follow); `disc`: as in generator."""
        assert self.disc is not None and self.fake_logits is not None, "the generator pass comes first"
        real, fake = (disc or self.disc)(x), self.fake_logits
        self.fake_logits = None
        loss = hinge_d_loss(real, fake)
        return loss, {"d_loss": float(loss.detach()), "d_real": float(real.detach().mean()), "d_fake": float(fake.detach().mean())}
