"""Image-quality figures: PSNR, SSIM and sharpness relative to real images (1.0 = as sharp)."""
from __future__ import annotations

import functools

import numpy as np
import torch

from .images import to_uint8


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean PSNR in dB over a batch of 0..1 images."""
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1).clamp(min=1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())


SSIM_WINDOW, SSIM_SIGMA = 11, 1.5


@functools.lru_cache(maxsize=16)
def gaussian_blur_matrix(n: int, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """[n, n] matrix G with G @ v = v blurred by a normalised 1-D Gaussian, reflect-padded ('same').

    SSIM blurs five maps per call. As depthwise 11-tap convolutions (kornia's) that took 85 ms per
    64 images of 64 px forward and backward on a CPU, more than any layer of the VAE; G @ t @ G.T
    is two small dense matmuls each way (33 ms) with the same numbers, the reflection folded into G."""
    half = window // 2
    if n <= half:
        raise ValueError(f"SSIM needs images larger than {half} px per side, got {n}")
    taps = torch.exp(-(torch.arange(-half, half + 1, dtype=torch.float64)) ** 2 / (2 * sigma**2))
    src = (torch.arange(n)[:, None] + torch.arange(-half, half + 1)[None, :]).abs()
    src = torch.where(src > n - 1, 2 * (n - 1) - src, src)  # reflect: -1 -> 1, n -> n - 2
    g = torch.zeros(n, n, dtype=torch.float64).scatter_add_(1, src, (taps / taps.sum()).expand(n, -1).contiguous())
    return g.float()


def ssim_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (Wang 2004: 11x11 Gaussian window, sigma 1.5, reflect border, K1 0.01, K2 0.03) per
    image of two [B, C, H, W] batches in 0..1, shape [B]; differentiable. In fp32 even under
    autocast: the local variances are differences of nearly equal numbers."""
    h, w = x.shape[-2:]
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, y = x.float(), y.float()
        gh, gw = gaussian_blur_matrix(h).to(x.device), gaussian_blur_matrix(w).to(x.device)
        mu_x, mu_y, xx, yy, xy = gh @ torch.stack([x, y, x * x, y * y, x * y]) @ gw.T
        c1, c2 = 0.01**2, 0.03**2
        num = (2 * mu_x * mu_y + c1) * (2 * (xy - mu_x * mu_y) + c2)
        den = (mu_x**2 + mu_y**2 + c1) * ((xx - mu_x**2) + (yy - mu_y**2) + c2)
        return (num / (den + 1e-12)).flatten(1).mean(1)


def ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean SSIM over a batch of 0..1 images."""
    return float(ssim_per_image(x, y).mean())


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
