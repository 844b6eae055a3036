"""Data loading from real files: alpha, grey, 16-bit and odd sizes converted; labels from sub-folders
or a metadata.csv; a deterministic validation split; corrupt files skipped and reported."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvae_art.vae_core import data as data_mod
from cvae_art.vae_core.data import DataError, ImageSet, batch_indices, load_image_set
from cvae_art.vae_core.images import load_image, read_image

from conftest import write_shapes_folder


def write_corrupt_files(folder: Path, good_png: Path) -> list[Path]:
    """Three kinds of broken image: random bytes, a truncated PNG, an empty file."""
    folder.mkdir(parents=True, exist_ok=True)
    junk, cut, empty = folder / "junk.png", folder / "cut.png", folder / "empty.jpg"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    cut.write_bytes(good_png.read_bytes()[:60])
    empty.write_bytes(b"")
    return [junk, cut, empty]


# -- single images ---------------------------------------------------------------------------------
def test_rgba_is_composited_on_the_background_colour(tmp_path):
    bgra = np.zeros((2, 3, 4), np.uint8)
    bgra[0, 0] = (0, 0, 255, 0)  # red, fully transparent
    bgra[0, 1] = (0, 0, 255, 255)  # red, opaque
    bgra[0, 2] = (255, 0, 0, 128)  # blue, half transparent
    path = tmp_path / "alpha.png"
    assert cv2.imwrite(str(path), bgra)
    img = read_image(path, background="#00ff00")
    assert img.dtype == np.uint8 and img.shape == (2, 3, 3)
    assert tuple(img[0, 0]) == (0, 255, 0)
    assert tuple(img[0, 1]) == (255, 0, 0)
    a = 128 / 255
    assert np.abs(img[0, 2].astype(float) - (0, 255 * (1 - a), 255 * a)).max() <= 1
    assert tuple(read_image(path, background="black")[0, 0]) == (0, 0, 0)


def test_grey_and_16_bit_images_become_8_bit_rgb(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    img = read_image(tmp_path / "grey.png")
    assert img.shape == (3, 4, 3) and np.array_equal(img[..., 0], grey) and np.array_equal(img[..., 2], grey)

    rgb8 = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "deep.png"), (rgb8.astype(np.uint16) * 257)[:, :, ::-1])
    assert cv2.imread(str(tmp_path / "deep.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    img = read_image(tmp_path / "deep.png")
    assert img.dtype == np.uint8 and np.array_equal(img, rgb8)

    cv2.imwrite(str(tmp_path / "grey16.png"), grey.astype(np.uint16) * 257)
    assert np.array_equal(read_image(tmp_path / "grey16.png")[..., 1], grey)


@pytest.mark.parametrize("h, w", [(23, 45), (45, 23), (33, 33), (200, 97)])
def test_odd_and_non_square_sizes_are_resized_and_centre_cropped(tmp_path, h, w):
    # Three vertical (or horizontal) bands: the centre crop must keep the middle band in the middle.
    img = np.zeros((h, w, 3), np.uint8)
    if w >= h:
        img[:, : w // 3], img[:, w // 3 : 2 * w // 3], img[:, 2 * w // 3 :] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    else:
        img[: h // 3], img[h // 3 : 2 * h // 3], img[2 * h // 3 :] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    path = tmp_path / f"odd_{h}x{w}.png"
    cv2.imwrite(str(path), img[:, :, ::-1])
    out = load_image(path, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert tuple(out[16, 16]) == (0, 255, 0)


# -- folders -----------------------------------------------------------------------------------------
def test_sub_folder_labels(tmp_path):
    root = write_shapes_folder(tmp_path / "shapes", per_style=3)
    s = load_image_set(root, 32, workers=0, progress=False)
    assert s.vocab == {"label": ["disc", "ring"]}
    assert s.images.shape == (6, 32, 32, 3) and s.images.dtype == np.uint8
    assert [s.vocab["label"][i] for i in s.labels["label"]] == [n.split("/")[0] for n in s.names]
    assert np.array_equal(s.images[0], load_image(root / s.names[0], 32))
    unconditional = load_image_set(root, 32, conditions=[], workers=0, progress=False)
    assert unconditional.vocab == {} and unconditional.labels == {}


def test_metadata_csv_with_condition(tmp_path):
    root = tmp_path / "meta"
    write_shapes_folder(root / "img", per_style=2)
    rows = [
        {"path": "img/disc/disc_000.png", "style": "flat", "group": "round"},
        {"path": "img/disc/disc_001.png", "style": "line", "group": "round"},
        {"path": "img/ring/ring_000.png", "style": "flat", "group": ""},
        {"path": "img/ring/ring_001.png", "style": "line", "group": "square"},
        {"path": "notes.txt", "style": "flat", "group": "round"},  # not an image: ignored
    ]
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "style", "group"])
        w.writeheader()
        w.writerows(rows)
    s = load_image_set(root, 32, conditions=["style"], workers=0, progress=False)
    assert s.vocab == {"style": ["flat", "line"]}
    assert s.names == [r["path"] for r in rows[:4]]
    assert s.labels["style"].tolist() == [0, 1, 0, 1]
    both = load_image_set(root, 32, conditions=["style", "group"], workers=0, progress=False)
    assert both.vocab == {"style": ["flat", "line"], "group": ["round", "square"]}
    assert both.labels["group"].tolist() == [0, 0, -1, 1]  # an empty cell is the null label
    with pytest.raises(DataError, match=r"metadata\.csv: no column 'colour'.*path, style, group"):
        load_image_set(root, 32, conditions=["colour"], workers=0, progress=False)


def test_validation_split_is_deterministic_and_stable_when_files_are_added(tmp_path):
    root = write_shapes_folder(tmp_path / "shapes", per_style=24)
    a = load_image_set(root, 32, workers=0, progress=False)
    b = load_image_set(root, 32, workers=0, progress=False)
    tr_a, va_a = a.split(0.1)
    tr_b, va_b = b.split(0.1)
    assert np.array_equal(tr_a, tr_b) and np.array_equal(va_a, va_b)
    assert len(va_a) >= 1 and len(tr_a) + len(va_a) == 48 and not set(tr_a) & set(va_a)
    val_names = {a.names[i] for i in va_a}

    write_shapes_folder(tmp_path / "more", per_style=1, seed=7)
    (tmp_path / "more" / "disc" / "disc_000.png").rename(root / "disc" / "disc_new.png")
    c = load_image_set(root, 32, workers=0, progress=False)
    tr_c, va_c = c.split(0.1)
    assert len(c) == 49
    new_val = {c.names[i] for i in va_c}
    new_train = {c.names[i] for i in tr_c}
    assert val_names == new_val - {"disc/disc_new.png"}  # old files keep their side
    assert {a.names[i] for i in tr_a} == new_train - {"disc/disc_new.png"}


def test_tiny_sets_keep_one_image_on_each_side():
    s = ImageSet(np.zeros((3, 32, 32, 3), np.uint8), {}, {}, ["a.png", "b.png", "c.png"])
    tr, va = s.split(0.01)
    assert len(va) == 1 and len(tr) == 2
    tr, va = s.split(0.0)
    assert len(va) == 0 and len(tr) == 3


def test_corrupt_files_are_skipped_and_reported(tmp_path):
    root = write_shapes_folder(tmp_path / "shapes", per_style=3)
    bad = write_corrupt_files(root / "ring", root / "ring" / "ring_000.png")
    s = load_image_set(root, 32, workers=0, progress=False)
    assert len(s) == 6
    assert sorted(p for p, _ in s.skipped) == sorted(str(p) for p in bad)
    assert all(why for _, why in s.skipped)
    assert not any(n.startswith("ring/junk") or n.startswith("ring/cut") for n in s.names)
    for i, name in enumerate(s.names):  # images and labels still line up after the skips
        assert np.array_equal(s.images[i], load_image(root / name, 32))
        assert s.vocab["label"][s.labels["label"][i]] == name.split("/")[0]


def test_memory_mapped_cache_compacts_in_place(tmp_path, monkeypatch):
    root = write_shapes_folder(tmp_path / "shapes", per_style=3)
    write_corrupt_files(root / "disc", root / "disc" / "disc_000.png")
    in_memory = load_image_set(root, 32, workers=0, progress=False)
    monkeypatch.setattr(data_mod, "MEMORY_CACHE_LIMIT", 0)
    mapped = load_image_set(root, 32, workers=0, cache_dir=tmp_path / "cache", progress=False)
    assert (tmp_path / "cache" / "cache_32.npy").is_file()
    assert isinstance(mapped.images, np.memmap)  # not copied into RAM by the skip
    assert np.array_equal(np.asarray(mapped.images), in_memory.images)
    assert mapped.names == in_memory.names and len(mapped.skipped) == 3


def test_empty_or_unreadable_folders_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"empty: no images found"):
        load_image_set(tmp_path / "empty", 32, workers=0, progress=False)
    with pytest.raises(DataError, match=r"nowhere: no such folder"):
        load_image_set(tmp_path / "nowhere", 32, workers=0, progress=False)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"\x89PNG nope")
    with pytest.raises(DataError, match=r"none of the 1 images could be read.*a\.png"):
        load_image_set(tmp_path / "broken", 32, workers=0, progress=False)


# -- batches -----------------------------------------------------------------------------------------
def test_batches_when_the_training_split_is_smaller_than_the_batch():
    train_idx = np.array([3, 5, 8, 13, 21])
    for step in range(4):
        b = batch_indices(train_idx, 8, step, seed=0)
        assert len(b) == 8 and set(b) == set(train_idx)  # every image, some twice
        assert np.array_equal(b, batch_indices(train_idx, 8, step, seed=0))
    assert not np.array_equal(batch_indices(train_idx, 8, 0, 0), batch_indices(train_idx, 8, 1, 0))


def test_batches_cover_an_epoch_without_repeats():
    train_idx = np.arange(100, 120)
    epoch = [batch_indices(train_idx, 8, step, seed=1) for step in range(2)]  # 20 // 8 = 2 per epoch
    assert all(len(b) == 8 for b in epoch)
    assert len(set(np.concatenate(epoch))) == 16 and set(np.concatenate(epoch)) <= set(train_idx)
    assert not np.array_equal(batch_indices(train_idx, 8, 2, seed=1), epoch[0])  # a new shuffle next epoch
    assert not np.array_equal(batch_indices(train_idx, 8, 0, seed=2), epoch[0])


def test_a_metadata_csv_that_is_not_utf8_and_a_file_name_that_is_not_utf8(tmp_path):
    root = write_shapes_folder(tmp_path / "set", per_style=3)
    (root / "metadata.csv").write_bytes(b"path,label\n\xff\xfe.png,disc\n")
    with pytest.raises(DataError, match=r"metadata\.csv: not UTF-8 text .*save it as UTF-8"):
        load_image_set(root, 32, ["label"], workers=0, progress=False)
    (root / "metadata.csv").unlink()
    odd = root / "disc" / (b"\xff\xfeodd.png").decode("utf-8", "surrogateescape")
    odd.write_bytes(next((root / "disc").glob("*.png")).read_bytes())
    data = load_image_set(root, 32, workers=0, progress=False)  # once stopped the whole run
    assert len(data) == 7 and any("odd" in n for n in data.names)
    train_idx, val_idx = data.split(0.3)
    assert len(train_idx) + len(val_idx) == 7
