"""Several processes under torchrun (gloo on the CPU): training, resume, sharded folder jobs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from cvae_art.cli import main as cvae
from cvae_art.vae_core.checkpoint import load_state
from cvae_art.vae_core.train import train

HERE = Path(__file__).parent
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed in this build")


def torchrun(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def config(data: Path, out: Path, steps: int):
    """Every part of the objective that has its own module or optimizer, so each is synchronised."""
    cfg = tiny_config(data, out, steps, adv_weight=0.5, adv_start=5, disc_channels=8, latent_adv_weight=5.0,
                      style_cls_weight=20.0, cycle_weight=1.0)
    return replace(cfg, batch_size=8, log_every=5, checkpoint_every=5, keep_checkpoints=2, fit_prior=False)


def train_2(cfg, tmp: Path, resume: bool = False) -> None:
    path = tmp / f"cfg_{Path(cfg.out).name}_{cfg.steps}.json"
    path.write_text(json.dumps(cfg.to_dict()), encoding="utf-8")
    torchrun(str(HERE / "ddp_train.py"), str(path), *(["--resume"] if resume else []))


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_state(run / "state.safetensors")["model"]


def test_two_processes_train_one_model_and_resume_exactly(shapes_folder, tmp_path):
    full = tmp_path / "full"
    train_2(config(shapes_folder, full, 20), tmp_path)
    saved = json.loads((full / "config.json").read_text())["train"]
    assert saved["world_size"] == 2
    assert sorted(p.name for p in full.iterdir()) == [
        "checkpoints", "config.json", "loss.png", "model.json", "model.safetensors", "samples", "state.safetensors"]
    history = load_state(full / "state.safetensors")["history"]
    assert [h["step"] for h in history] == [5, 10, 15, 20]
    assert history[-1]["recon"] < history[0]["recon"]
    assert {"d_loss", "z_critic", "swap_cls", "cycle"} <= set(history[-1])
    # Stopped after 10 steps and resumed: the same weights, bit for bit.
    half = tmp_path / "half"
    train_2(config(shapes_folder, half, 10), tmp_path)
    train_2(config(shapes_folder, half, 20), tmp_path, resume=True)
    a, b = weights(full), weights(half)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_resumes_with_another_number_of_processes(shapes_folder, tmp_path):
    run = tmp_path / "run"
    train(config(shapes_folder, run, 10), progress=False)
    assert json.loads((run / "config.json").read_text())["train"]["world_size"] == 1
    train_2(config(shapes_folder, run, 20), tmp_path, resume=True)
    state = load_state(run / "state.safetensors")
    assert state["step"] == 20 and [h["step"] for h in state["history"]] == [5, 10, 15, 20]
    assert json.loads((run / "config.json").read_text())["train"]["world_size"] == 2


def test_the_cli_under_torchrun_speaks_once(shapes_folder, tmp_path):
    res = torchrun("-m", "cvae_art.cli", "train", str(shapes_folder), "--out", str(tmp_path / "cli"), "--steps", "4",
                   "--batch-size", "8", "--resolution", "32", "--latent-dim", "16", "--base-channels", "16",
                   "--max-channels", "64", "--workers", "0", "--no-fit-prior")
    assert res.stdout.count("done at step 4") == 1 and (tmp_path / "cli" / "model.safetensors").is_file()
    with pytest.raises(AssertionError, match="does not split over 2"):
        torchrun("-m", "cvae_art.cli", "train", str(shapes_folder), "--out", str(tmp_path / "odd"), "--steps", "2",
                 "--batch-size", "7", "--resolution", "32", "--workers", "0")


def test_a_sharded_restyle_writes_every_file_once(tiny_model_path, shapes_folder, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert cvae(["restyle", str(tiny_model_path), str(shapes_folder), str(one), "--to", "label=ring"]) == 0
    res = torchrun("-m", "cvae_art.cli", "restyle", str(tiny_model_path), str(shapes_folder), str(two), "--to", "label=ring")
    files = sorted(p.relative_to(two).as_posix() for p in two.rglob("*.png"))
    assert files == sorted(p.relative_to(one).as_posix() for p in one.rglob("*.png")) and len(files) == 48
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)
    printed = [line for line in res.stdout.splitlines() if line.endswith(".png")]
    assert sorted(Path(line).relative_to(two).as_posix() for line in printed) == files  # each once, by rank 0
    assert res.stdout.count("restyled 48 image(s)") == 1


def test_a_sharded_anomaly_scan_ranks_like_one_process(tiny_model_path, shapes_folder, tmp_path):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    args = ["anomaly", str(tiny_model_path), str(shapes_folder), "--batch-size", "5", "--samples", "2"]
    assert cvae([*args, "--csv", str(one)]) == 0
    torchrun("-m", "cvae_art.cli", *args, "--csv", str(two))
    assert two.read_text() == one.read_text() and len(one.read_text().splitlines()) == 49
