"""A loss plot drawn with Pillow (no plotting library needed): one panel per logged series."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def loss_plot(history: list[dict], keys: list[str] | None = None, width: int = 320, height: int = 200) -> np.ndarray:
    """uint8 RGB image: each series against step, the last value labelled; symlog y for signed losses."""
    keys = keys or sorted({k for h in history for k in h if k not in ("step", "images_per_s")})
    cols = min(3, max(1, len(keys)))
    rows = max(1, -(-len(keys) // cols))
    canvas = Image.new("RGB", (cols * width, rows * height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for n, key in enumerate(keys):
        pts = [(h["step"], h[key]) for h in history if key in h and np.isfinite(h[key])]
        x0, y0 = (n % cols) * width, (n // cols) * height
        draw.text((x0 + 8, y0 + 4), key, fill=(0, 0, 0))
        draw.rectangle((x0 + 40, y0 + 24, x0 + width - 8, y0 + height - 20), outline=(200, 200, 200))
        if len(pts) < 2:
            continue
        s = np.array([p[0] for p in pts], float)
        v = np.array([p[1] for p in pts], float)
        v = np.sign(v) * np.log1p(np.abs(v))  # losses span decades and can be negative (Gaussian NLL)
        lo, hi = v.min(), v.max()
        hi = hi if hi > lo else lo + 1
        px = x0 + 40 + (s - s.min()) / max(s.max() - s.min(), 1) * (width - 50)
        py = y0 + (height - 20) - (v - lo) / (hi - lo) * (height - 46)
        draw.line(list(zip(px.tolist(), py.tolist())), fill=COLORS[n % len(COLORS)], width=1)
        draw.text((x0 + 44, y0 + 28), f"{pts[-1][1]:.4g} @ {int(s[-1])}", fill=(60, 60, 60))
    return np.asarray(canvas).copy()
