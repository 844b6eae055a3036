"""Continuous controls: a numeric metadata column trained as a condition, set by value."""
from __future__ import annotations

import csv
import warnings
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from comfy_pack import load_pack
from conftest import tiny_config

from cvae_art.cli import main as cvae
from cvae_art.vae_core.augment import MANIFEST
from cvae_art.vae_core.checkpoint import load_model
from cvae_art.vae_core.conditions import ConditionError, ControlRangeWarning, make_condition
from cvae_art.vae_core.data import DataError, load_image_set
from cvae_art.vae_core.train import train

CONTROLS = {"brightness": [0.0, 1.0]}


def write_brightness_folder(root: Path, n: int = 64, size: int = 32) -> Path:
    """Real PNGs whose background grey is the 'brightness' column (0 dark .. 1 light), with a
    coloured disc or square ('kind') on it."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        b = float(rng.uniform(0, 1))
        img = np.full((size, size, 3), int(40 + 210 * b), np.uint8)
        color = tuple(int(v) for v in rng.integers(0, 255, 3))
        cx, cy = (int(v) for v in rng.integers(size // 3, 2 * size // 3, 2))
        r = int(rng.integers(size // 6, size // 3))
        kind = "disc" if i % 2 else "square"
        if kind == "disc":
            cv2.circle(img, (cx, cy), r, color, -1)
        else:
            cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), color, -1)
        cv2.imwrite(str(root / f"img_{i:03d}.png"), img)
        rows.append({"path": f"img_{i:03d}.png", "brightness": f"{b:.3f}", "kind": kind})
    write_metadata(root, rows)
    return root


def write_metadata(root: Path, rows: list[dict]) -> None:
    with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def read_rows(root: Path) -> list[dict]:
    with open(root / "metadata.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def bright_folder(tmp_path_factory) -> Path:
    return write_brightness_folder(tmp_path_factory.mktemp("bright"))


@pytest.fixture(scope="module")
def bright_model_path(bright_folder, tmp_path_factory) -> Path:
    cfg = replace(tiny_config(bright_folder, tmp_path_factory.mktemp("run"), steps=150), conditions=["kind"],
                  controls=["brightness"])
    return train(cfg, progress=False).run_dir / "model.safetensors"


# -- data ------------------------------------------------------------------------------------------
def test_a_numeric_column_is_read_with_its_range_and_empty_cells_are_unknown(bright_folder, tmp_path):
    rows = read_rows(bright_folder)
    data = load_image_set(bright_folder, 32, ["kind"], workers=0, progress=False, controls=["brightness"])
    values = np.array([float(r["brightness"]) for r in rows])
    assert np.allclose(data.controls["brightness"], values)
    assert data.control_ranges == {"brightness": [values.min(), values.max()]}
    folder = tmp_path / "gaps"
    folder.mkdir()
    for r in rows[:4]:
        (folder / r["path"]).write_bytes((bright_folder / r["path"]).read_bytes())
    write_metadata(folder, [{**r, "brightness": "" if i == 1 else r["brightness"]} for i, r in enumerate(rows[:4])])
    gaps = load_image_set(folder, 32, workers=0, progress=False, controls=["brightness"])
    assert np.isnan(gaps.controls["brightness"][1]) and not np.isnan(gaps.controls["brightness"][[0, 2, 3]]).any()
    cond = gaps.condition(np.arange(4))
    assert cond["brightness"][1].tolist() == [0.0, 0.0, 1.0]  # unknown: the null row


@pytest.mark.parametrize("cell, message", [
    ("bright", "line 4: brightness = 'bright' is not a number"),
    ("nan", "line 4: brightness = 'nan' is not a finite number"),
])
def test_a_cell_that_is_not_a_number_is_refused_naming_its_line(bright_folder, tmp_path, cell, message):
    rows = read_rows(bright_folder)[:5]
    for r in rows:
        (tmp_path / r["path"]).write_bytes((bright_folder / r["path"]).read_bytes())
    rows[2]["brightness"] = cell
    write_metadata(tmp_path, rows)
    with pytest.raises(DataError, match=message):
        load_image_set(tmp_path, 32, workers=0, progress=False, controls=["brightness"])


def test_a_control_needs_a_column_with_two_values_and_a_metadata_csv(bright_folder, tmp_path):
    rows = read_rows(bright_folder)[:3]
    for r in rows:
        (tmp_path / r["path"]).write_bytes((bright_folder / r["path"]).read_bytes())
    write_metadata(tmp_path, [{**r, "brightness": "0.5"} for r in rows])
    with pytest.raises(DataError, match="at least two different numbers"):
        load_image_set(tmp_path, 32, workers=0, progress=False, controls=["brightness"])
    with pytest.raises(DataError, match="no column 'weight' for --control"):
        load_image_set(tmp_path, 32, workers=0, progress=False, controls=["weight"])
    with pytest.raises(DataError, match="both a --condition and a --control"):
        load_image_set(tmp_path, 32, ["brightness"], workers=0, progress=False, controls=["brightness"])
    (tmp_path / "metadata.csv").unlink()
    with pytest.raises(DataError, match="needs a metadata.csv"):
        load_image_set(tmp_path, 32, workers=0, progress=False, controls=["brightness"])


# -- conditions ------------------------------------------------------------------------------------
def test_a_value_is_an_affine_weight_between_the_ends_of_its_range():
    cond = make_condition({}, "brightness=0.25", controls=CONTROLS)
    assert torch.allclose(cond["brightness"], torch.tensor([[0.75, 0.25, 0.0]]))
    blend = make_condition({}, "brightness=0.2:1,0.8:1", controls=CONTROLS)
    assert torch.allclose(blend["brightness"], make_condition({}, "brightness=0.5", controls=CONTROLS)["brightness"])
    assert make_condition({}, None, controls=CONTROLS)["brightness"].tolist() == [[0.0, 0.0, 1.0]]


def test_outside_the_range_warns_and_extrapolates_and_a_word_is_refused():
    with pytest.warns(ControlRangeWarning, match="outside the range the model was trained on"):
        cond = make_condition({}, "brightness=1.5", controls=CONTROLS)
    assert torch.allclose(cond["brightness"], torch.tensor([[-0.5, 1.5, 0.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_condition({}, "brightness=1", controls=CONTROLS)  # the end of the range is inside it
    with pytest.raises(ConditionError, match="control 'brightness': 'dark' is not a number"):
        make_condition({}, "brightness=dark", controls=CONTROLS)
    with pytest.raises(ConditionError, match="not a finite number"):
        make_condition({}, "brightness=inf", controls=CONTROLS)


# -- a trained model -------------------------------------------------------------------------------
def mean_brightness(model, value: float, seed: int = 1, n: int = 16) -> float:
    cond = model.condition(f"kind=disc;brightness={value}", n)
    with torch.inference_mode():
        return float(model.sample(n, cond, seed=seed).mean())


def test_the_model_learns_the_control_and_stores_its_range(bright_model_path, bright_folder):
    model = load_model(bright_model_path)
    values = [float(r["brightness"]) for r in read_rows(bright_folder)]
    assert model.controls == {"brightness": [min(values), max(values)]}
    lo, mid, hi = (mean_brightness(model, v) for v in (0.1, 0.5, 0.9))
    # The background is 40/255 at 0 and 250/255 at 1: the same latents get clearly lighter.
    assert lo + 0.1 < mid < hi - 0.1
    cond = model.condition("kind=square;brightness=0.7", 2)
    assert model.describe(cond) == "kind=square:1;brightness=0.7"
    assert torch.allclose(model.condition(model.describe(cond), 1)["brightness"], cond["brightness"][:1])


def test_restyle_to_a_control_value(bright_model_path, bright_folder, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for r in read_rows(bright_folder)[:6]:
        (src / r["path"]).write_bytes((bright_folder / r["path"]).read_bytes())
    for value in ("0.1", "0.9"):
        assert cvae(["restyle", str(bright_model_path), str(src), str(tmp_path / value), "--to", f"brightness={value}"]) == 0
    dark, light = (np.mean([cv2.imread(str(p)).mean() for p in sorted((tmp_path / v).glob("*.png"))]) for v in ("0.1", "0.9"))
    assert dark + 30 < light


def test_cli_sample_walk_and_augment_take_a_value(bright_model_path, tmp_path, capsys):
    model = str(bright_model_path)
    assert cvae(["sample", model, "--cond", "kind=disc;brightness=1.4", "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    out = capsys.readouterr()
    assert "warning: control 'brightness': 1.4 is outside" in out.err and "brightness=1.4" in out.out
    assert cvae(["sample", model, "--cond", "brightness=dim", "--n", "4", "--out", str(tmp_path / "t.png")]) != 0
    err = capsys.readouterr().err
    assert "control 'brightness': 'dim' is not a number" in err and "Traceback" not in err
    assert not (tmp_path / "t.png").exists()
    # A walk that sweeps the control: one latent, the condition moving from dark to light.
    video = tmp_path / "sweep.mp4"
    assert cvae(["walk", model, "--keyframes", "2", "--frames", "12", "--cond-from", "kind=disc;brightness=0.05",
                 "--cond-to", "kind=disc;brightness=0.95", "--out", str(video)]) == 0
    with av.open(str(video)) as f:
        means = [frame.to_ndarray(format="rgb24").mean() for frame in f.decode(video=0)]
    assert means[-1] > means[0] + 30 and np.corrcoef(np.arange(len(means)), means)[0, 1] > 0.9
    aug = tmp_path / "aug"
    assert cvae(["augment", model, str(aug), "--per-label", "2", "--cond", "kind=disc;brightness=0.2",
                 "--cond", "kind=disc;brightness=0.8"]) == 0
    with open(aug / MANIFEST, newline="", encoding="utf-8") as f:
        conditions = {r["condition"] for r in csv.DictReader(f)}
    assert conditions == {"kind=disc:1;brightness=0.2", "kind=disc:1;brightness=0.8"}
    assert len(list(aug.rglob("*.png"))) == 4


def test_resume_keeps_the_controls_range_and_equals_an_uninterrupted_run(bright_folder, tmp_path):
    def cfg(out: Path, steps: int):
        return replace(tiny_config(bright_folder, out, steps), controls=["brightness"], checkpoint_every=5,
                       fit_prior=False)

    full = train(cfg(tmp_path / "full", 10), progress=False)
    train(cfg(tmp_path / "half", 5), progress=False)
    resumed = train(cfg(tmp_path / "half", 10), resume=True, progress=False)
    assert resumed.model.controls == full.model.controls
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_the_control_node(bright_model_path, tiny_model):
    pack = load_pack()
    node = pack.NODE_CLASS_MAPPINGS["CVAEControl"]()
    model = load_model(bright_model_path)
    lo, hi = model.controls["brightness"]
    cond, value = node.make(model, "", 0.25, model.condition("kind=square", 1))
    assert value == pytest.approx(lo + 0.25 * (hi - lo))
    assert model.describe(cond) == f"kind=square:1;brightness={value:.6g}"
    cond, _ = node.make(model, "brightness", 1.0)
    assert model.describe(cond).startswith("kind=null:1;brightness=")
    with pytest.raises(ConditionError, match="controls are brightness"):
        node.make(model, "weight", 0.5)
    with pytest.raises(ConditionError, match="has no controls"):
        node.make(tiny_model, "", 0.5)
