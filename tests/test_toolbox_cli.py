"""`cvae sample / walk / restyle / anomaly` end to end on the tiny trained checkpoint."""
from __future__ import annotations

import json

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import shapes_image
from cvae_art.cli import main
from cvae_art.vae_core.images import read_image
from cvae_art.vae_core.video import read_metadata


def count_frames(path) -> tuple[int, tuple[int, int]]:
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return len(frames), frames[0].shape[:2]


def test_sample_grid_is_seeded(tiny_model_path, tmp_path, capsys):
    args = [str(tiny_model_path), "--cond", "label=disc", "--n", "6", "--seed", "7", "--temperature", "0.8"]
    assert main(["sample", *args, "--out", str(tmp_path / "a.png")]) == 0
    assert main(["sample", *args, "--out", str(tmp_path / "b.png")]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "a.png" in out and "6 sample(s)" in out
    a, b = read_image(tmp_path / "a.png"), read_image(tmp_path / "b.png")
    assert a.shape == (2 + 2 * 34, 2 + 3 * 34, 3)  # 3 columns x 2 rows of 32 px with 2 px padding
    assert np.array_equal(a, b)  # same seed, same images
    info = json.loads(Image.open(tmp_path / "a.png").text["cvae"])
    assert info["command"] == "sample" and info["seed"] == 7
    assert main(["sample", *args[:-4], "--seed", "8", "--out", str(tmp_path / "c.png")]) == 0
    assert not np.array_equal(a, read_image(tmp_path / "c.png"))
    blend = ["sample", str(tiny_model_path), "--cond", "label=disc:0.5,ring:0.5", "--n", "3", "--out", str(tmp_path / "blend")]
    assert main(blend) == 0
    assert sorted(p.name for p in (tmp_path / "blend").iterdir()) == ["sample_0000.png", "sample_0001.png", "sample_0002.png"]


def test_walk_writes_exactly_the_frames_asked_for(tiny_model_path, tmp_path, capsys):
    out = tmp_path / "walk.mp4"
    code = main(["walk", str(tiny_model_path), "--keyframes", "3", "--frames", "30", "--fps", "12",
                 "--easing", "ease-in-out", "--loop", "--seed", "3", "--out", str(out)])
    assert code == 0
    assert f"wrote {out}: 30 frames at 12 fps, 32x32" in capsys.readouterr().out
    assert count_frames(out) == (30, (32, 32))
    meta = json.loads(read_metadata(out)["cvae"])
    assert meta["command"] == "walk" and meta["loop"] is True
    gif = tmp_path / "pp.gif"
    assert main(["walk", str(tiny_model_path), "--keyframes", "2", "--frames", "11", "--pingpong", "--hold", "1",
                 "--size", "48", "--out", str(gif)]) == 0
    assert count_frames(gif) == (11, (48, 48))
    seg = tmp_path / "seg.webm"
    assert main(["walk", str(tiny_model_path), "--keyframes", "3", "--segment-frames", "4,6", "--out", str(seg)]) == 0
    assert count_frames(seg)[0] == 11


def test_walk_takes_a_sound_file_as_its_track(tiny_model_path, tmp_path, capsys):
    import wave

    import av

    sound = tmp_path / "beat.wav"
    t = np.arange(22050 * 4) / 22050
    with wave.open(str(sound), "wb") as w:  # 4 s of a 220 Hz tone, 16-bit mono, as a DAW exports it
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(22050)
        w.writeframes((np.sin(2 * np.pi * 220 * t) * 12000).astype("<i2").tobytes())
    out = tmp_path / "walk.mp4"
    assert main(["walk", str(tiny_model_path), "--keyframes", "2", "--frames", "24", "--fps", "12",
                 "--audio", str(sound), "--out", str(out)]) == 0
    with av.open(str(out)) as c:
        (a,) = c.streams.audio
        frames = list(c.decode(a))
        end = float(frames[-1].pts * frames[-1].time_base) + frames[-1].samples / a.codec_context.sample_rate
    assert a.codec_context.name == "aac" and abs(end - 2.0) < 0.05  # cut to the video's 2 s
    assert main(["walk", str(tiny_model_path), "--keyframes", "2", "--frames", "6", "--audio", str(sound),
                 "--out", str(tmp_path / "w.gif")]) == 2
    assert "hold no sound" in capsys.readouterr().err
    assert main(["walk", str(tiny_model_path), "--keyframes", "2", "--frames", "6", "--audio", str(tmp_path / "none.wav"),
                 "--out", str(tmp_path / "w.mp4")]) != 0
    assert not (tmp_path / "w.mp4").exists()


def test_walk_morphs_between_two_images_and_styles(tiny_model_path, tmp_path):
    rng = np.random.default_rng(1)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    cv2.imwrite(str(a), shapes_image("disc", rng)[:, :, ::-1])
    cv2.imwrite(str(b), shapes_image("ring", rng)[:, :, ::-1])
    out = tmp_path / "morph.webm"
    assert main(["walk", str(tiny_model_path), "--from", str(a), "--to", str(b), "--cond-from", "label=disc",
                 "--cond-to", "label=ring", "--frames", "12", "--out", str(out)]) == 0
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]
    assert len(frames) == 12
    # the walk starts near the reconstruction of a and ends near that of b, so the ends differ
    assert np.abs(frames[0] - frames[-1]).mean() > 5
    assert np.abs(frames[0] - frames[1]).mean() < np.abs(frames[0] - frames[-1]).mean()


def test_restyle_and_anomaly_commands(tiny_model_path, shapes_folder, tmp_path, capsys):
    src = tmp_path / "in"
    for sub in ("disc", "ring"):
        (src / sub).mkdir(parents=True)
        for p in sorted((shapes_folder / sub).iterdir())[:2]:
            (src / sub / p.name).write_bytes(p.read_bytes())
    (src / "ring" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    assert main(["restyle", str(tiny_model_path), str(src), str(out), "--from", "label=disc",
                 "--to", "label=ring:0.7,disc:0.3"]) == 0
    captured = capsys.readouterr()
    assert "restyled 4 image(s)" in captured.out and "1 unreadable" in captured.out
    assert "broken.png" in captured.err
    assert len(list(out.rglob("*.png"))) == 4
    assert main(["restyle", str(tiny_model_path), str(src), str(out), "--to", "label=ring"]) == 0
    assert "4 already there" in capsys.readouterr().out
    assert main(["restyle", str(tiny_model_path), str(src), str(src), "--to", "label=ring"]) == 2
    assert "same folder" in capsys.readouterr().err
    # --transport none decodes the latent as encoded: another picture than the default transport.
    plain = tmp_path / "plain"
    assert main(["restyle", str(tiny_model_path), str(src), str(plain), "--from", "label=disc",
                 "--to", "label=ring:0.7,disc:0.3", "--transport", "none"]) == 0
    capsys.readouterr()
    name = sorted((src / "disc").iterdir())[0].name
    assert (plain / "disc" / name).read_bytes() != (out / "disc" / name).read_bytes()

    csv_path = tmp_path / "scores.csv"
    assert main(["anomaly", str(tiny_model_path), str(src), "--samples", "2", "--csv", str(csv_path),
                 "--heatmaps", str(tmp_path / "heat"), "--top", "2"]) == 0
    captured = capsys.readouterr()
    assert "broken.png" in captured.err
    assert len(csv_path.read_text().strip().splitlines()) == 1 + 4
    heat = sorted((tmp_path / "heat").iterdir())
    assert len(heat) == 2 and read_image(heat[0]).shape == (256 + 32, 256, 3)  # drawn at 256 px, colour bar below


@pytest.mark.parametrize("argv, message", [
    (["walk", "{model}", "--frames", "10", "--out", "{tmp}/x.avi"], "unknown video format"),
    (["walk", "{model}", "--from", "{tmp}/a.png", "--out", "{tmp}/x.mp4"], "--from and --to go together"),
    (["walk", "{model}", "--keyframes", "3", "--segment-frames", "4,6", "--frames", "20", "--out", "{tmp}/x.mp4"], "make 11 frames"),
    (["sample", "{model}", "--cond", "style=noto", "--out", "{tmp}/x.png"], "unknown condition factor"),
    (["sample", "{tmp}/missing.safetensors", "--out", "{tmp}/x.png"], "no such checkpoint"),
])
def test_bad_arguments_give_one_clear_line(tiny_model_path, tmp_path, capsys, argv, message):
    argv = [x.format(model=tiny_model_path, tmp=tmp_path) for x in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_restyle_and_anomaly_on_a_folder_with_no_readable_image_fail_naming_it(tiny_model_path, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not an image")
    assert main(["restyle", str(tiny_model_path), str(bad), str(tmp_path / "out"), "--to", "label=ring"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: no readable image to restyle (1 unreadable" in err and "Traceback" not in err
    assert main(["anomaly", str(tiny_model_path), str(bad)]) == 2
    assert f"{bad}: no readable image to score" in capsys.readouterr().err


def test_a_restyle_that_cannot_write_stops_with_a_message_naming_the_output(tiny_model_path, shapes_folder, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "disc").write_text("a file where the disc folder goes")
    assert main(["restyle", str(tiny_model_path), str(shapes_folder), str(out), "--to", "label=ring"]) == 1
    err = capsys.readouterr().err
    assert str(out / "disc") in err and "Traceback" not in err
    assert (out / "disc").read_text() == "a file where the disc folder goes"
    assert not [p for p in out.rglob("*.tmp")]


@pytest.mark.parametrize("argv, message", [
    (["sample", "--n", "1000000000", "--out", "x.png"], "argument --n: must be a whole number from 1 to 4,096"),
    (["sample", "--temperature", "nan", "--out", "x.png"], "argument --temperature: must be a number from 0 to 3, got nan"),
    (["sample", "--temperature", "-1", "--out", "x.png"], "got -1.0"),
    (["sample", "--nrow", "-1", "--out", "x.png"], "argument --nrow: must be a whole number from 1"),
    (["walk", "--frames", "1000000000", "--out", "x.mp4"], "argument --frames: must be a whole number from 1 to 100,000"),
    (["walk", "--fps", "nan", "--out", "x.mp4"], "argument --fps: must be a number from 1 to 120"),
    (["walk", "--size", "100000", "--out", "x.mp4"], "argument --size: must be a whole number from 8 to 4,096"),
    (["restyle", "in", "out", "--to", "label=ring", "--batch-size", "0"], "argument --batch-size: must be a whole number from 1"),
], ids=["n-huge", "t-nan", "t-negative", "nrow-negative", "frames-huge", "fps-nan", "size-huge", "batch-zero"])
def test_numbers_out_of_range_are_refused_naming_the_option(tiny_model_path, tmp_path, capsys, argv, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([argv[0], str(tiny_model_path), *argv[1:]])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_condition_weight_that_is_not_finite_and_an_output_that_is_a_folder(tiny_model_path, tmp_path, capsys):
    assert main(["sample", str(tiny_model_path), "--cond", "label=ring:nan", "--out", str(tmp_path / "s.png")]) == 2
    assert "the weight of 'ring' must be a number from -100 to 100" in capsys.readouterr().err
    (tmp_path / "taken.png").mkdir()
    assert main(["sample", str(tiny_model_path), "--out", str(tmp_path / "taken.png")]) == 1
    assert f"{tmp_path / 'taken.png'}: Is a directory" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("keep me")
    assert main(["sample", str(tiny_model_path), "--out", str(tmp_path / "notes.txt" / "s.png")]) == 1
    assert "notes.txt" in capsys.readouterr().err and (tmp_path / "notes.txt").read_text() == "keep me"


def test_the_library_and_the_cli_load_neither_the_node_pack_nor_the_runner(tiny_model_path, tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, cvae_art.vae_core\n"
        "from cvae_art.cli import main\n"
        f"assert main(['sample', {str(tiny_model_path)!r}, '--n', '2', '--out', {str(tmp_path / 's.png')!r}]) == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith(('cvae_art.nodes', 'cvae_art.runner'))))\n"
        "import cvae_art\n"
        "print(len(cvae_art.NODE_CLASS_MAPPINGS))\n"  # ComfyUI's attribute still works, on first access
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded, nodes = out.stdout.strip().splitlines()[-2:]
    from cvae_art.nodes import NODE_CLASS_MAPPINGS

    assert loaded == "[]" and int(nodes) == len(NODE_CLASS_MAPPINGS) > 0


def test_anomaly_csv_keeps_a_file_name_that_is_not_utf8(tiny_model_path, shapes_folder, tmp_path, capsys):
    src = tmp_path / "in"
    (src / "disc").mkdir(parents=True)
    first = sorted((shapes_folder / "disc").glob("*.png"))[0]
    odd = src / "disc" / (b"\xff\xfeodd.png").decode("utf-8", "surrogateescape")
    odd.write_bytes(first.read_bytes())
    (src / "disc" / "plain.png").write_bytes(first.read_bytes())
    csv_path = tmp_path / "scores.csv"
    assert main(["anomaly", str(tiny_model_path), str(src), "--samples", "1", "--csv", str(csv_path)]) == 0
    capsys.readouterr()
    data = csv_path.read_bytes()
    assert b"\xff\xfeodd.png" in data and b"plain.png" in data and len(data.splitlines()) == 3



def test_extensionless_files_are_listed_as_skipped_by_train_data_restyle_and_anomaly(tiny_model_path, shapes_folder, tmp_path, capsys):
    from cvae_art.vae_core.data import load_image_set

    src = tmp_path / "in"
    (src / "disc").mkdir(parents=True)
    first = sorted((shapes_folder / "disc").glob("*.png"))[0]
    (src / "disc" / "a.png").write_bytes(first.read_bytes())
    (src / "disc" / "photo").write_bytes(first.read_bytes())  # an image, but nothing says so
    data = load_image_set(src, 32, workers=0, progress=False)
    assert len(data) == 1 and [(p.endswith("photo"), "no file extension" in why) for p, why in data.skipped] == [(True, True)]
    assert main(["restyle", str(tiny_model_path), str(src), str(tmp_path / "out"), "--to", "label=ring"]) == 0
    assert f"skipped {src / 'disc' / 'photo'}: no file extension" in capsys.readouterr().err
    assert main(["anomaly", str(tiny_model_path), str(src), "--samples", "1"]) == 0
    assert f"skipped {src / 'disc' / 'photo'}: no file extension" in capsys.readouterr().err


def test_sample_and_walk_refine_their_draws(tiny_model_path, tmp_path, capsys):
    for refine in ("0", "2"):
        assert main(["sample", str(tiny_model_path), "--n", "4", "--seed", "3", "--refine", refine,
                     "--out", str(tmp_path / f"r{refine}.png")]) == 0
    assert "2 refine pass(es)" in capsys.readouterr().out
    assert read_image(tmp_path / "r0.png").tolist() != read_image(tmp_path / "r2.png").tolist()
    assert main(["walk", str(tiny_model_path), "--keyframes", "2", "--frames", "4", "--refine", "1",
                 "--out", str(tmp_path / "w.gif")]) == 0
    with pytest.raises(SystemExit):
        main(["sample", str(tiny_model_path), "--refine", "33", "--out", str(tmp_path / "x.png")])
    assert "argument --refine: must be a whole number from 0 to 32" in capsys.readouterr().err
