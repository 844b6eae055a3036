"""restyle_folder on a real folder of PNG/JPEG files with nested sub-folders and a corrupt file."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch

from conftest import shapes_image
from cvae_art.vae_core.images import load_image, read_image, to_tensor, to_uint8
from cvae_art.vae_core.conditions import subfolder_condition
from cvae_art.vae_core.model import REFINE_DEFAULT, REFINE_STEP
from cvae_art.vae_core.restyle import restyle_folder


@pytest.fixture()
def src(tmp_path):
    """disc/a.png, disc/deep/er/b.png, ring/c.jpg, odd/d.png (not a label), e.png, bad/broken.png."""
    root = tmp_path / "in"
    rng = np.random.default_rng(3)
    files = {
        "disc/a.png": shapes_image("disc", rng),
        "disc/deep/er/b.png": shapes_image("disc", rng, size=48),
        "ring/c.jpg": shapes_image("ring", rng),
        "odd/d.png": shapes_image("ring", rng),
        "e.png": cv2.resize(shapes_image("disc", rng), (40, 32)),  # not square
    }
    for rel, img in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), img[:, :, ::-1])
    (root / "bad").mkdir()
    (root / "bad" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


GOOD = ["disc/a.png", "disc/deep/er/b.png", "e.png", "odd/d.png", "ring/c.jpg"]


def test_restyle_writes_every_readable_image_under_the_same_relative_path(tiny_model, src, tmp_path):
    dst = tmp_path / "out"
    report = restyle_folder(tiny_model, src, dst, "label=ring", batch_size=2, progress=False)
    assert sorted(os.path.relpath(p, dst) for p in report.written) == GOOD
    assert report.existing == []
    assert [os.path.relpath(p, src) for p, _ in report.failed] == ["bad/broken.png"]
    assert "broken.png" in report.failed[0][1]
    for rel in GOOD:
        out = read_image(dst / rel)
        assert out.shape == (32, 32, 3)  # size="model"
    assert not (dst / "bad").exists()
    # only finished files: no temp files anywhere under dst
    assert sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file()) == GOOD


def test_restyle_output_is_encode_with_source_decode_with_target(tiny_model, src, tmp_path):
    m = tiny_model
    assert m.prior is not None  # trained with the default: a learned prior, so restyle transports
    ring, disc, null = m.condition("label=ring"), m.condition("label=disc"), m.condition(None)
    def refined(z, passes):  # decode as a ring, move part of the way to that drawing's encoding as a ring
        for _ in range(passes):
            z = z + REFINE_STEP * (m.encode(m.decode(z, ring), ring)[0] - z)
        return to_uint8(m.decode(z, ring))[0]

    with torch.inference_mode():
        x = to_tensor(load_image(src / "disc/a.png", 32))
        mu, _ = m.encode(x, disc)  # its sub-folder is a label: the source
        plain = refined(mu, 0)
        moved = refined(m.prior.transport(mu, disc, ring), 0)
        moved_refined = refined(m.prior.transport(mu, disc, ring), REFINE_DEFAULT)
        x = to_tensor(load_image(src / "odd/d.png", 32))
        mu_null, _ = m.encode(x, null)  # 'odd' is no label: null source
        null_refined = refined(m.prior.transport(mu_null, null, ring), REFINE_DEFAULT)
    dst = tmp_path / "out"
    restyle_folder(m, src, dst, "label=ring", progress=False)  # the defaults: transport prior, REFINE_DEFAULT passes
    assert np.abs(read_image(dst / "disc/a.png").astype(int) - moved_refined).max() <= 1
    assert np.abs(read_image(dst / "odd/d.png").astype(int) - null_refined).max() <= 1
    restyle_folder(m, src, tmp_path / "kept", "label=ring", progress=False, transport="none", refine=0)
    assert np.abs(read_image(tmp_path / "kept/disc/a.png").astype(int) - plain).max() <= 1
    restyle_folder(m, src, tmp_path / "once", "label=ring", progress=False, refine=0)
    assert np.abs(read_image(tmp_path / "once/disc/a.png").astype(int) - moved).max() <= 1
    assert np.abs(moved.astype(int) - plain).mean() > 0.5  # the transport moved the latent
    assert np.abs(moved_refined.astype(int) - moved).mean() > 0.5  # and the passes moved the drawing
    # a different target gives a different picture
    restyle_folder(m, src, tmp_path / "other", "label=disc", progress=False)
    diff = np.abs(read_image(tmp_path / "other/disc/a.png").astype(int) - read_image(dst / "disc/a.png")).mean()
    assert diff > 1.0
    with pytest.raises(ValueError, match="transport must be one of prior, none"):
        restyle_folder(m, src, tmp_path / "x", "label=disc", progress=False, transport="ot")
    with pytest.raises(ValueError, match="refine must be a whole number from 0 to 32"):
        restyle_folder(m, src, tmp_path / "x", "label=disc", progress=False, refine=-1)
    assert not (tmp_path / "x").exists()


def test_subfolder_condition_uses_the_first_factor_labels(tiny_model):
    from pathlib import Path

    c = subfolder_condition(tiny_model, [Path("disc/x.png"), Path("x.png"), Path("ring/deep/x.png"), Path("cat/x.png")])
    labels = tiny_model.vocab["label"]
    expected = torch.zeros(4, len(labels) + 1)
    expected[0, labels.index("disc")] = 1
    expected[1, -1] = 1
    expected[2, labels.index("ring")] = 1
    expected[3, -1] = 1
    assert torch.equal(c["label"].cpu(), expected)


def test_rerun_finishes_an_interrupted_folder(tiny_model, src, tmp_path):
    dst = tmp_path / "out"

    def stop_after_first_batch(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        restyle_folder(tiny_model, src, dst, "label=disc", batch_size=2, progress=False, callback=stop_after_first_batch)
    first = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file())
    assert 0 < len(first) < len(GOOD)
    stamps = {rel: (dst / rel).stat().st_mtime_ns for rel in first}
    report = restyle_folder(tiny_model, src, dst, "label=disc", batch_size=2, progress=False)
    assert sorted(os.path.relpath(p, dst) for p in report.existing) == first
    assert sorted(os.path.relpath(p, dst) for p in report.written) == sorted(set(GOOD) - set(first))
    assert all((dst / rel).stat().st_mtime_ns == t for rel, t in stamps.items())  # left alone
    again = restyle_folder(tiny_model, src, dst, "label=disc", progress=False)
    assert again.written == [] and len(again.existing) == len(GOOD)
    redo = restyle_folder(tiny_model, src, dst, "label=disc", overwrite=True, progress=False)
    assert len(redo.written) == len(GOOD)


def test_restyle_refuses_to_write_over_its_inputs(tiny_model, src):
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"same folder .*in"):
        restyle_folder(tiny_model, src, src, "label=ring", progress=False)
    # Output = the input's parent: the input in/in/disc/a.png would be written to in/disc/a.png.
    (src / "in" / "disc").mkdir(parents=True)
    cv2.imwrite(str(src / "in" / "disc" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=rf"input folder {src} is inside the output folder {src.parent}"):
        restyle_folder(tiny_model, src, src.parent, "label=ring", progress=False)
    after = {p: p.read_bytes() for p in before}
    assert after == before


def test_an_output_folder_inside_the_input_tree_or_around_it_is_refused(tiny_model, src):
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    for dst in (src / "disc", src / "restyled"):  # `cvae restyle IN IN/noto --overwrite` wrote over IN/noto
        with pytest.raises(ValueError, match=rf"output folder {dst} is inside the input folder {src}"):
            restyle_folder(tiny_model, src, dst, "label=ring", overwrite=True, progress=False)
    with pytest.raises(ValueError, match=rf"input folder {src / 'disc'} is inside the output folder {src}"):
        restyle_folder(tiny_model, src / "disc", src, "label=ring", overwrite=True, progress=False)
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before
    assert not (src / "restyled").exists()


def test_source_size_sampling_and_blend_targets(tiny_model, src, tmp_path):
    dst = tmp_path / "out"
    restyle_folder(tiny_model, src, dst, "label=disc:0.7,ring:0.3", source="label=disc", size="source",
                   sample=True, seed=1, progress=False)
    assert read_image(dst / "disc/deep/er/b.png").shape == (48, 48, 3)
    assert read_image(dst / "e.png").shape == (32, 32, 3)  # 40x32 source: its centre square
    first = read_image(dst / "ring/c.jpg")
    # sampling is seeded per file: a second run in other batches gives the same pictures
    restyle_folder(tiny_model, src, tmp_path / "again", "label=disc:0.7,ring:0.3", source="label=disc",
                   size="source", sample=True, seed=1, batch_size=1, progress=False)
    assert np.abs(read_image(tmp_path / "again/ring/c.jpg").astype(int) - first).max() <= 2
    with pytest.raises(ValueError, match="unknown label 'square'"):
        restyle_folder(tiny_model, src, dst, "label=square", progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        restyle_folder(tiny_model, tmp_path / "missing", dst, "label=disc", progress=False)
