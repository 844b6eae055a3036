"""Every node executed on real tiny inputs, the way ComfyUI calls it (under inference_mode, with
hidden inputs), writing real files that are read back: PNG text chunks with Pillow, video with PyAV."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from comfy_pack import load_pack, pack_module
from PIL import Image

PROMPT = {"1": {"class_type": "CVAESaveImages", "inputs": {"filename_prefix": "x"}}}
WORKFLOW = {"nodes": [{"id": 1, "type": "CVAESaveImages"}], "links": [], "version": 0.4}


@pytest.fixture(scope="module")
def pack():
    return load_pack()


@pytest.fixture()
def env(pack, tmp_path, tiny_model_path, shapes_folder):
    """Headless folders: output in tmp, models next to the tiny model, input = the shapes folder."""
    comfy = pack_module("nodes.comfy")
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_model_path, models / "tiny.safetensors")
    comfy.set_output_directory(tmp_path / "output")
    comfy.set_model_directories([models])
    comfy.set_input_directory(shapes_folder)
    yield comfy
    comfy._output_dir = comfy._model_dirs = comfy._input_dir = None


def run(pack, node_id: str, **inputs):
    """Call a node like ComfyUI: a fresh instance, FUNCTION, inference_mode; check the outputs."""
    cls = pack.NODE_CLASS_MAPPINGS[node_id]
    with torch.inference_mode():
        out = getattr(cls(), cls.FUNCTION)(**inputs)
    ui = None
    if isinstance(out, dict):
        ui = out.get("ui")
        assert all(isinstance(v, (list, tuple)) for v in ui.values()), "every ui value must be a list"
        out = out.get("result", ())
    assert isinstance(out, tuple) and len(out) == len(cls.RETURN_TYPES), node_id
    for kind, value in zip(cls.RETURN_TYPES, out):
        if kind == "IMAGE":
            assert value.dtype == torch.float32 and value.device.type == "cpu" and value.dim() == 4 and value.shape[-1] == 3
            assert 0 <= float(value.min()) and float(value.max()) <= 1
        elif kind == "CVAE_LATENT":
            assert value["z"].dim() == 2 and value["z"].device.type == "cpu"
    return (out, ui) if ui is not None else out


def shapes_image(shapes_folder, n=4):
    files = sorted((shapes_folder / "disc").glob("*.png"))[:n // 2] + sorted((shapes_folder / "ring").glob("*.png"))[:n // 2]
    return torch.from_numpy(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])).float() / 255


# -- models ------------------------------------------------------------------------------------
def test_load_model_from_the_model_folder(pack, env, tiny_model):
    model, info = run(pack, "CVAELoadModel", model_name="tiny.safetensors")
    assert "label: disc, ring" in info and "32 px" in info
    z = torch.randn(3, model.config.latent_dim)
    with torch.inference_mode():  # the node loaded it under inference_mode, as ComfyUI does
        assert torch.equal(model.decode(z, model.condition("label=ring", 3)), tiny_model.decode(z, tiny_model.condition("label=ring", 3)))
    assert "tiny.safetensors" in pack.NODE_CLASS_MAPPINGS["CVAELoadModel"].INPUT_TYPES()["required"]["model_name"][0]


def test_load_model_is_changed_follows_the_file(pack, env):
    cls = pack.NODE_CLASS_MAPPINGS["CVAELoadModel"]
    before = cls.IS_CHANGED(model_name="tiny.safetensors")
    path = env.resolve_model("tiny.safetensors")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert cls.IS_CHANGED(model_name="tiny.safetensors") != before


def test_missing_models_give_errors_that_say_what_to_do(pack, env):
    with pytest.raises(FileNotFoundError, match="not found in .*models"):
        run(pack, "CVAELoadModel", model_name="nope.safetensors")
    with pytest.raises(FileNotFoundError):  # a name cannot climb out of the model folder
        run(pack, "CVAELoadModel", model_name="../models/tiny.safetensors/../../../etc/passwd")


def test_bundled_model_loads_or_says_it_is_not_installed(pack, env):
    if env.BUNDLED_MODEL_FILE.is_file():
        model, info = run(pack, "CVAELoadModel", model_name=env.BUNDLED_MODEL)
        assert model.resolution == 64 and model.vocab["style"] == ["emojitwo", "noto", "openmoji", "twemoji2015"]
    else:
        with pytest.raises(FileNotFoundError, match="bundled model .* not installed"):
            run(pack, "CVAELoadModel", model_name=env.BUNDLED_MODEL)


def test_save_model_writes_a_loadable_file_in_the_model_folder(pack, env, tiny_model):
    (path,), ui = run(pack, "CVAESaveModel", model=tiny_model, filename_prefix="mine/copy", half_precision=False)
    assert path.endswith("mine/copy_00001_.safetensors") and ui["text"] == ui["files"] == [path]
    (path2,), _ = run(pack, "CVAESaveModel", model=tiny_model, filename_prefix="mine/copy", half_precision=True)
    assert path2.endswith("copy_00002_.safetensors") and os.path.getsize(path2) < os.path.getsize(path)
    assert "mine/copy_00001_.safetensors" in env.model_list()
    loaded, _ = run(pack, "CVAELoadModel", model_name="mine/copy_00001_.safetensors")
    z = torch.randn(2, tiny_model.config.latent_dim)
    with torch.inference_mode():
        assert torch.equal(loaded.decode(z), tiny_model.decode(z))
    # What the trained file said travels along: step, training settings, validation figures.
    from cvae_art.vae_core.checkpoint import read_metadata

    meta, source = read_metadata(path), read_metadata(tiny_model.source)
    assert meta["step"] == source["step"] > 0
    assert meta["train_config"] == source["train_config"] and meta["validation"] == source["validation"]
    # The default prefix names a file directly in the model folder, not in a 'cvae' subfolder of it.
    default = pack.NODE_CLASS_MAPPINGS["CVAESaveModel"].INPUT_TYPES()["required"]["filename_prefix"][1]["default"]
    (path3,), _ = run(pack, "CVAESaveModel", model=tiny_model, filename_prefix=default, half_precision=True)
    assert Path(path3).parent == env.model_directories()[0] and path3.endswith("_00001_.safetensors")


def test_save_model_headless_goes_to_the_output_folder_and_loads_back(pack, env, tiny_model, tmp_path, monkeypatch):
    """With no model folders set (a plain `cvae run`): output/models/cvae, reported as a file."""
    monkeypatch.setattr(env, "_model_dirs", None)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    (path,), ui = run(pack, "CVAESaveModel", model=tiny_model, filename_prefix="mine", half_precision=False)
    assert Path(path) == env.output_directory() / "models" / "cvae" / "mine_00001_.safetensors"
    assert Path(path).is_file() and ui["files"] == [path]
    assert not (tmp_path / "cwd" / "models").exists()
    assert "mine_00001_.safetensors" in env.model_list()  # a later run with this output folder can load it
    loaded, _ = run(pack, "CVAELoadModel", model_name="mine_00001_.safetensors")
    z = torch.randn(2, tiny_model.config.latent_dim)
    with torch.inference_mode():
        assert torch.equal(loaded.decode(z), tiny_model.decode(z))


def test_train_from_images_and_labels(pack, env, shapes_folder):
    images = shapes_image(shapes_folder, 8)
    model, plot = run(
        pack, "CVAETrainModel", folder="", factor="shape", resolution="32", steps=3, batch_size=4, learning_rate=1e-3,
        latent_dim=8, recon_loss="mse", beta=1.0, ssim_weight=0.0, adversarial_weight=0.0, adversarial_start=0, seed=1,
        run_name="runs/t", images=images, labels="disc, disc, disc, disc, ring, ring, ring, ring",
    )
    assert model.vocab == {"shape": ["disc", "ring"]} and model.resolution == 32 and model.config.latent_dim == 8
    assert plot.shape[0] == 1 and plot.shape[-1] == 3 and float(plot.std()) > 0  # a drawn plot, not a blank
    run_dir = env.output_directory() / "runs" / "t_00001_"
    assert (run_dir / "model.safetensors").is_file()
    assert json.loads((run_dir / "config.json").read_text())["train"]["workers"] == 0  # an IMAGE batch: nothing to decode
    with pytest.raises(ValueError, match="3 labels for 8 images"):
        run(pack, "CVAETrainModel", folder="", factor="shape", resolution="32", steps=1, batch_size=4, learning_rate=1e-3,
            latent_dim=8, recon_loss="mse", beta=1.0, ssim_weight=0.0, adversarial_weight=0.0, adversarial_start=0,
            seed=1, run_name="runs/t", images=images, labels="disc, ring, disc")


def test_train_from_a_folder_reports_progress_and_cancels(pack, env, shapes_folder, monkeypatch):
    """With ComfyUI's progress bar and interrupt flag in place: progress with a loss-plot preview,
    and Cancel stops training while keeping the state written so far."""
    comfy = env
    updates, calls = [], {"n": 0}

    class ProgressBar:  # the interface of comfy.utils.ProgressBar
        def __init__(self, total, node_id=None):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            updates.append((value, total, preview))

    class Interrupted(Exception):
        pass

    def throw_exception_if_processing_interrupted():
        calls["n"] += 1
        if calls["n"] > 4:
            raise Interrupted()

    monkeypatch.setattr(comfy, "comfy_utils", type("utils", (), {"ProgressBar": ProgressBar}))
    monkeypatch.setattr(comfy, "model_management", type("mm", (), {
        "throw_exception_if_processing_interrupted": staticmethod(throw_exception_if_processing_interrupted),
        "get_torch_device": staticmethod(lambda: torch.device("cpu")),
    }))
    args = dict(folder=str(shapes_folder), factor="shape", resolution="32", steps=50, batch_size=4, learning_rate=1e-3,
                latent_dim=8, recon_loss="gaussian", beta=1.0, ssim_weight=0.0, adversarial_weight=0.0,
                adversarial_start=0, seed=0, run_name="runs/cancel")
    with pytest.raises(Interrupted):
        run(pack, "CVAETrainModel", **args)
    assert [u[0] for u in updates] == [1, 2, 3, 4] and all(u[1] == 50 for u in updates)
    previews = [u[2] for u in updates if u[2] is not None]
    assert previews and previews[0][0] == "PNG" and previews[0][1].size[0] > 100  # the loss plot, as a PIL image
    run_dir = env.output_directory() / "runs" / "cancel_00001_"
    assert (run_dir / "state.safetensors").is_file()  # the work done so far is kept
    # A small folder is decoded in-process: no DataLoader worker processes to start.
    assert json.loads((run_dir / "config.json").read_text())["train"]["workers"] == 0


def test_train_workers_only_for_big_folders(pack, tmp_path, shapes_folder):
    loader_workers = pack_module("nodes.models").loader_workers
    assert loader_workers("") == 0 and loader_workers(str(shapes_folder)) == 0
    big = tmp_path / "big"
    big.mkdir()
    for i in range(500):  # only listed, never decoded
        (big / f"{i:03}.png").touch()
    assert loader_workers(str(big)) == (2 if sys.platform.startswith("linux") else 0)


# -- latents -----------------------------------------------------------------------------------
def test_sample_is_seeded_and_matches_the_library(pack, env, tiny_model):
    cond = tiny_model.condition("label=disc")
    (img, lat) = run(pack, "CVAESample", model=tiny_model, count=5, seed=7, temperature=0.8, cond=cond)
    assert img.shape == (5, 32, 32, 3)
    expected = tiny_model.sample(5, tiny_model.condition("label=disc", 5), seed=7, temperature=0.8)
    assert torch.allclose(img, expected.permute(0, 2, 3, 1), atol=1e-6)
    again, _ = run(pack, "CVAESample", model=tiny_model, count=5, seed=7, temperature=0.8, cond=cond)
    other, _ = run(pack, "CVAESample", model=tiny_model, count=5, seed=8, temperature=0.8, cond=cond)
    assert torch.equal(img, again) and not torch.equal(img, other)
    (decoded,) = run(pack, "CVAEDecode", model=tiny_model, latent=lat, cond=cond)
    assert torch.equal(decoded, img)
    # The learned prior by default; the standard normal when asked.
    assert tiny_model.has_learned_prior
    c5 = tiny_model.condition("label=disc", 5)
    with torch.inference_mode():  # drawn, then refined (the default passes)
        assert torch.equal(lat["z"], tiny_model.refine(tiny_model.prior_sample(5, 7, 0.8, c5), c5))
        _, normal = run(pack, "CVAESample", model=tiny_model, count=5, seed=7, temperature=0.8, cond=cond, prior="normal")
        assert torch.equal(normal["z"], tiny_model.refine(tiny_model.prior_sample(5, 7, 0.8, prior="normal"), c5))


def test_fit_prior_gives_a_copy_of_the_model_a_prior_and_leaves_the_input_alone(pack, env, tiny_model, tmp_path):
    before = {k: v.clone() for k, v in tiny_model.prior.state_dict().items()}
    model, info = run(pack, "CVAEFitPrior", model=tiny_model, folder=str(env._input_dir), components=3, seed=1)
    assert model is not tiny_model and model.prior.components == 3 and "3 components" in info
    assert model.prior.info["split_by"] == "label"  # per label unless the widget says otherwise
    shared, _ = run(pack, "CVAEFitPrior", model=tiny_model, folder=str(env._input_dir), components=3, seed=1, per_label=False)
    assert shared.prior.info["split_by"] is None and not torch.equal(shared.prior.means, model.prior.means)
    assert all(torch.equal(v, tiny_model.prior.state_dict()[k]) for k, v in before.items())
    z = torch.randn(2, model.config.latent_dim)
    with torch.inference_mode():
        assert torch.equal(model.decode(z), tiny_model.decode(z))  # the same weights
    (path,), _ = run(pack, "CVAESaveModel", model=model, filename_prefix="with_prior", half_precision=False)
    from cvae_art.vae_core.checkpoint import load_model

    again = load_model(path, "cpu")
    assert again.prior.components == 3 and torch.equal(again.prior_sample(4, 0), model.prior_sample(4, 0))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        run(pack, "CVAEFitPrior", model=tiny_model, folder=str(tmp_path / "empty"), components=3, seed=1)


def test_encode_decode_reconstructs_in_comfyui_layout(pack, env, tiny_model, shapes_folder):
    images = shapes_image(shapes_folder, 4)
    (lat,) = run(pack, "CVAEEncode", model=tiny_model, image=images, mode="mean", seed=0)
    cond = tiny_model.condition("label=disc")
    (recon,) = run(pack, "CVAEDecode", model=tiny_model, latent=lat)
    err = (recon - images).pow(2).mean(dim=(1, 2, 3))
    shuffled = (recon - images.roll(1, 0)).pow(2).mean(dim=(1, 2, 3))
    assert bool((err < shuffled).all()), (err, shuffled)  # each reconstruction resembles its own input
    # Any size works (fitted), RGBA is composited, sampled mode is seeded.
    big = torch.nn.functional.interpolate(images.permute(0, 3, 1, 2), size=(48, 64)).permute(0, 2, 3, 1)
    rgba = torch.cat([big, torch.ones_like(big[..., :1])], -1)
    (lat_big,) = run(pack, "CVAEEncode", model=tiny_model, image=rgba, mode="mean", seed=0, cond=cond)
    assert lat_big["z"].shape == lat["z"].shape
    (s1,) = run(pack, "CVAEEncode", model=tiny_model, image=images, mode="sample", seed=3)
    (s2,) = run(pack, "CVAEEncode", model=tiny_model, image=images, mode="sample", seed=3)
    assert torch.equal(s1["z"], s2["z"]) and not torch.equal(s1["z"], lat["z"])


def test_restyle_latent_moves_latents_into_the_target_style(pack, env, tiny_model, shapes_folder):
    disc, ring = tiny_model.condition("label=disc"), tiny_model.condition("label=ring")
    (lat,) = run(pack, "CVAEEncode", model=tiny_model, image=shapes_image(shapes_folder, 4), mode="mean",
                 seed=0, cond=disc)
    (moved,) = run(pack, "CVAERestyleLatent", model=tiny_model, latent=lat, source=disc, target=ring)
    z, m = lat["z"], moved["z"]
    assert m.shape == z.shape and not torch.equal(m, z)
    # Carried into the target's part of the prior: more likely under ring, less under disc.
    prior = tiny_model.prior
    assert float(prior.log_prob(m, tiny_model.condition("label=ring", 4)).mean()) > \
        float(prior.log_prob(z, tiny_model.condition("label=ring", 4)).mean())
    # Nothing to do: no transport, no refine, or the same style without refine.
    (kept,) = run(pack, "CVAERestyleLatent", model=tiny_model, latent=lat, source=disc, target=ring, transport="none", refine=0)
    (same,) = run(pack, "CVAERestyleLatent", model=tiny_model, latent=lat, source=disc, target=disc, refine=0)
    assert torch.equal(kept["z"], z) and torch.equal(same["z"], z)
    # One latent and a batch of targets: one latent per target, each as if restyled alone.
    (both,) = run(pack, "CVAEConditionBatch", cond_a=disc, cond_b=ring)
    (pair,) = run(pack, "CVAERestyleLatent", model=tiny_model, latent={"z": z[:1]}, source=disc, target=both)
    (alone,) = run(pack, "CVAERestyleLatent", model=tiny_model, latent={"z": z[:1]}, source=disc, target=disc)
    assert torch.allclose(pair["z"][0], alone["z"][0], atol=1e-5) and torch.allclose(pair["z"][1], m[0], atol=1e-5)
    with pytest.raises(ValueError, match="source: .*batch 2, expected 1 or 4"):
        run(pack, "CVAERestyleLatent", model=tiny_model, latent=lat, source=both, target=ring)


def test_decode_rejects_latents_of_another_model(pack, env, tiny_model):
    with pytest.raises(ValueError, match="has 7 dims but the model has 16"):
        run(pack, "CVAEDecode", model=tiny_model, latent={"z": torch.zeros(1, 7)})


def test_latent_math(pack, env):
    a, b, c = ({"z": torch.randn(3, 4)} for _ in range(3))
    one = {"z": torch.randn(1, 4)}
    (r,) = run(pack, "CVAELatentAdd", a=a, b=one)
    assert torch.allclose(r["z"], a["z"] + one["z"])
    (r,) = run(pack, "CVAELatentSubtract", a=a, b=b)
    assert torch.allclose(r["z"], a["z"] - b["z"])
    (r,) = run(pack, "CVAELatentScale", latent=a, factor=-2.5)
    assert torch.allclose(r["z"], a["z"] * -2.5)
    (r,) = run(pack, "CVAELatentAnalogy", a=a, b=b, c=c)
    assert torch.allclose(r["z"], a["z"] - b["z"] + c["z"])
    (r,) = run(pack, "CVAEAttributeVector", latents_with=a, latents_without=b, strength=0.5)
    assert r["z"].shape == (1, 4) and torch.allclose(r["z"], 0.5 * (a["z"].mean(0) - b["z"].mean(0)))
    (r,) = run(pack, "CVAELatentBatch", a=a, b=one)
    assert torch.equal(r["z"], torch.cat([a["z"], one["z"]]))
    (r,) = run(pack, "CVAELatentFromBatch", latent=a, index=1, length=5)
    assert torch.equal(r["z"], a["z"][1:])
    with pytest.raises(ValueError, match="a has 3 latents and b 2"):
        run(pack, "CVAELatentAdd", a=a, b={"z": torch.randn(2, 4)})
    with pytest.raises(ValueError, match="index 3 is past the end"):
        run(pack, "CVAELatentFromBatch", latent=a, index=3, length=1)


def test_interpolate_hits_every_keyframe(pack, env):
    keys = {"z": torch.randn(3, 6)}
    (path,) = run(pack, "CVAEInterpolate", keyframes=keys, frames=21, method="slerp", easing="ease-in-out", hold=0, loop=False, pingpong=False)
    z = path["z"]
    assert z.shape == (21, 6)
    assert torch.equal(z[0], keys["z"][0]) and torch.equal(z[-1], keys["z"][2])
    assert any(torch.allclose(row, keys["z"][1]) for row in z[1:-1])
    (pp,) = run(pack, "CVAEInterpolate", keyframes=keys, frames=20, method="lerp", easing="linear", hold=1, loop=True, pingpong=True)
    assert pp["z"].shape == (20, 6)


# -- conditions --------------------------------------------------------------------------------
def test_conditions(pack, env, tiny_model):
    (c,) = run(pack, "CVAECondition", model=tiny_model, factor="label", label="ring")
    assert torch.equal(c["label"], tiny_model.condition("label=ring")["label"])
    (c_only,) = run(pack, "CVAECondition", model=tiny_model, factor="", label="ring")
    assert torch.equal(c_only["label"], c["label"])
    (null,) = run(pack, "CVAECondition", model=tiny_model, factor="label", label="null")
    assert null["label"].tolist() == [[0.0, 0.0, 1.0]]
    with pytest.raises(ValueError, match="unknown label 'noto' .*known: disc, ring"):
        run(pack, "CVAECondition", model=tiny_model, factor="label", label="noto")
    with pytest.raises(ValueError, match="unknown condition factor.*'style'"):
        run(pack, "CVAECondition", model=tiny_model, factor="style", label="noto")
    (blend,) = run(pack, "CVAEConditionBlendLabels", model=tiny_model, factor="label", label_1="disc", weight_1=3.0,
                   label_2="ring", weight_2=1.0, label_3="", weight_3=1.0, label_4="disc", weight_4=0.0)
    assert torch.allclose(blend["label"], torch.tensor([[0.75, 0.25, 0.0]]))
    (disc,) = run(pack, "CVAECondition", model=tiny_model, factor="label", label="disc")
    (mix,) = run(pack, "CVAEConditionMix", cond_a=disc, cond_b=c, amount=0.25)
    assert torch.allclose(mix["label"], torch.tensor([[0.75, 0.25, 0.0]]))
    (both,) = run(pack, "CVAEConditionBatch", cond_a=disc, cond_b=c)
    assert both["label"].tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    three = {"label": both["label"][:1].repeat(3, 1)}
    with pytest.raises(ValueError, match="cond_a and cond_b: conditions of 2 and 3 rows; use 1 or the same number"):
        run(pack, "CVAEConditionMix", cond_a=both, cond_b=three, amount=0.5)
    # A condition really changes the drawing.
    z = {"z": tiny_model.prior_sample(4, 0)}
    (img_disc,) = run(pack, "CVAEDecode", model=tiny_model, latent=z, cond=disc)
    (img_ring,) = run(pack, "CVAEDecode", model=tiny_model, latent=z, cond=c)
    assert float((img_disc - img_ring).abs().mean()) > 1e-3
    with pytest.raises(ValueError, match="one condition or one per item"):
        run(pack, "CVAEDecode", model=tiny_model, latent={"z": tiny_model.prior_sample(3, 0)}, cond=both)


def test_one_latent_with_several_conditions_is_drawn_once_in_each(pack, env, tiny_model):
    disc, ring = tiny_model.condition("label=disc"), tiny_model.condition("label=ring")
    (four,) = run(pack, "CVAEConditionBatch", cond_a=disc, cond_b=ring, cond_c=ring, cond_d=disc)
    assert four["label"].tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    (skip_c,) = run(pack, "CVAEConditionBatch", cond_a=disc, cond_b=ring, cond_d=ring)
    assert skip_c["label"].tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
    z = tiny_model.prior_sample(1, 3)
    (images,) = run(pack, "CVAEDecode", model=tiny_model, latent={"z": z}, cond=four)
    with torch.inference_mode():
        expected = [tiny_model.decode(z, c).permute(0, 2, 3, 1)[0] for c in (disc, ring, ring, disc)]
    assert images.shape[0] == 4
    for got, want in zip(images, expected):
        assert torch.allclose(got, want, atol=1e-6)
    assert float((images[0] - images[1]).abs().mean()) > 1e-3
    with pytest.raises(ValueError, match="one condition or one per item"):  # 2 latents, 4 conditions: no rule fits
        run(pack, "CVAEDecode", model=tiny_model, latent={"z": tiny_model.prior_sample(2, 0)}, cond=four)
    with pytest.raises(ValueError, match="different factors or labels"):
        run(pack, "CVAEConditionBatch", cond_a=disc, cond_b=ring, cond_c={"style": torch.ones(1, 5)})


# -- images ------------------------------------------------------------------------------------
def test_image_grid_lays_out_the_batch_with_white_gaps(pack, env):
    images = torch.rand(5, 8, 6, 3, generator=torch.Generator().manual_seed(1)) * 0.9  # never pure white
    (sheet,) = run(pack, "CVAEImageGrid", images=images, nrow=2, padding=3)
    assert sheet.shape == (1, 3 + 3 * (8 + 3), 3 + 2 * (6 + 3), 3)
    covered = torch.zeros(sheet.shape[1:3], dtype=torch.bool)
    for i in range(5):
        y, x = 3 + (i // 2) * (8 + 3), 3 + (i % 2) * (6 + 3)
        assert torch.allclose(sheet[0, y:y + 8, x:x + 6], images[i]), f"tile {i}"
        covered[y:y + 8, x:x + 6] = True
    assert bool((sheet[0][~covered] == 1.0).all())  # gaps, border and the empty sixth cell are white
    (row,) = run(pack, "CVAEImageGrid", images=images, nrow=8, padding=0)
    assert row.shape == (1, 8, 5 * 6, 3)  # fewer images than nrow: one row, as wide as the images


# -- folders -----------------------------------------------------------------------------------
def test_load_image_folder(pack, env, shapes_folder, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(shapes_folder / "disc", src / "disc")
    (src / "disc" / "zzz_broken.png").write_bytes(b"not a png")
    (img, names, count) = run(pack, "CVAELoadImageFolder", folder=str(src), size=16, limit=5, skip=2, every_nth=3,
                               order="natural", background="white")
    all_names = sorted(p.relative_to(src).as_posix() for p in (src / "disc").glob("disc_*.png"))
    assert names.splitlines() == all_names[2::3][:5] and count == 5 and img.shape == (5, 16, 16, 3)
    first = np.asarray(Image.open(src / all_names[2]).convert("RGB").resize((16, 16), Image.BILINEAR), np.float32) / 255
    assert np.abs(img[0].numpy() - first).mean() < 0.1  # the right image, in RGB order
    (img_all, names_all, count_all) = run(pack, "CVAELoadImageFolder", folder=str(src), size=32, limit=0, skip=0,
                                          every_nth=1, order="name", background="white")
    assert count_all == len(all_names) and "disc/zzz_broken.png" not in names_all  # skipped, not a crash
    # Relative to the input folder; IS_CHANGED follows the folder's content.
    cls = pack.NODE_CLASS_MAPPINGS["CVAELoadImageFolder"]
    (_, rel_names, _) = run(pack, "CVAELoadImageFolder", folder="ring", size=32, limit=2, skip=0, every_nth=1, order="name", background="white")
    assert rel_names.splitlines() == ["ring_000.png", "ring_001.png"]
    before = cls.IS_CHANGED(folder=str(src))
    shutil.copy(src / "disc" / all_names[0].split("/")[1], src / "new.png")
    assert cls.IS_CHANGED(folder=str(src)) != before
    with pytest.raises(FileNotFoundError, match="no such folder"):
        run(pack, "CVAELoadImageFolder", folder=str(tmp_path / "nope"), size=32, limit=0, skip=0, every_nth=1, order="name", background="white")


def test_save_images_embeds_prompt_and_workflow_like_core_saveimage(pack, env):
    images = torch.rand(2, 8, 8, 3)
    (_, ui) = run(pack, "CVAESaveImages", images=images, filename_prefix="cvae/img", prompt=PROMPT, extra_pnginfo={"workflow": WORKFLOW})
    out = env.output_directory()
    assert ui["images"] == [
        {"filename": "img_00001_.png", "subfolder": "cvae", "type": "output"},
        {"filename": "img_00002_.png", "subfolder": "cvae", "type": "output"},
    ]
    with Image.open(out / "cvae" / "img_00001_.png") as im:
        assert json.loads(im.text["prompt"]) == PROMPT and json.loads(im.text["workflow"]) == WORKFLOW
        assert np.abs(np.asarray(im, np.float32) / 255 - images[0].numpy()).max() <= 0.5 / 255 + 1e-6
    (_, ui2) = run(pack, "CVAESaveImages", images=images[:1], filename_prefix="cvae/img")
    assert ui2["images"][0]["filename"] == "img_00003_.png"
    with Image.open(out / "cvae" / "img_00003_.png") as im:
        assert "prompt" not in im.text
    # With source names: kept inside the prefix folder.
    (_, ui3) = run(pack, "CVAESaveImages", images=images, filename_prefix="kept", file_names="disc/a.jpg\nb.png", prompt=PROMPT)
    assert (out / "kept" / "disc" / "a.png").is_file() and (out / "kept" / "b.png").is_file()
    assert ui3["images"][0] == {"filename": "a.png", "subfolder": "kept/disc", "type": "output"}
    # same.png and same.jpg would both be same.png: the second keeps its extension in the name.
    three = torch.rand(3, 8, 8, 3)
    (_, ui4) = run(pack, "CVAESaveImages", images=three, filename_prefix="twins", file_names="same.png\nsame.jpg\nsame.png")
    assert [r["filename"] for r in ui4["images"]] == ["same.png", "same_jpg.png", "same_2.png"]
    for i, name in enumerate(["same.png", "same_jpg.png", "same_2.png"]):
        with Image.open(out / "twins" / name) as im:
            assert np.abs(np.asarray(im, np.float32) / 255 - three[i].numpy()).max() <= 0.5 / 255 + 1e-6
    for bad in ("../outside", "/etc/cvae"):
        with pytest.raises(ValueError, match="outside"):
            run(pack, "CVAESaveImages", images=images, filename_prefix=bad)
    with pytest.raises(ValueError, match="outside"):
        run(pack, "CVAESaveImages", images=images, filename_prefix="kept", file_names="../../x.png\ny.png")
    with pytest.raises(ValueError, match="1 names for 2 images"):
        run(pack, "CVAESaveImages", images=images, filename_prefix="kept", file_names="one.png")


# -- video -------------------------------------------------------------------------------------
def walk_args(**over):
    args = dict(frames=12, method="slerp", easing="linear", hold=0, loop=False, pingpong=False, format="mp4", fps=12.0,
                quality=90, loop_count=0, size=0, filename_prefix="cvae/walk")
    args.update(over)
    return args


def decode_video(path):
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
        return np.stack(frames), dict(c.metadata), float(stream.average_rate)


def test_render_walk_mp4_streams_the_walk_with_the_workflow_embedded(pack, env, tiny_model):
    keys = {"z": tiny_model.prior_sample(2, 5)}
    cond = tiny_model.condition("label=ring")
    (path,), ui = run(pack, "CVAERenderWalk", model=tiny_model, latents=keys, cond=cond, prompt=PROMPT,
                      extra_pnginfo={"workflow": WORKFLOW}, **walk_args())
    out = env.output_directory()
    assert path == str(out / "cvae" / "walk_00001_.mp4")
    assert ui == {"images": [{"filename": "walk_00001_.mp4", "subfolder": "cvae", "type": "output"}], "animated": (True,)}
    frames, meta, fps = decode_video(path)
    assert frames.shape == (12, 32, 32, 3) and fps == 12
    assert json.loads(meta["prompt"]) == PROMPT and json.loads(meta["workflow"]) == WORKFLOW
    with torch.inference_mode():
        ends = (tiny_model.decode(keys["z"], tiny_model.condition("label=ring", 2)).permute(0, 2, 3, 1) * 255).numpy()
    first, last = frames[0].astype(np.float32), frames[-1].astype(np.float32)
    # Lossy, but each end frame is its keyframe's decode and not the other one's.
    assert np.abs(first - ends[0]).mean() < 8 and np.abs(last - ends[1]).mean() < 8
    assert np.abs(first - ends[1]).mean() > np.abs(first - ends[0]).mean()
    (path2,), _ = run(pack, "CVAERenderWalk", model=tiny_model, latents=keys, cond=cond, **walk_args(size=48))
    assert path2.endswith("walk_00002_.mp4") and decode_video(path2)[0].shape == (12, 48, 48, 3)


def test_render_walk_muxes_comfyuis_audio(pack, env, tiny_model):
    import av

    t = torch.arange(3 * 16000) / 16000
    audio = {"waveform": torch.sin(2 * torch.pi * 330 * t).repeat(1, 2, 1) * 0.5, "sample_rate": 16000}  # [1, 2, n]
    keys = {"z": tiny_model.prior_sample(2, 5)}
    (path,), _ = run(pack, "CVAERenderWalk", model=tiny_model, latents=keys, audio=audio, **walk_args(format="webm"))
    with av.open(path) as c:
        (a,) = c.streams.audio
        assert a.codec_context.name == "opus" and a.codec_context.channels == 2
        assert len(list(c.decode(c.streams.video[0]))) == 12
    with pytest.raises(ValueError, match="hold no sound"):
        run(pack, "CVAERenderWalk", model=tiny_model, latents=keys, audio=audio, **walk_args(format="gif"))


def test_render_walk_lists_and_writes_the_other_encoders(pack, env, tiny_model):
    import av

    from cvae_art.vae_core.video import available_formats

    listed = pack.NODE_CLASS_MAPPINGS["CVAERenderWalk"].INPUT_TYPES()["required"]["format"][0]
    assert listed == available_formats() and listed[:1] == ["mp4"]
    keys = {"z": tiny_model.prior_sample(2, 5)}
    for name, ext, codec in (("mov-prores", ".mov", "prores"), ("mp4-h265", ".mp4", "hevc")):
        if name in listed:
            (path,), _ = run(pack, "CVAERenderWalk", model=tiny_model, latents=keys, **walk_args(format=name))
            assert path.endswith(ext)
            with av.open(path) as c:
                assert c.streams.video[0].codec_context.name == codec and len(list(c.decode(video=0))) == 12


def test_render_walk_gif_with_a_style_per_keyframe(pack, env, tiny_model):
    keys = {"z": tiny_model.prior_sample(2, 1)}
    (both,) = run(pack, "CVAEConditionBatch", cond_a=tiny_model.condition("label=disc"), cond_b=tiny_model.condition("label=ring"))
    (path,), ui = run(pack, "CVAERenderWalk", model=tiny_model, latents=keys, cond=both, prompt=PROMPT,
                      **walk_args(format="gif", pingpong=True, frames=10, filename_prefix="gifs/w"))
    frames, _, _ = decode_video(path)
    assert path.endswith(".gif") and frames.shape[0] == 10 and ui["images"][0]["subfolder"] == "gifs"
    with torch.inference_mode():
        ring_end = (tiny_model.decode(keys["z"][1:], tiny_model.condition("label=ring")).permute(0, 2, 3, 1) * 255).numpy()[0]
        disc_end = (tiny_model.decode(keys["z"][1:], tiny_model.condition("label=disc")).permute(0, 2, 3, 1) * 255).numpy()[0]
    middle = frames[4].astype(np.float32)  # the ping-pong turns at keyframe 2, drawn in its own style
    assert np.abs(middle - ring_end).mean() < np.abs(middle - disc_end).mean()
    with pytest.raises(ValueError, match="cond has 3 rows"):
        (three,) = run(pack, "CVAEConditionBatch", cond_a=both, cond_b=tiny_model.condition("label=disc"))
        run(pack, "CVAERenderWalk", model=tiny_model, latents=keys, cond=three, **walk_args())


def test_render_walk_morphs_one_latent_through_a_style_per_keyframe(pack, env, tiny_model):
    z = tiny_model.prior_sample(1, 4)
    disc, ring = tiny_model.condition("label=disc"), tiny_model.condition("label=ring")
    (both,) = run(pack, "CVAEConditionBatch", cond_a=disc, cond_b=ring)
    (path,), _ = run(pack, "CVAERenderWalk", model=tiny_model, latents={"z": z}, cond=both, **walk_args(frames=10))
    frames, _, _ = decode_video(path)
    assert frames.shape[0] == 10
    with torch.inference_mode():
        as_disc, as_ring = ((tiny_model.decode(z, c).permute(0, 2, 3, 1) * 255).numpy()[0] for c in (disc, ring))
    first, last = frames[0].astype(np.float32), frames[-1].astype(np.float32)
    assert np.abs(first - as_disc).mean() < np.abs(first - as_ring).mean()
    assert np.abs(last - as_ring).mean() < np.abs(last - as_disc).mean()


def test_render_walk_webp_from_interpolated_frames_with_a_style_sweep(pack, env, tiny_model):
    (frames,) = run(pack, "CVAEInterpolate", keyframes={"z": tiny_model.prior_sample(3, 2)}, frames=9, method="lerp",
                    easing="smoothstep", hold=0, loop=True, pingpong=False)
    (path,), _ = run(pack, "CVAERenderWalk", model=tiny_model, latents=frames, cond=tiny_model.condition("label=disc"),
                     cond_end=tiny_model.condition("label=ring"), extra_pnginfo={"workflow": WORKFLOW},
                     **walk_args(frames=0, format="webp", loop_count=2, size=40))
    with Image.open(path) as im:
        assert im.n_frames == 9 and im.size == (40, 40) and im.info.get("loop") == 3
        assert json.loads(im.getexif()[0x010F].partition(":")[2]) == WORKFLOW  # where SaveAnimatedWEBP puts it


def test_render_walk_cancel_leaves_no_file(pack, env, tiny_model, monkeypatch):
    class Interrupted(Exception):
        pass

    def interrupted():
        raise Interrupted()

    monkeypatch.setattr(env, "model_management", type("mm", (), {"throw_exception_if_processing_interrupted": staticmethod(interrupted)}))
    with pytest.raises(Interrupted):
        run(pack, "CVAERenderWalk", model=tiny_model, latents={"z": tiny_model.prior_sample(2, 0)}, **walk_args(frames=80, filename_prefix="c/w"))
    assert list((env.output_directory() / "c").iterdir()) == []
    with pytest.raises(ValueError, match="outside"):
        run(pack, "CVAERenderWalk", model=tiny_model, latents={"z": tiny_model.prior_sample(2, 0)}, **walk_args(filename_prefix="../w"))


# -- restyle and anomaly -----------------------------------------------------------------------
def test_restyle_folder_keeps_names_and_finishes_interrupted_runs(pack, env, tiny_model, shapes_folder, tmp_path):
    src = tmp_path / "src"
    for style in ("disc", "ring"):
        (src / style).mkdir(parents=True)
        for f in sorted((shapes_folder / style).glob("*.png"))[:3]:
            shutil.copy(f, src / style / f.name)
    (src / "ring" / "broken.png").write_bytes(b"nope")
    (ring,) = run(pack, "CVAECondition", model=tiny_model, factor="label", label="ring")
    args = dict(model=tiny_model, source_folder=str(src), target_folder="restyled/ring", target_cond=ring, mode="mean",
                seed=0, size="model", batch_size=4, overwrite=False, background="white")
    (dst, report), ui = run(pack, "CVAERestyleFolder", **args)
    written = sorted(p.relative_to(dst).as_posix() for p in Path(dst).rglob("*.png"))
    assert written == sorted(p.relative_to(src).as_posix() for p in src.rglob("*_0*.png"))
    assert report.startswith("6 written, 0 already there (kept), 1 failed") and "broken.png" in report
    assert len(ui["images"]) == 6 and ui["images"][0]["subfolder"].startswith("restyled/ring/")
    assert sorted(Path(p).relative_to(dst).as_posix() for p in ui["files"]) == written  # what `cvae run` counts
    # Same as the library: encode with the sub-folder label, move the latent through the prior
    # (the default transport), decode as a ring; transport "none" decodes it as encoded.
    disc0 = sorted((src / "disc").glob("*.png"))[0]
    x = torch.from_numpy(np.array(Image.open(disc0).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    disc_c, ring_c = tiny_model.condition("label=disc"), tiny_model.condition("label=ring")
    with torch.inference_mode():
        mu, _ = tiny_model.encode(x, disc_c)
        for transport, refine, z in (("prior", 0, tiny_model.prior.transport(mu, disc_c, ring_c)), ("none", 0, mu),
                                     ("none", 1, tiny_model.refine(mu, ring_c, 1))):
            expected = (tiny_model.decode(z, ring_c)[0].permute(1, 2, 0) * 255).round().numpy()
            out = Path(run(pack, "CVAERestyleFolder", **{**args, "target_folder": f"restyled/{transport}{refine}",
                                                         "transport": transport, "refine": refine})[0][0])
            got = np.asarray(Image.open(out / "disc" / disc0.name), np.float32)
            assert np.abs(got - expected).max() <= 1, (transport, refine)
    (_, report2), _ = run(pack, "CVAERestyleFolder", **args)
    assert report2.startswith("0 written, 6 already there")
    for escape in ("../escape", str(tmp_path / "elsewhere")):  # an absolute path too: the output folder only
        with pytest.raises(ValueError, match="target_folder .* points outside"):
            run(pack, "CVAERestyleFolder", **{**args, "target_folder": escape})
    # A symlink planted in the output folder does not lead the write out of it.
    (env.output_directory() / "link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(ValueError, match="target_folder 'link/out' points outside"):
        run(pack, "CVAERestyleFolder", **{**args, "target_folder": "link/out"})
    assert not (tmp_path / "out").exists() and not (tmp_path / "elsewhere").exists()
    with pytest.raises(ValueError, match="single condition"):
        (two,) = run(pack, "CVAEConditionBatch", cond_a=ring, cond_b=ring)
        run(pack, "CVAERestyleFolder", **{**args, "target_cond": two})


def test_anomaly_scores_rank_the_odd_image_first_and_save_the_table(pack, env, tiny_model, shapes_folder):
    images = shapes_image(shapes_folder, 4)
    odd = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(0))  # noise: nothing like the training set
    batch = torch.cat([images[:2], odd, images[2:]])
    names = "a.png\nb.png\nnoise.png\nc.png\nd.png"
    (heat, ranked, scores), ui = run(pack, "CVAEAnomalyScore", model=tiny_model, image=batch, rank_by="neg_elbo",
                                     samples=2, seed=0, overlay=1.0, filename_prefix="scan/scores", file_names=names)
    # Drawn at 256 px (HEAT_DISPLAY) so the colour bar's label reads; the bar is 256 / 8 px high.
    assert heat.shape == (5, 256 + 32, 256, 3) and ranked.shape == (5, 32, 32, 3)
    header, *lines = scores.splitlines()
    assert header.split("\t") == ["rank", "index", "file", "recon_error", "neg_elbo"]
    rows = [line.split("\t") for line in lines]
    assert rows[0][:3] == ["1", "2", "noise.png"] and torch.allclose(ranked[0], batch[2])
    assert float(rows[0][4]) > max(float(r[4]) for r in rows[1:])
    assert sorted(r[2] for r in rows) == sorted(names.splitlines())
    # On one scale for the batch, the noise image is the most tinted: its reconstruction fails most.
    (batch_heat, _, _), _ = run(pack, "CVAEAnomalyScore", model=tiny_model, image=batch, rank_by="neg_elbo", samples=2,
                                seed=0, overlay=1.0, filename_prefix="scan/b", heat_scale="batch")
    under = torch.nn.functional.interpolate(batch.permute(0, 3, 1, 2), size=256, mode="bilinear").permute(0, 2, 3, 1)
    tint = (batch_heat[:, :256] - under).abs().mean((1, 2, 3))
    assert float(tint[2]) > float(tint[[0, 1, 3, 4]].max())
    # The table is saved in the output folder, reported for `cvae run`, and shown with the rank-1 file named.
    (tsv,) = ui["files"]
    assert Path(tsv) == env.output_directory() / "scan" / "scores_00001_.tsv"
    assert Path(tsv).read_text(encoding="utf-8") == scores + "\n"
    (text,) = ui["text"]
    assert "rank 1" in text and "noise.png" in text.splitlines()[0] and scores in text
    (_, _, again), ui2 = run(pack, "CVAEAnomalyScore", model=tiny_model, image=batch, rank_by="recon_error", samples=2,
                             seed=0, overlay=0.5, filename_prefix="scan/scores")
    assert again.splitlines()[1].split("\t")[:3] == ["1", "2", ""]
    assert ui2["files"][0].endswith("scores_00002_.tsv") and "image 2 of the batch" in ui2["text"][0]


def test_render_walk_sweeps_the_style_as_cvae_walk_does_with_the_same_settings(pack, env, tiny_model, tiny_model_path, tmp_path):
    """One walk planner: a looping, eased, held 3-keyframe walk from disc to ring gives the same
    frames from the node as from `cvae walk --cond-from/--cond-to`."""
    from cvae_art.cli import main

    disc, ring = tiny_model.condition("label=disc"), tiny_model.condition("label=ring")
    (_, keys) = run(pack, "CVAESample", model=tiny_model, count=3, seed=5, temperature=1.0, cond=disc)
    (path,), _ = run(pack, "CVAERenderWalk", model=tiny_model, latents=keys, cond=disc, cond_end=ring,
                     **walk_args(frames=14, easing="ease-in-out", hold=1, loop=True, fps=24.0, quality=80, format="mp4"))
    cli = tmp_path / "cli.mp4"
    assert main(["walk", str(tiny_model_path), "--keyframes", "3", "--seed", "5", "--frames", "14", "--easing", "ease-in-out",
                 "--hold", "1", "--loop", "--cond-from", "label=disc", "--cond-to", "label=ring", "--out", str(cli)]) == 0
    node_frames, cli_frames = (decode_video(p)[0].astype(int) for p in (path, cli))
    assert node_frames.shape == cli_frames.shape == (14, 32, 32, 3)
    # The same plan: the two decode in different batches, whose float rounding can differ by a
    # level here and there, which H.264 then spreads a little; a different plan (the sweep as it
    # used to be in the node: linear and open) is far further off.
    diff = np.abs(node_frames - cli_frames).mean()
    (old_plan,), _ = run(pack, "CVAERenderWalk", model=tiny_model, latents=keys, cond=disc, cond_end=ring,
                         **walk_args(frames=14, easing="linear", hold=1, loop=False, fps=24.0, quality=80, format="mp4"))
    off = np.abs(decode_video(old_plan)[0].astype(int) - cli_frames).mean()
    assert diff < 1.5 and off > 3 * max(diff, 1.0), (diff, off)
    # And the plan itself, frame for frame: the node's conditions are the CLI's.
    from cvae_art.vae_core.schedule import sweep_condition

    planned = pack_module("nodes.video").walk_condition(tiny_model, disc, ring, 3, 14, False,
                                                        ("slerp", "ease-in-out", 1, True, False))
    cli_plan = sweep_condition(disc, ring, 14, 3, "ease-in-out", True, False, 1)
    assert torch.equal(planned["label"], cli_plan["label"])


def test_sample_node_refines_and_returns_the_refined_latent(pack, env, tiny_model):
    c = tiny_model.condition("label=disc", 3)
    (plain, plain_z) = run(pack, "CVAESample", model=tiny_model, count=3, seed=5, temperature=1.0, cond=c, refine=0)
    (img, latent) = run(pack, "CVAESample", model=tiny_model, count=3, seed=5, temperature=1.0, cond=c)
    with torch.inference_mode():
        z = tiny_model.prior_sample(3, 5, 1.0, c)
        assert torch.equal(plain_z["z"], z)
        assert torch.allclose(latent["z"], tiny_model.refine(z, c))
    assert not torch.equal(img, plain)



def test_augment_folder_writes_a_training_folder_inside_the_output_folder(pack, env):
    model = run(pack, "CVAELoadModel", model_name="tiny.safetensors")[0]
    args = dict(model=model, target_folder="aug", per_label=2, seed=5, temperature=1.0, refine=1)
    (dst, report), ui = run(pack, "CVAEAugmentFolder", **args)
    out = env.output_directory() / "aug"
    assert Path(dst) == out and "4 written" in report
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "disc/s5_00000.png", "disc/s5_00001.png", "ring/s5_00000.png", "ring/s5_00001.png"]
    assert sorted(ui["files"]) == sorted(str(p) for p in out.rglob("*.png"))
    (_, again), _ = run(pack, "CVAEAugmentFolder", **args)
    assert "0 written, 4 already there" in again
    ring = run(pack, "CVAECondition", model=model, factor="label", label="ring")[0]
    run(pack, "CVAEAugmentFolder", **{**args, "target_folder": "aug_ring", "cond": ring})
    assert [p.parent.name for p in (env.output_directory() / "aug_ring").rglob("*.png")] == ["ring", "ring"]
    with pytest.raises(ValueError, match="outside"):
        run(pack, "CVAEAugmentFolder", **{**args, "target_folder": "../escape"})


def test_attribute_slider_moves_latents_along_a_named_direction(pack, env, tiny_model):
    z = torch.randn(3, tiny_model.config.latent_dim)
    with_, without = {"z": z[:2] + 1.0}, {"z": z[:2]}
    (direction,) = run(pack, "CVAEAttributeVector", latents_with=with_, latents_without=without, strength=1.0)
    (moved, label), ui = run(pack, "CVAEAttributeSlider", latent={"z": z}, attribute=direction, name=" glow ", amount=-0.5)
    assert torch.allclose(moved["z"], z - 0.5) and label == "glow -0.50" and ui["text"] == ["glow -0.50"]
    (same, _), _ = run(pack, "CVAEAttributeSlider", latent={"z": z}, attribute=direction, name="", amount=0.0)
    assert torch.equal(same["z"], z)
    with pytest.raises(ValueError, match="connect one direction"):
        run(pack, "CVAEAttributeSlider", latent={"z": z}, attribute={"z": z}, name="x", amount=1.0)
