"""Image-quality figures: PSNR, SSIM and sharpness relative to real images (1.0 = as sharp)."""
from __future__ import annotations

import numpy as np
import torch

from .images import to_uint8


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean PSNR in dB over a batch of 0..1 images."""
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1).clamp(min=1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())


def ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    import kornia

    return float(kornia.metrics.ssim(x.float(), y.float(), window_size=11).mean())


def laplacian_variance(images: torch.Tensor) -> np.ndarray:
    """Variance of the grey-level Laplacian per image (the usual focus measure): OpenCV's
    cvtColor(RGB2GRAY) + Laplacian(ksize=1, reflect-101 border), in numpy (within 0.03% of it)."""
    grey = np.round(to_uint8(images).astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    p = np.pad(grey, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    lap = p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:] - 4 * p[:, 1:-1, 1:-1]
    return lap.reshape(len(lap), -1).var(1)


def high_frequency_energy(images: torch.Tensor, cutoff: float = 0.25) -> np.ndarray:
    """Fraction of spectral energy above `cutoff` x Nyquist, per image (grey level)."""
    grey = images.float().mean(1)
    spec = torch.fft.fftshift(torch.fft.fft2(grey - grey.mean((-2, -1), keepdim=True)), dim=(-2, -1)).abs().pow(2)
    h, w = grey.shape[-2:]
    fy = torch.linspace(-1, 1, h)[:, None]
    fx = torch.linspace(-1, 1, w)[None, :]
    mask = (fy.pow(2) + fx.pow(2)).sqrt() > cutoff
    return (spec[:, mask].sum(1) / spec.flatten(1).sum(1).clamp(min=1e-12)).numpy()


def quality_report(recon: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """PSNR, SSIM and the two sharpness ratios of reconstructions against their originals."""
    return {
        "psnr": psnr(recon, real),
        "ssim": ssim(recon, real),
        "sharpness_ratio": float(laplacian_variance(recon).mean() / max(laplacian_variance(real).mean(), 1e-12)),
        "hf_energy_ratio": float(high_frequency_energy(recon).mean() / max(high_frequency_energy(real).mean(), 1e-12)),
    }
