"""A loss plot drawn with Pillow (no plotting library needed): one panel per logged series."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def loss_plot(history: list[dict], keys: list[str] | None = None, width: int = 320, height: int = 200) -> np.ndarray:
    """uint8 RGB image: each series against step with its range and steps on the axes and the last
    value labelled; symlog y for signed losses; sparse series (validation) as points."""
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
        if not pts:
            continue
        s = np.array([p[0] for p in pts], float)
        raw = np.array([p[1] for p in pts], float)
        v = np.sign(raw) * np.log1p(np.abs(raw))  # losses span decades and can be negative (Gaussian NLL)
        lo, hi = v.min(), v.max()
        hi = hi if hi > lo else lo + 1
        px = x0 + 40 + (s - s.min()) / max(s.max() - s.min(), 1) * (width - 50)
        py = y0 + (height - 20) - (v - lo) / (hi - lo) * (height - 46)
        color = COLORS[n % len(COLORS)]
        if len(pts) > 1:
            draw.line(list(zip(px.tolist(), py.tolist())), fill=color, width=1)
        for x, y in zip(px.tolist(), py.tolist()) if len(pts) <= 20 else ():  # validation: a point per checkpoint
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=color)
        # Axis values: the y range (symlog, so the ends are what it shows) and the steps at both ends.
        draw.text((x0 + 2, y0 + 24), f"{raw.max():.3g}", fill=(90, 90, 90))
        draw.text((x0 + 2, y0 + height - 30), f"{raw.min():.3g}", fill=(90, 90, 90))
        draw.text((x0 + 40, y0 + height - 16), f"{int(s.min())}", fill=(90, 90, 90))
        draw.text((x0 + width - 48, y0 + height - 16), f"{int(s.max())}", fill=(90, 90, 90))
        draw.text((x0 + 44, y0 + 28), f"{pts[-1][1]:.4g} @ {int(s[-1])}", fill=(60, 60, 60))
    return np.asarray(canvas).copy()
