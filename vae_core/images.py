"""Image I/O and layout: OpenCV decodes and resizes, everything else is torch.

Arrays on disk-side are uint8 HxWx3 RGB; tensors are float [B, 3, H, W] in 0..1 (ComfyUI's IMAGE
is [B, H, W, 3]; the nodes convert at their edge).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from .files import atomic_write

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class ImageReadError(ValueError):
    pass


def parse_color(color: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """'white', 'black', 'grey' or '#rrggbb' -> RGB."""
    if isinstance(color, tuple):
        return color
    named = {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128), "gray": (128, 128, 128)}
    if color.lower() in named:
        return named[color.lower()]
    c = color.lstrip("#")
    if len(c) != 6:
        raise ValueError(f"background colour {color!r}: use a name (white, black, grey) or #rrggbb")
    return tuple(int(c[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


def read_image(path: str | Path, background: str | tuple[int, int, int] = "white") -> np.ndarray:
    """Any PNG/JPEG/WebP/TIFF (grey, 16-bit, alpha) -> uint8 HxWx3 RGB, alpha over `background`."""
    path = Path(path)
    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        raise ImageReadError(f"{path}: cannot read ({err.strerror})") from None
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt or unsupported format)")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img.astype(np.float32) * (255.0 if img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        bg = np.array(parse_color(background)[::-1], dtype=np.float32)  # BGR like img
        img = (img[:, :, :3].astype(np.float32) * alpha + bg * (1 - alpha)).round().astype(np.uint8)
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def resize_center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Scale the short side to `size` (INTER_AREA when shrinking) and centre-crop a square."""
    h, w = img.shape[:2]
    s = size / min(h, w)
    if (h, w) != (size, size):
        nh, nw = max(size, round(h * s)), max(size, round(w * s))
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        top, left = (nh - size) // 2, (nw - size) // 2
        img = img[top : top + size, left : left + size]
    return np.ascontiguousarray(img)


def load_image(path: str | Path, size: int, background: str | tuple[int, int, int] = "white") -> np.ndarray:
    return resize_center_crop(read_image(path, background), size)


def list_images(root: str | Path) -> list[Path]:
    """Every image below `root`, recursively, sorted by relative path (hidden files skipped)."""
    root = Path(root)
    return sorted(
        p for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def to_tensor(arr: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [H,W,3] or [B,H,W,3] -> float [B,3,H,W] in 0..1."""
    t = torch.as_tensor(arr)
    if t.dim() == 3:
        t = t[None]
    return t.permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float [B,3,H,W] 0..1 -> uint8 [B,H,W,3], C-contiguous (what encoders and OpenCV take
    without another copy)."""
    # Clamping into a channels-last buffer is the one float copy; the rest is in place, and the
    # permute to [B,H,W,3] is then free. Half the time of converting first and copying after.
    out = torch.empty_like(images, memory_format=torch.channels_last)
    torch.clamp(images.detach(), 0, 1, out=out)
    return out.mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def fit(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a float batch [B,3,H,W] to size x size (short side, centre crop), antialiased."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    out = F.interpolate(images, size=(nh, nw), mode="bilinear", antialias=s < 1, align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    return out[..., top : top + size, left : left + size].clamp(0, 1)


def save_png(path: str | Path, image: np.ndarray | torch.Tensor, text: dict[str, str] | None = None) -> Path:
    """Write one RGB image (uint8 HxWx3 or float [3,H,W]) as PNG, with optional tEXt chunks,
    atomically (a failed write leaves what was there before)."""
    from PIL import Image, PngImagePlugin  # Pillow only for PNG text chunks; OpenCV cannot write them

    if isinstance(image, torch.Tensor):
        image = to_uint8(image[None] if image.dim() == 3 else image)[0]
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for k, v in text.items():
            info.add_text(k, v)
    return atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG", pnginfo=info, compress_level=4))


def grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """A [3,H,W] grid of a [B,3,h,w] batch (torchvision's make_grid), white padding."""
    from ._torchvision import import_torchvision

    return import_torchvision().utils.make_grid(images.clamp(0, 1).cpu(), nrow=nrow, padding=padding, pad_value=1.0)
