"""A loss plot drawn with OpenCV (no plotting library needed): one panel per logged series."""
from __future__ import annotations

import cv2
import numpy as np

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def loss_plot(history: list[dict], keys: list[str] | None = None, width: int = 320, height: int = 200) -> np.ndarray:
    """uint8 RGB image: each series against step, min/max labelled; symlog y for signed losses."""
    keys = keys or sorted({k for h in history for k in h if k not in ("step", "images_per_s")})
    cols = min(3, max(1, len(keys)))
    rows = max(1, -(-len(keys) // cols))
    canvas = np.full((rows * height, cols * width, 3), 255, np.uint8)
    for n, key in enumerate(keys):
        pts = [(h["step"], h[key]) for h in history if key in h and np.isfinite(h[key])]
        x0, y0 = (n % cols) * width, (n // cols) * height
        panel = canvas[y0 : y0 + height, x0 : x0 + width]
        cv2.putText(panel, key, (8, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.rectangle(panel, (40, 24), (width - 8, height - 20), (200, 200, 200), 1)
        if len(pts) < 2:
            continue
        s = np.array([p[0] for p in pts], float)
        v = np.array([p[1] for p in pts], float)
        v = np.sign(v) * np.log1p(np.abs(v))  # losses span decades and can be negative (Gaussian NLL)
        lo, hi = v.min(), v.max()
        hi = hi if hi > lo else lo + 1
        px = 40 + (s - s.min()) / max(s.max() - s.min(), 1) * (width - 50)
        py = (height - 20) - (v - lo) / (hi - lo) * (height - 46)
        line = np.stack([px, py], 1).round().astype(np.int32)
        cv2.polylines(panel, [line], False, COLORS[n % len(COLORS)], 1, cv2.LINE_AA)
        last = pts[-1][1]
        cv2.putText(panel, f"{last:.4g} @ {int(s[-1])}", (44, 38), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (60, 60, 60), 1, cv2.LINE_AA)
    return canvas
