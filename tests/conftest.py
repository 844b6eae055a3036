"""Shared fixtures: small real data written to disk and a tiny model really trained on it."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import settings

# Property tests explore new examples on a developer's machine; CI replays a fixed derivation so
# a run is reproducible (a failure found locally stays found: put it in an @example).
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

from cvae_art.vae_core.losses import LossConfig
from cvae_art.vae_core.model import ModelConfig
from cvae_art.vae_core.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _one_cpu_thread():
    # The tests run many tiny 32 px steps; one intra-op thread is several times faster for them
    # than two, and immune to oversubscription when other processes share the cores (measured).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def shapes_image(style: str, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """An RGB uint8 picture: style 'disc' = a filled disc, 'ring' = an outlined square."""
    img = np.full((size, size, 3), 255, np.uint8)
    color = tuple(int(c) for c in rng.integers(0, 200, 3))
    cx, cy = (int(v) for v in rng.integers(size // 3, 2 * size // 3, 2))
    r = int(rng.integers(size // 6, size // 3))
    if style == "disc":
        cv2.circle(img, (cx, cy), r, color, -1)
    else:
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), color, 2)
    return img


def write_shapes_folder(root: Path, per_style: int = 24, size: int = 32, seed: int = 0) -> Path:
    """root/disc/*.png and root/ring/*.png, real PNG files."""
    rng = np.random.default_rng(seed)
    for style in ("disc", "ring"):
        (root / style).mkdir(parents=True, exist_ok=True)
        for i in range(per_style):
            cv2.imwrite(str(root / style / f"{style}_{i:03d}.png"), shapes_image(style, rng, size)[:, :, ::-1])
    return root


def tiny_config(data: Path, out: Path, steps: int = 40, **loss) -> TrainConfig:
    # fp32: what a test sees must not depend on whether this CPU computes bf16 natively (amp "auto")
    return TrainConfig(
        data=str(data), out=str(out), steps=steps, batch_size=16, lr=2e-3, workers=0, amp="fp32",
        checkpoint_every=1000, sample_every=1000, log_every=10, val_fraction=0.1, seed=0,
        model=ModelConfig(resolution=32, latent_dim=16, base_channels=16, max_channels=64),
        loss=LossConfig(kl_warmup_steps=10, **loss),
    )


@pytest.fixture(scope="session")
def shapes_folder(tmp_path_factory) -> Path:
    return write_shapes_folder(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="session")
def tiny_run(shapes_folder, tmp_path_factory):
    """A TrainResult of a 32 px model trained 150 real steps on the shapes folder."""
    torch.manual_seed(0)
    return train(tiny_config(shapes_folder, tmp_path_factory.mktemp("run"), steps=150), progress=False)


@pytest.fixture(scope="session")
def tiny_model_path(tiny_run) -> Path:
    return tiny_run.run_dir / "model.safetensors"


@pytest.fixture()
def tiny_model(tiny_model_path):
    from cvae_art.vae_core.checkpoint import load_model

    return load_model(tiny_model_path, device="cpu")


@pytest.fixture(scope="session")
def emoji_dir() -> Path:
    path = SHARED_DATA / "emoji_styles"
    if not (path / "metadata.csv").is_file():
        pytest.skip(f"shared emoji data not found at {path}")
    return path


# -- a tiny two-style set with a key column: the same shape drawn filled and outlined ----------------
STYLES = ("disc", "ring")


def write_styled_folder(root: Path, keys: int = 16, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for k in range(keys):
        color = tuple(int(c) for c in rng.integers(0, 200, 3))
        cx, cy = (int(v) for v in rng.integers(size // 3, 2 * size // 3, 2))
        r = int(rng.integers(size // 6, size // 3))
        for style in STYLES:
            img = np.full((size, size, 3), 255, np.uint8)
            if style == "disc":
                cv2.circle(img, (cx, cy), r, color, -1)
            else:
                cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), color, 2)
            path = f"{style}/k{k:02d}.png"
            (root / style).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / path), img)
            rows.append({"path": path, "style": style, "key": f"k{k:02d}"})
    # One emoji drawn in one style only: never part of a style-transfer pair.
    cv2.imwrite(str(root / "disc" / "lonely.png"), np.full((size, size, 3), 128, np.uint8))
    rows.append({"path": "disc/lonely.png", "style": "disc", "key": "lonely"})
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "style", "key"])
        w.writeheader()
        w.writerows(rows)
    return root


@pytest.fixture(scope="session")
def styled_model(tmp_path_factory):
    root = write_styled_folder(tmp_path_factory.mktemp("styled"))
    cfg = TrainConfig(
        data=str(root), out=str(tmp_path_factory.mktemp("styled_run")), conditions=["style"], steps=20, batch_size=8,
        lr=2e-3, workers=0, amp="fp32", checkpoint_every=10, sample_every=1000, log_every=5, val_fraction=0.3, seed=0,
        model=ModelConfig(resolution=32, latent_dim=8, base_channels=8, max_channels=32),
        loss=LossConfig(kl_warmup_steps=5),
    )
    result = train(cfg, progress=False)
    return root, result.run_dir
