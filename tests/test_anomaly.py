"""Anomaly scores on the tiny trained shapes model: a pasted noise patch ranks first."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from conftest import shapes_image
from cvae_art.vae_core.anomaly import HEAT_COLORMAP, anomaly_scores, heatmap, score_folder
from cvae_art.vae_core.images import to_tensor

# 20 x 20 of the 32 x 32 picture. The session's tiny model is weak (150 steps, ~14 dB PSNR) and
# some clean rings reconstruct badly; measured over 20 seeds, a 20 px patch of black-and-white
# noise ranked first every time (margin >= 1.17x), a 16 px one 12 times in 20.
PATCH = (slice(6, 26), slice(6, 26))
KINDS = ("disc", "ring")


def clean_and_noisy(n: int = 15, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """n clean shape images (fresh draws, not the training set) and the first one with a patch
    of black-and-white noise pasted in."""
    rng = np.random.default_rng(seed)
    clean = np.stack([shapes_image(KINDS[i % 2], rng) for i in range(n)])
    noisy = clean[0].copy()
    noisy[PATCH] = rng.integers(0, 2, (20, 20, 1), dtype=np.uint8).repeat(3, 2) * 255
    return clean, noisy


def labels(model, n: int):
    return {"label": torch.cat([model.condition(f"label={KINDS[i % 2]}")["label"] for i in range(n)])}


def test_noise_patch_ranks_above_clean_images(tiny_model):
    clean, noisy = clean_and_noisy()
    images = to_tensor(np.concatenate([clean, noisy[None]]))
    res = anomaly_scores(tiny_model, images, labels(tiny_model, 16), samples=4, seed=0)
    assert res.recon_error.shape == (16,) and res.neg_elbo.shape == (16,) and res.error_map.shape == (16, 32, 32)
    assert int(res.recon_error.argmax()) == 15
    assert int(res.neg_elbo.argmax()) == 15
    assert torch.isfinite(res.neg_elbo).all()
    # the error map points at the patch
    em = res.error_map[15]
    mask = torch.ones_like(em, dtype=torch.bool)
    mask[PATCH] = False
    assert em[PATCH].mean() > 3 * em[mask].mean()


def test_pasting_noise_raises_every_images_score(tiny_model):
    """Uniform noise, weaker than black-and-white: each image scores worse than its clean self."""
    clean, _ = clean_and_noisy(8, seed=4)
    rng = np.random.default_rng(0)
    noisy = clean.copy()
    noisy[:, 6:22, 10:26] = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    c = labels(tiny_model, 8)
    before = anomaly_scores(tiny_model, to_tensor(clean), c, samples=4)
    after = anomaly_scores(tiny_model, to_tensor(noisy), c, samples=4)
    assert (after.recon_error > before.recon_error).all()
    assert (after.neg_elbo > before.neg_elbo).all()


def test_scores_are_deterministic_and_use_the_condition(tiny_model):
    clean, _ = clean_and_noisy(4)
    x = to_tensor(clean)
    a = anomaly_scores(tiny_model, x, "label=disc", samples=3, seed=5)
    b = anomaly_scores(tiny_model, x, tiny_model.condition("label=disc"), samples=3, seed=5)
    assert torch.equal(a.neg_elbo, b.neg_elbo) and torch.equal(a.recon_error, b.recon_error)
    c = anomaly_scores(tiny_model, x, "label=disc", samples=3, seed=6)
    assert not torch.equal(a.neg_elbo, c.neg_elbo)  # Monte-Carlo noise depends on the seed
    assert torch.equal(a.recon_error, c.recon_error)  # the mean reconstruction does not
    ring = anomaly_scores(tiny_model, x, "label=ring", samples=3, seed=5)
    assert not torch.equal(a.recon_error, ring.recon_error)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        anomaly_scores(tiny_model, x[0])


def _colour(v: int) -> np.ndarray:
    return cv2.applyColorMap(np.array([[v]], np.uint8), getattr(cv2, f"COLORMAP_{HEAT_COLORMAP}"))[0, 0, ::-1]


def test_heatmap_scales_each_map_to_its_own_hot_end_and_leaves_good_pixels_untouched():
    em = torch.zeros(2, 8, 8)
    em[0, 2, 3] = 1.0
    em[1] = 0.01
    em[1, 5, 5] = 0.05  # an image redrawn well everywhere but one pixel, with 20x less error
    maps = heatmap(em)
    assert maps.shape == (2, 8, 8, 3) and maps.dtype == np.uint8
    hot, cold = _colour(255), _colour(0)
    assert (maps[0, 2, 3] == hot).all() and (maps[0, 0, 0] == cold).all()
    assert (maps[1, 5, 5] == hot).all()  # its own scale: the small error still shows
    batch = heatmap(em, scale="batch")
    assert (batch[0, 2, 3] == hot).all() and not (batch[1, 5, 5] == hot).all()
    fixed = heatmap(em, scale=0.05)
    assert (fixed[1, 5, 5] == hot).all() and (fixed[0, 2, 3] == hot).all()
    images = np.full((2, 16, 16, 3), 200, np.uint8)
    over = heatmap(em, images, alpha=0.5)
    assert over.shape == (2, 16, 16, 3)
    assert (over[0, :4, :4] == 200).all()  # no error: the image as it is, not darkened
    assert np.abs(over[0, 4, 6].astype(int) - (0.5 * hot + 0.5 * 200)).max() <= 1  # upscaled x2, nearest
    with pytest.raises(ValueError, match="scale"):
        heatmap(em, scale=float("nan"))
    with pytest.raises(ValueError, match="colour map"):
        heatmap(em, colormap="nope")


def test_heatmap_colorbar_runs_cold_to_hot_under_the_map():
    em = torch.rand(1, 64, 64)
    out = heatmap(em, colorbar=True)
    assert out.shape == (1, 64 + 8, 64, 3)
    bar = out[0, 64:]
    assert np.abs(bar[0, 0].astype(int) - _colour(0)).max() <= 2  # first row: above the label
    assert np.abs(bar[0, -1].astype(int) - _colour(255)).max() <= 2
    assert (out[0, :64] == heatmap(em)[0]).all()


def test_planted_defect_is_the_hottest_region_of_its_heat_map(tiny_model):
    """What the anomaly node shows: on the image with pasted noise, the 20x20 window that the heat
    map tints most (colour drawn over the image, as a viewer sees it) is where the noise is."""
    clean, noisy = clean_and_noisy()
    images = to_tensor(np.concatenate([clean, noisy[None]]))
    res = anomaly_scores(tiny_model, images, labels(tiny_model, 16), samples=1, seed=0)
    tint = np.abs(heatmap(res.error_map, images)[15].astype(np.float32) - noisy.astype(np.float32)).mean(2)
    windows = torch.nn.functional.avg_pool2d(torch.from_numpy(tint)[None, None], 20, stride=1)[0, 0]
    y, x = divmod(int(windows.argmax()), windows.shape[1])
    overlap = max(0, 20 - abs(y - PATCH[0].start)) * max(0, 20 - abs(x - PATCH[1].start)) / 400
    assert overlap >= 0.6, (y, x)


def test_score_folder_ranks_worst_first_and_skips_corrupt_files(tiny_model, tmp_path):
    clean, noisy = clean_and_noisy()
    for i, img in enumerate(clean):
        sub = tmp_path / ("disc" if i % 2 == 0 else "ring")
        sub.mkdir(exist_ok=True)
        cv2.imwrite(str(sub / f"clean_{i}.png"), img[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "disc" / "odd_one.png"), noisy[:, :, ::-1])
    (tmp_path / "ring" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    scores = score_folder(tiny_model, tmp_path, samples=4, batch_size=3)
    assert len(scores) == 16
    assert scores[0][0].endswith("odd_one.png")
    assert [s[2] for s in scores] == sorted((s[2] for s in scores), reverse=True)
    assert [p.rsplit("/", 1)[-1] for p, _ in scores.skipped] == ["broken.jpg"]
    by_recon = score_folder(tiny_model, tmp_path, samples=1, by="recon_error")
    assert by_recon[0][0].endswith("odd_one.png")
    assert [s[1] for s in by_recon] == sorted((s[1] for s in by_recon), reverse=True)
