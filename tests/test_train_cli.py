"""`cvae train` end to end, as the issue's quick try: the run folder's files, --resume, and bad input
reported as a message with the file's name instead of a traceback."""
from __future__ import annotations

import json

import cv2
import pytest

from cvae_art.cli import main
from cvae_art.vae_core.checkpoint import load_model, load_state

from conftest import write_shapes_folder


def test_quick_try_then_resume(tmp_path, capsys):
    data = write_shapes_folder(tmp_path / "data", per_style=8)
    corrupt = data / "ring" / "half_downloaded.png"
    corrupt.write_bytes((data / "ring" / "ring_000.png").read_bytes()[:50])
    run = tmp_path / "run"

    # The command from the issue, verbatim (DataLoader workers included).
    assert main(["train", str(data), "--out", str(run), "--resolution", "32", "--steps", "30", "--batch-size", "8"]) == 0
    out, err = capsys.readouterr()
    assert f"done at step 30: {run / 'model.safetensors'}" in out and "psnr" in out
    assert "condition label: disc, ring (sub-folder names; --condition NAME gives the factor another name)" in out
    assert f"skipped {corrupt}:" in err and "skipped 1 unreadable file(s)" in err

    config = json.loads((run / "config.json").read_text())["train"]
    assert config["steps"] == 30 and config["batch_size"] == 8 and config["model"]["resolution"] == 32
    assert config["model"]["conditions"] == {"label": ["disc", "ring"]}
    model = load_model(run / "model.safetensors", device="cpu")
    assert model.step == 30 and model.resolution == 32 and model.vocab == {"label": ["disc", "ring"]}
    assert json.loads((run / "model.json").read_text())["step"] == 30
    assert load_state(run / "state.safetensors")["step"] == 30
    samples = sorted((run / "samples").glob("*.png"))
    assert [p.name for p in samples] == ["step_0000030.png"]
    grid = cv2.imread(str(samples[0]))
    assert grid is not None and grid.shape[1] == 8 * 34 + 2  # 8 images of 32 px, 2 px padding
    assert grid.shape[0] == 4 * 34 + 2  # a row per label, then originals and reconstructions
    plot = cv2.imread(str(run / "loss.png"))
    assert plot is not None and plot.std() > 0

    assert main(["train", str(data), "--out", str(run), "--resume", "--steps", "40"]) == 0
    out, _ = capsys.readouterr()
    assert "done at step 40" in out
    state = load_state(run / "state.safetensors")
    assert state["step"] == 40 and [h["step"] for h in state["history"]] == [30, 40]
    assert load_model(run / "model.safetensors", device="cpu").step == 40
    assert json.loads((run / "config.json").read_text())["train"]["batch_size"] == 8  # the run's own settings
    assert (run / "samples" / "step_0000040.png").is_file()


def test_bad_input_is_a_message_not_a_traceback(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]) == 2
    assert f"cvae train: error: {tmp_path / 'empty'}: no images found" in capsys.readouterr().err

    data = write_shapes_folder(tmp_path / "data", per_style=1)
    assert main(["train", str(data), "--out", str(tmp_path / "fresh"), "--resume"]) == 2
    assert "state.safetensors does not exist" in capsys.readouterr().err

    for colour in ("pink", "#zzzzzz"):  # once a ValueError from inside a DataLoader worker, traceback and all
        assert main(["train", str(data), "--out", str(tmp_path / "run"), "--background", colour, "--workers", "1"]) == 2
        err = capsys.readouterr().err
        assert f"background colour {colour!r}: use a name" in err and "Traceback" not in err and "worker" not in err
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses it from the declared choices
        main(["train", str(data), "--out", str(tmp_path / "run"), "--resolution", "48"])
    assert exit_info.value.code == 2
    assert "argument --resolution: invalid choice: 48 (choose from 32, 64, 128, 256)" in capsys.readouterr().err


def test_cli_options_and_train_node_widgets_come_from_the_one_declaration(tmp_path):
    import argparse

    from comfy_pack import load_pack

    from cvae_art.commands.train import _train_args
    from cvae_art.vae_core.settings import SETTINGS, train_config, values_from_args
    from cvae_art.vae_core.train import TrainConfig

    p = argparse.ArgumentParser()
    _train_args(p)
    a = p.parse_args(["data", "--out", str(tmp_path)])
    cfg = train_config(values_from_args(a), data="data", out=str(tmp_path))
    assert cfg.to_dict() == TrainConfig(data="data", out=str(tmp_path)).to_dict()  # the CLI's defaults are the dataclasses'
    inputs = load_pack().NODE_CLASS_MAPPINGS["CVAETrainModel"].INPUT_TYPES()
    widgets = {**inputs["required"], **inputs["optional"]}
    on_node = [s for s in SETTINGS if s.node]
    assert {"learning_rate", "beta", "kl_warmup", "free_bits", "ms_ssim_weight", "lpips_weight", "lr_schedule"} <= {s.node for s in on_node}
    for s in on_node:
        kind, opts = widgets[s.node]
        default = s.default if s.node_default is None else s.node_default
        if s.choices is not None:
            assert kind == [str(c) for c in s.choices] and opts["default"] == str(default), s.path
        else:
            assert (opts["default"], opts["min"], opts["max"]) == (default, s.bounds.lo, s.bounds.hi), s.path
        # the same bounds refuse the same value from the command line
        if s.bounds is not None:
            with pytest.raises(SystemExit):
                p.parse_args(["data", "--out", str(tmp_path), s.option, str(s.bounds.hi * 2 + 1)])
