"""`cvae bench samples`: the distribution metrics on sets with known answers, and the whole part on
a tiny two-style folder (classifier trained and cached, sanity rows, per-pair transfer rows)."""
from __future__ import annotations

import json

import pytest
import torch

from cvae_art.cli import main
from cvae_art.bench import samples as bs

from conftest import STYLES


def gaussian(n: int, d: int = 8, shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) + shift


def test_fid_and_kid_are_zero_for_the_same_distribution_and_grow_with_a_shift():
    a, b = gaussian(4000), gaussian(4000, seed=1)
    assert bs.fid(a, a) == pytest.approx(0.0, abs=1e-6)
    assert bs.fid(a, b) < 0.05
    # A mean shift of 1 on each of 8 axes: FID = |mu1 - mu2|^2 = 8 (same covariance).
    assert bs.fid(a, gaussian(4000, shift=1.0, seed=1)) == pytest.approx(8.0, rel=0.05)
    same, shifted = bs.kid(a, b), bs.kid(a, gaussian(4000, shift=1.0, seed=1))
    assert abs(same) < 0.01 < shifted


def test_precision_recall_density_coverage_on_overlapping_and_disjoint_sets():
    real = gaussian(500)
    p, r = bs.precision_recall(real, gaussian(500, seed=1))
    assert p > 0.8 and r > 0.8
    p, r = bs.precision_recall(real, gaussian(500, shift=20.0, seed=1))
    assert p == 0.0 and r == 0.0
    # Fakes collapsed onto a small part of the real set: precise, but they recall little.
    p, r = bs.precision_recall(real, 0.05 * gaussian(500, seed=2))
    assert p > 0.9 and r < 0.3
    d, c = bs.density_coverage(real, gaussian(500, seed=1))
    assert 0.7 < d < 1.3 and c > 0.8
    d, c = bs.density_coverage(real, gaussian(500, shift=20.0, seed=1))
    assert d == 0.0 and c == 0.0


def test_draws_of_a_row_average_to_one_row_with_their_spread():
    rows = [{"set": "samples", "images": 4, "fid": 10.0, "style acc": 0.8, "precision": 0.5},
            {"set": "samples", "images": 4, "fid": 14.0, "style acc": 0.9, "precision": 0.7}]
    row = bs._mean_row(rows)
    assert row["set"] == "samples" and row["images"] == 4
    assert row["fid"] == pytest.approx(12.0) and row["precision"] == pytest.approx(0.6)
    assert row["fid sd"] == pytest.approx(2 ** 0.5 * 2) and row["style acc sd"] == pytest.approx(0.05 * 2 ** 0.5)
    assert bs._mean_row(rows[:1])["fid sd"] is None


def test_nearest_rmse_finds_replayed_images():
    ref = torch.rand(20, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    replay = ref[[3, 7]].clone()
    assert torch.allclose(bs.nearest_rmse(replay, ref), torch.zeros(2))
    assert (bs.nearest_rmse(torch.rand(4, 3, 8, 8), ref) > 0.1).all()


def test_the_samples_part_on_a_tiny_folder(styled_model, tmp_path, capsys):
    root, run_dir = styled_model
    argv = ["bench", "samples", "--models", f"tiny={run_dir / 'model.safetensors'}", "--data", str(root),
            "--cache", str(tmp_path / "cache"), "--temperatures", "0.5", "1", "--draws", "2", "--json"]
    assert main(argv) == 0
    quality, per_style, transfer = json.loads(capsys.readouterr().out)["tables"]
    assert len(list((tmp_path / "cache").glob("domain_classifier_*.safetensors"))) == 1
    rows = {(r["set"], r.get("prior"), r.get("T")): r for r in quality["rows"] if r.get("refine") in (None, bs.REFINE_DEFAULT)}
    unrefined = [r for r in quality["rows"] if r.get("refine") == 0]
    assert len(unrefined) == 4 and all(r["images"] == rows[("real held-out", None, None)]["images"] for r in unrefined)
    real = rows[("real held-out", None, None)]
    assert real["nn / held-out nn"] == pytest.approx(1.0)
    for key in [("reconstructions (held-out)", None, None)] + [("samples", p, t) for p in ("learned", "normal") for t in (0.5, 1)]:
        row = rows[key]
        assert row["images"] == real["images"] and row["fid"] >= 0 and 0 <= row["style acc"] <= 1
        assert 0 <= row["precision"] <= 1 and 0 <= row["coverage"] <= 1
        if key[0] == "samples":  # two draws with their own seeds: a mean and a spread
            assert row["fid sd"] > 0 and row["style acc sd"] is not None
        else:
            assert row.get("fid sd") is None
    assert rows[("reconstructions (held-out)", None, None)]["psnr"] > 5
    assert [r["style"] for r in per_style["rows"]] == list(STYLES)
    modes = {(r["transport"], r["refine"]) for r in transfer["rows"]}
    assert modes == set(bs.RESTYLE_MODES)  # the model has a prior: every mode, cvae restyle's default among them
    for mode in modes:
        pairs = [(r["from"], r["to"]) for r in transfer["rows"] if (r["transport"], r["refine"]) == mode]
        assert pairs[-1] == ("all", "all") and set(pairs[:-1]) <= {("disc", "ring"), ("ring", "disc")}
    by_mode = {(r["transport"], r["refine"]): r for r in transfer["rows"] if r["from"] == "all"}
    assert len({r["transfer ssim"] for r in by_mode.values()}) == len(modes)  # each mode moves the latent its own way
    assert len({r["identity ssim"] for r in by_mode.values()}) == 1
    assert all(r["sharpness_ratio"] > 0 for r in by_mode.values())
    for r in transfer["rows"]:
        assert r["ssim gain"] == pytest.approx(r["transfer ssim"] - r["identity ssim"])
    # Run again: the cached classifier gives the same features, so the same figures.
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)["tables"][0]["rows"]
    assert [r["fid"] for r in again] == [r["fid"] for r in quality["rows"]]
