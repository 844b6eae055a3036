"""cvae augment / CVAE Augment Folder on the tiny trained shapes model: real PNGs written, read back
as a training folder, resumed, and never written over."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from cvae_art.cli import main as cvae
from cvae_art.vae_core.augment import BATCH, COLUMNS, MANIFEST, AugmentError, augment
from cvae_art.vae_core.checkpoint import load_model, weights_digest
from cvae_art.vae_core.data import load_image_set


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def manifest(folder) -> list[dict]:
    with open(folder / MANIFEST, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_writes_a_training_folder_with_a_manifest(tiny_model, tmp_path):
    out = tmp_path / "aug"
    res = augment(tiny_model, out, 3, weights_digest(tiny_model), seed=4, temperature=0.9)
    labels = tiny_model.vocab["label"]
    assert len(res.written) == 3 * len(labels) and res.kept == 0
    rows = manifest(out)
    assert [tuple(r) for r in rows[:1]] == [COLUMNS] and len(rows) == 3 * len(labels)
    for r in rows:
        label = r["path"].split("/")[0]
        assert r["condition"] == f"label={label}:1" and r["seed"] == "4" and r["temperature"] == "0.9"
        assert r["model"] == weights_digest(tiny_model) and len(r["model"]) == 16
        assert r["prior"] == ("learned" if tiny_model.has_learned_prior else "normal")
        img = pixels(out / r["path"])
        assert img.shape == (32, 32, 3) and img.std() > 0  # a drawing, not a blank
    data = load_image_set(out, 32, ["label"], progress=False)  # a training folder again
    assert data.vocab["label"] == sorted(labels) and len(data) == 3 * len(labels)


def test_image_i_is_the_same_whatever_n_and_a_larger_n_adds_to_a_smaller(tiny_model, tmp_path):
    digest = weights_digest(tiny_model)
    small, large = tmp_path / "small", tmp_path / "large"
    augment(tiny_model, small, 3, digest, seed=1)
    first = {p.relative_to(small): pixels(p) for p in small.rglob("*.png")}
    augment(tiny_model, large, BATCH + 2, digest, seed=1)
    for rel, img in first.items():
        assert np.array_equal(pixels(large / rel), img), rel
    res = augment(tiny_model, small, 5, digest, seed=1)
    assert res.kept == len(first) and len(res.written) == 2 * len(tiny_model.vocab["label"])
    for rel, img in first.items():
        assert np.array_equal(pixels(small / rel), img)
    assert {r["path"] for r in manifest(small)} == {p.relative_to(small).as_posix() for p in small.rglob("*.png")}
    other = augment(tiny_model, small, 2, digest, seed=2)  # another seed: new names beside the old
    assert len(other.written) == 2 * len(tiny_model.vocab["label"]) and other.kept == 0
    assert len(manifest(small)) == 7 * len(tiny_model.vocab["label"])
    a, b = pixels(small / "disc" / "s1_00000.png"), pixels(small / "disc" / "s2_00000.png")
    assert not np.array_equal(a, b)


def test_an_interrupted_run_resumes(tiny_model, tmp_path):
    digest = weights_digest(tiny_model)
    out = tmp_path / "aug"
    augment(tiny_model, out, 4, digest)
    rows = manifest(out)
    lost, unlisted = out / rows[0]["path"], rows[1]["path"]
    before = pixels(lost)
    lost.unlink()  # written after the last manifest update: gone
    with open(out / MANIFEST, "w", newline="", encoding="utf-8") as f:  # the manifest misses one row
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(r for r in rows if r["path"] != unlisted)
    res = augment(tiny_model, out, 4, digest)
    assert res.written == [lost] and res.kept == len(rows) - 1
    assert np.array_equal(pixels(lost), before)
    assert manifest(out) == rows


def test_refuses_to_write_over_other_settings_or_files_it_did_not_write(tiny_model, tmp_path):
    digest = weights_digest(tiny_model)
    out = tmp_path / "aug"
    augment(tiny_model, out, 2, digest)
    listed = (out / MANIFEST).read_bytes()
    with pytest.raises(AugmentError, match=r"s0_00000\.png was made with other settings \(temperature 1 \(asked 0\.5\)"):
        augment(tiny_model, out, 2, digest, temperature=0.5)
    with pytest.raises(AugmentError, match="model"):
        augment(tiny_model, out, 2, "0" * 16)
    assert (out / MANIFEST).read_bytes() == listed
    mine = tmp_path / "mine"
    (mine / "disc").mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(mine / "disc" / "s0_00000.png")
    with pytest.raises(AugmentError, match="was not written by augment"):
        augment(tiny_model, mine, 1, digest)
    assert pixels(mine / "disc" / "s0_00000.png")[0, 0].tolist() == [1, 2, 3]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / MANIFEST).write_text("path,label\na.png,x\n")
    with pytest.raises(AugmentError, match="not an augment manifest"):
        augment(tiny_model, tmp_path / "other", 1, digest)


def test_a_model_without_a_learned_prior_is_recorded_as_drawn_from_the_normal(tiny_model, tmp_path):
    tiny_model.prior = None
    augment(tiny_model, tmp_path / "aug", 1, weights_digest(tiny_model))
    assert {r["prior"] for r in manifest(tmp_path / "aug")} == {"normal"}
    with pytest.raises(AugmentError, match="prior must be"):
        augment(tiny_model, tmp_path / "aug", 1, "x", prior="flow")


def test_given_conditions_get_their_own_folders(tiny_model, tmp_path):
    out = tmp_path / "aug"
    augment(tiny_model, out, 2, weights_digest(tiny_model), conds=["label=ring", "label=disc:0.5,ring:0.5"])
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["label=disc_0.5,ring_0.5", "ring"]
    assert {r["condition"] for r in manifest(out)} == {"label=ring:1", "label=disc:0.5,ring:0.5"}
    with pytest.raises(AugmentError, match="share a folder"):
        augment(tiny_model, out, 1, "x", conds=["label=ring", "label=ring:2"])


def test_cli(tiny_model_path, tmp_path, capsys):
    out = tmp_path / "aug"
    assert cvae(["augment", str(tiny_model_path), str(out), "--per-label", "2", "--seed", "3"]) == 0
    assert "wrote 4 PNG file(s)" in capsys.readouterr().out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "disc/s3_00000.png", "disc/s3_00001.png", "ring/s3_00000.png", "ring/s3_00001.png"]
    model = load_model(tiny_model_path)
    assert {r["model"] for r in manifest(out)} == {weights_digest(model)}
    assert cvae(["augment", str(tiny_model_path), str(out), "--per-label", "2", "--seed", "3", "--temperature", "0.5"]) == 2
    assert "not overwritten" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cvae(["augment", str(tiny_model_path), str(out), "--per-label", "0"])
