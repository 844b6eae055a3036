"""Image I/O and layout: OpenCV decodes and resizes where it is installed, Pillow otherwise;
everything else is torch.

Arrays on disk-side are uint8 HxWx3 RGB; tensors are float [B, 3, H, W] in 0..1 (ComfyUI's IMAGE
is [B, H, W, 3]; the nodes convert at their edge).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ._cv2 import cv2
from .files import atomic_write

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


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
    try:
        if len(c) != 6:
            raise ValueError
        return tuple(int(c[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    except ValueError:
        raise ValueError(f"background colour {color!r}: use a name (white, black, grey) or #rrggbb") from None


def read_image(path: str | Path, background: str | tuple[int, int, int] = "white") -> np.ndarray:
    """Any PNG/JPEG/WebP/TIFF/BMP/GIF (grey, 16-bit, alpha) -> uint8 HxWx3 RGB, alpha over
    `background`, turned upright by its EXIF orientation (a phone photo's rotation)."""
    path = Path(path)
    bg = parse_color(background)
    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        raise ImageReadError(f"{path}: cannot read ({err.strerror})") from None
    img = _decode_cv2(buf) if cv2 is not None and path.suffix.lower() != ".gif" else None
    if img is None:
        img = _decode_pillow(buf)
    if img is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt or unsupported format)")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img.astype(np.float32) * (255.0 if img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        img = (img[:, :, :3].astype(np.float32) * alpha + np.array(bg, np.float32) * (1 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(_upright(img, _orientation(buf)))


def _decode_cv2(buf: np.ndarray) -> np.ndarray | None:
    """RGB(A) or grey, any depth, as stored (OpenCV ignores the EXIF orientation here)."""
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None or img.ndim == 2:
        return img
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def _decode_pillow(buf: np.ndarray) -> np.ndarray | None:
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(buf.tobytes())) as im:
            im.seek(0)  # a GIF's first frame
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(im).astype(np.uint16 if im.mode.startswith("I;16") else np.int64).clip(0, 65535).astype(np.uint16)
            alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            return np.asarray(im.convert("RGBA" if alpha else "RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def _orientation(buf: np.ndarray) -> int:
    """The EXIF orientation tag (1 = upright) from the file's header, without decoding pixels."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(buf.tobytes())) as im:
            return int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a missing or broken EXIF block means upright
        return 1


def _upright(img: np.ndarray, orientation: int) -> np.ndarray:
    """The EXIF orientation's transform (as Pillow's ImageOps.exif_transpose does it)."""
    return {
        2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).transpose(1, 0, 2), 8: lambda a: np.rot90(a, 1),
    }.get(orientation, lambda a: a)(img)


def resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 HxWx3 to width x height: area averaging when shrinking, bicubic when enlarging."""
    h, w = img.shape[:2]
    shrink = width * height < w * h
    if cv2 is not None:
        return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((width, height), Image.Resampling.BOX if shrink else Image.Resampling.BICUBIC))


def resize_center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Scale the short side to `size` and centre-crop a square."""
    h, w = img.shape[:2]
    s = size / min(h, w)
    if (h, w) != (size, size):
        nh, nw = max(size, round(h * s)), max(size, round(w * s))
        img = resize(img, nw, nh)
        top, left = (nh - size) // 2, (nw - size) // 2
        img = img[top : top + size, left : left + size]
    return np.ascontiguousarray(img)


def load_image(path: str | Path, size: int, background: str | tuple[int, int, int] = "white") -> np.ndarray:
    return resize_center_crop(read_image(path, background), size)


def extensionless_files(root: str | Path) -> list[tuple[str, str]]:
    """(path, why) for the files below `root` that have no extension: never read as images, so
    listed beside the unreadable ones instead of being passed over in silence."""
    root = Path(root)
    return [(str(p), "no file extension, so it is not read as an image; name it e.g. .png or .jpg")
            for p in sorted(root.rglob("*"))
            if not p.suffix and p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)]


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
