"""Checkpoints: save -> load -> decode is bit-identical, the .json twin, atomic writes, and clear
errors for files that are not our checkpoints."""
from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from cvae_art.vae_core.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    atomic_write,
    load_model,
    load_state,
    pack_state,
    read_metadata,
    save_model,
    save_state,
    unpack_state,
    write_json,
)


def decode_all(model, n: int = 5) -> torch.Tensor:
    z = model.prior_sample(n, seed=11)
    with torch.inference_mode():
        return torch.cat([model.decode(z, model.condition(spec, n)) for spec in ("label=disc", "label=ring", None)])


def test_save_load_decode_is_bit_identical(tiny_run, tiny_model, tmp_path):
    # The trained EMA model in memory, the file training wrote, and a re-save of it: same pixels.
    reference = decode_all(tiny_run.model.cpu())
    assert torch.equal(decode_all(tiny_model), reference)
    path = save_model(tiny_model, tmp_path / "copy.safetensors", step=7)
    again = load_model(path, device="cpu")
    assert torch.equal(decode_all(again), reference)
    assert again.step == 7 and again.vocab == tiny_model.vocab and not again.training
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
    # Half precision halves the file and still loads as a float32 model that decodes closely.
    half = load_model(save_model(tiny_model, tmp_path / "half.safetensors", dtype=torch.float16), device="cpu")
    assert half.log_sigma.dtype == torch.float32
    assert (decode_all(half) - reference).abs().max() < 0.02
    assert (tmp_path / "half.safetensors").stat().st_size < 0.6 * path.stat().st_size


def test_json_twin_describes_the_checkpoint(tiny_model_path):
    twin = json.loads(tiny_model_path.with_suffix(".json").read_text())
    assert twin["format"] == FORMAT and twin["format_version"] == FORMAT_VERSION == 1
    assert twin["kind"] == "model"
    assert twin["step"] == 150
    assert twin["vocab"] == {"label": ["disc", "ring"]}
    cfg = twin["model_config"]
    assert (cfg["resolution"], cfg["latent_dim"], cfg["base_channels"]) == (32, 16, 16)
    assert cfg["conditions"] == twin["vocab"]
    assert twin["train_config"]["steps"] == 150 and "val_psnr" in twin["validation"]
    assert read_metadata(tiny_model_path) == twin  # the same JSON lives in the safetensors header


def test_writes_leave_no_temp_files(tiny_model, tmp_path):
    save_model(tiny_model, tmp_path / "m.safetensors")
    save_model(tiny_model, tmp_path / "m.safetensors")  # overwriting too
    write_json(tmp_path / "c.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "m.json", "m.safetensors"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_write_leaves_the_old_file_intact(tiny_model, tmp_path, error):
    path = save_model(tiny_model, tmp_path / "m.safetensors", step=1)
    before = path.read_bytes()

    def write_then_fail(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(before[: len(before) // 2])  # half a file, then the failure
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, write_then_fail)
    assert path.read_bytes() == before
    assert load_model(path, device="cpu").step == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_files_that_are_not_our_checkpoints(tiny_model_path, tmp_path):
    plain = tmp_path / "someone_elses_vae.safetensors"
    save_file({"decoder.weight": torch.zeros(3, 3)}, str(plain))
    with pytest.raises(CheckpointError, match=r"someone_elses_vae\.safetensors is a safetensors file but not a CVAE checkpoint"):
        load_model(plain)

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match=r"junk\.safetensors is not a safetensors file"):
        load_model(junk)

    pickled = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, pickled)
    with pytest.raises(CheckpointError, match=r"model\.pt is not a safetensors file"):
        load_model(pickled)

    with pytest.raises(CheckpointError, match=r"missing\.safetensors: no such checkpoint file"):
        load_model(tmp_path / "missing.safetensors")

    # The training state beside the model is ours, but not a model.
    with pytest.raises(CheckpointError, match=r"state\.safetensors is a training state"):
        load_model(tiny_model_path.parent / "state.safetensors")


def test_newer_format_version_and_mismatched_weights(tiny_model, tmp_path):
    path = save_model(tiny_model, tmp_path / "future.safetensors", extra={"format_version": FORMAT_VERSION + 1})
    with pytest.raises(CheckpointError, match=r"future\.safetensors: checkpoint format version 2 is newer"):
        load_model(path)

    # Header says latent 16, but the weights are another shape.
    from cvae_art.vae_core.checkpoint import model_metadata, save_tensors

    meta = model_metadata(tiny_model, 0)
    meta["model_config"] = {**meta["model_config"], "latent_dim": 12}
    meta.pop("prior", None)  # the weights' check, not the prior's (test_prior.py has that)
    weights = {k: v for k, v in tiny_model.state_dict().items() if not k.startswith("prior.")}
    bad = save_tensors(tmp_path / "mismatch.safetensors", weights, meta)
    with pytest.raises(CheckpointError, match=r"mismatch\.safetensors: weights do not match the model config"):
        load_model(bad)


def test_training_state_round_trips_without_pickle(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"step": 5, "opt": opt.state_dict(), "history": [{"step": 5, "loss": 1.5}], "pending": {"loss": [1.0, 2.0]}}
    save_state(tmp_path / "state.safetensors", state)
    back = load_state(tmp_path / "state.safetensors")
    assert back["step"] == 5 and back["history"] == state["history"] and back["pending"] == state["pending"]
    assert set(back["opt"]["state"]) == {0, 1}  # integer keys survive JSON
    for i in (0, 1):
        for k, v in opt.state_dict()["state"][i].items():
            assert torch.equal(back["opt"]["state"][i][k], v)
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.1)
    opt2.load_state_dict(back["opt"])
    tensors: dict = {}
    assert unpack_state(pack_state({"a": [torch.ones(2), {"b": 3}]}, tensors), tensors)["a"][1] == {"b": 3}


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("model_config"), "has no model_config object"),
    (lambda m: m.update(model_config=[1, 2]), "has no model_config object"),
    (lambda m: m["model_config"].update(conditions={"style": "noto"}), "labels must be a list"),
    (lambda m: m["model_config"].update(conditions={"style": ["a", "a"]}), "distinct names"),
    (lambda m: m.update(format_version="one"), "format_version 'one' is not a whole number"),
    (lambda m: m["model_config"].update(latent_dim=2**31), "latent_dim must be a whole number from 1 to 4096"),
    (lambda m: m["model_config"].update(base_channels="32"), "base_channels must be a whole number"),
], ids=["no-config", "config-list", "vocab-not-list", "vocab-repeats", "version-text", "huge-latent", "text-size"])
def test_a_header_that_lies_is_refused_naming_the_file_before_anything_is_built(tiny_model, tmp_path, change, message):
    from cvae_art.vae_core.checkpoint import model_metadata, save_tensors

    meta = model_metadata(tiny_model, 0)
    change(meta)
    path = save_tensors(tmp_path / "lying.safetensors", tiny_model.state_dict(), meta)
    with pytest.raises(CheckpointError, match=rf"lying\.safetensors: .*{message}"):
        load_model(path)


def test_metadata_that_is_not_a_json_object_is_refused(tiny_model, tmp_path):
    path = tmp_path / "list.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"cvae": "[1, 2]"})
    with pytest.raises(CheckpointError, match=r"list\.safetensors: its 'cvae' metadata is a JSON list"):
        load_model(path)
