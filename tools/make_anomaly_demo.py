"""Writes assets/anomaly_demo/, the folder the anomaly_scan workflow scans: the ten bundled noto
samples as they are, one of them with a planted defect, and one openmoji drawing filed under noto
(a style outlier). Deterministic; run it again to rebuild the folder.

    python tools/make_anomaly_demo.py
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

ASSETS = Path(__file__).resolve().parents[1] / "assets"
OUT = ASSETS / "anomaly_demo" / "noto"
DEFECT_KEY, OUTLIER_KEY = "1F3A9", "1F47D"  # top hat; alien
# A 40 x 40 patch of black-and-white noise (of 128 x 128) on the hat's band and brim: detail no
# emoji set draws, where the clean drawing is flat colour.
DEFECT_BOX = (slice(64, 104), slice(44, 84))


def main() -> int:
    if OUT.parent.exists():
        shutil.rmtree(OUT.parent)
    OUT.mkdir(parents=True)
    for src in sorted((ASSETS / "samples" / "noto").glob("*.png")):
        shutil.copyfile(src, OUT / src.name)
    hat = np.array(Image.open(OUT / f"{DEFECT_KEY}.png").convert("RGBA"))
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 2, hat[DEFECT_BOX].shape[:2], dtype=np.uint8) * 255
    hat[DEFECT_BOX] = np.dstack([noise, noise, noise, np.full_like(noise, 255)])
    Image.fromarray(hat).save(OUT / f"{DEFECT_KEY}_defect.png")
    shutil.copyfile(ASSETS / "samples" / "openmoji" / f"{OUTLIER_KEY}.png", OUT / f"{OUTLIER_KEY}_openmoji.png")
    print(f"wrote {len(list(OUT.iterdir()))} images to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
