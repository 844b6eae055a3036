"""Real tiny training runs: the loss goes down, resume equals an uninterrupted run (also with the
discriminator on), a cancel or Ctrl-C saves a state that resumes exactly, and the NaN guard stops
with the last good checkpoint intact."""
from __future__ import annotations

import json
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cvae_art.vae_core.checkpoint import load_model, load_state
from cvae_art.vae_core.data import image_set_from_arrays, load_image_set
from cvae_art.vae_core.images import to_tensor
from cvae_art.vae_core.model import CVAE
from cvae_art.vae_core.device import cpu_flags, native_bf16, resolve_amp
from cvae_art.vae_core.train import STATE_FILE, TrainConfig, Trainer, TrainingDiverged, shift_images, train

from conftest import tiny_config, write_shapes_folder

STEPS = 20  # resumed at 10; log every 5


@pytest.fixture(scope="module")
def shapes_set(shapes_folder):
    return load_image_set(shapes_folder, 32, workers=0, progress=False)


def config(data: Path, out: Path, steps: int, adversarial: bool | str = False):
    loss = {}
    if adversarial:
        loss = dict(adv_weight=0.5, adv_start=3, disc_channels=8)
    if adversarial == "latent":  # the latent critic, the style classifier, the cycle term and the PatchGAN on
        # swapped decodes, with flips and shifts: their state and random draws resume too
        loss.update(latent_adv_weight=50.0, style_cls_weight=20.0, cycle_weight=1.0, swap_adv_weight=0.5)
    return replace(tiny_config(data, out, steps, **loss), batch_size=8, log_every=5, checkpoint_every=5, keep_checkpoints=2,
                   augment="flip+shift" if adversarial == "latent" else "none")


@pytest.fixture(scope="module")
def full_runs(shapes_folder, shapes_set, tmp_path_factory):
    """Uninterrupted STEPS-step runs, plain and adversarial, to compare the resumed ones with."""
    runs = {}
    for adversarial in (False, True, "latent"):
        out = tmp_path_factory.mktemp(f"full_{adversarial}")
        runs[adversarial] = train(config(shapes_folder, out, STEPS, adversarial), data=shapes_set, progress=False)
    return runs


def assert_same(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def training_history(history: list[dict]) -> list[dict]:
    """The logged training values: throughput is timing, and validation happens at save points,
    which differ between an interrupted and an uninterrupted run by construction."""
    return [{k: v for k, v in h.items() if k != "images_per_s" and not k.startswith("val_")} for h in history]


def assert_same_run(resumed, full) -> None:
    assert resumed.step == full.step == STEPS
    a, b = load_state(resumed.run_dir / STATE_FILE), load_state(full.run_dir / STATE_FILE)
    for key in ("model", "ema", "opt", "disc", "disc_opt", "critic", "style_cls", "critic_opt"):
        assert (key in a) == (key in b), key
        if key in a:
            assert_same(a[key], b[key], key)
    assert a["step"] == b["step"] == STEPS
    assert training_history(a["history"]) == training_history(b["history"])
    assert training_history(resumed.history) == training_history(full.history)
    assert [h["step"] for h in full.history] == [5, 10, 15, 20]
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(resumed.model.decode(z), full.model.decode(z))  # the EMA weights
    # The learned prior is fitted to the final weights in both runs, so it draws the same latents.
    assert resumed.model.has_learned_prior and full.model.has_learned_prior
    assert torch.equal(resumed.model.prior_sample(4, 0), full.model.prior_sample(4, 0))


# -- learning ------------------------------------------------------------------------------------
def test_loss_goes_down_on_a_fixed_tiny_set(tiny_run, shapes_set):
    losses = [h["loss"] for h in tiny_run.history]
    assert len(losses) == 15 and all(np.isfinite(losses))
    early, late = np.mean(losses[:3]), np.mean(losses[-3:])
    assert late < 0.9 * early, (early, late)  # measured: ~3000 -> ~2040
    # Not just the learned variance: reconstructions really got closer than an untrained model's.
    x = to_tensor(shapes_set.images[:16])
    cond = {"label": torch.nn.functional.one_hot(torch.from_numpy(shapes_set.labels["label"][:16]), 3).float()}
    torch.manual_seed(0)
    untrained = CVAE(tiny_run.model.config).eval()
    with torch.inference_mode():
        errors = [float((m.decode(m.encode(x, cond)[0], cond) - x).pow(2).mean()) for m in (untrained, tiny_run.model)]
    assert errors[1] < 0.7 * errors[0], errors
    assert tiny_run.history[-1]["val_psnr"] > 10


def test_run_folder_and_kept_checkpoints(full_runs):
    run = full_runs[False].run_dir
    assert (run / "config.json").is_file() and (run / "loss.png").is_file()
    assert sorted(p.name for p in (run / "checkpoints").glob("*.safetensors")) == [
        "step_0000015.safetensors", "step_0000020.safetensors"]  # keep_checkpoints=2
    assert list((run / "samples").glob("step_*.png"))


# -- resume --------------------------------------------------------------------------------------
@pytest.mark.parametrize("adversarial", [False, True, "latent"], ids=["plain", "adversarial", "latent-critic"])
def test_resume_equals_an_uninterrupted_run(full_runs, shapes_folder, shapes_set, tmp_path, adversarial):
    half = train(config(shapes_folder, tmp_path, STEPS // 2, adversarial), data=shapes_set, progress=False)
    assert half.step == STEPS // 2
    resumed = train(config(shapes_folder, tmp_path, STEPS, adversarial), data=shapes_set, resume=True, progress=False)
    if adversarial:
        assert "d_loss" in resumed.history[-1] and "adv_w" in resumed.history[-1]
    if adversarial == "latent":
        assert {"z_critic", "z_confusion", "real_cls", "swap_cls", "cycle", "g_adv_swap"} <= set(resumed.history[-1])
    assert_same_run(resumed, full_runs[adversarial])


def test_cancel_from_the_callback_saves_a_state_that_resumes_exactly(full_runs, shapes_folder, shapes_set, tmp_path):
    class Cancelled(Exception):
        pass

    def cancel_at_7(step, total, logs):
        assert total == STEPS
        if step == 7:  # between log points: the partial averages must survive too
            raise Cancelled

    with pytest.raises(Cancelled):
        train(config(shapes_folder, tmp_path, STEPS), data=shapes_set, progress=False, callback=cancel_at_7)
    assert load_state(tmp_path / STATE_FILE)["step"] == 7
    assert load_model(tmp_path / "model.safetensors", device="cpu").step == 7
    resumed = train(config(shapes_folder, tmp_path, STEPS), data=shapes_set, resume=True, progress=False)
    assert_same_run(resumed, full_runs[False])


def test_ctrl_c_in_the_middle_of_a_step_waits_for_the_step_to_end(full_runs, shapes_folder, shapes_set, tmp_path):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT has a custom handler in this process")
    trainer = Trainer(config(shapes_folder, tmp_path, STEPS), data=shapes_set, progress=False)

    def interrupt(optimizer, args, kwargs):
        if trainer.step == 6:  # after the weights moved, before the EMA update of the 7th step
            signal.raise_signal(signal.SIGINT)

    trainer.opt.register_step_post_hook(interrupt)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    assert load_state(tmp_path / STATE_FILE)["step"] == 7
    resumed = train(config(shapes_folder, tmp_path, STEPS), data=shapes_set, resume=True, progress=False)
    assert_same_run(resumed, full_runs[False])


def test_resume_without_a_state_is_a_clear_error(shapes_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--resume: .*state\.safetensors does not exist"):
        train(config(shapes_folder, tmp_path, 4), resume=True, progress=False)


# -- the NaN guard -------------------------------------------------------------------------------
def test_nan_stops_training_and_keeps_the_last_good_checkpoint(shapes_folder, shapes_set, tmp_path):
    trainer = Trainer(config(shapes_folder, tmp_path, STEPS), data=shapes_set, progress=False)
    real_batch = trainer._batch

    def batch_with_nan_pixels(step):
        x, cond, eps, swap = real_batch(step)
        if step >= 8:
            x = x.clone()
            x[:, :, :4, :4] = float("nan")
        return x, cond, eps, swap

    trainer._batch = batch_with_nan_pixels
    with pytest.raises(TrainingDiverged) as err:
        trainer.run()
    msg = str(err.value)
    assert "loss became nan at step 8" in msg
    assert f"The last good checkpoint is {tmp_path / 'model.safetensors'}" in msg and "--lr" in msg
    model = load_model(tmp_path / "model.safetensors", device="cpu")
    assert model.step == 5  # the checkpoint before the divergence, not overwritten
    assert all(torch.isfinite(p).all() for p in model.state_dict().values())
    assert torch.isfinite(model.sample(2, seed=0)).all()
    assert load_state(tmp_path / STATE_FILE)["step"] == 5


def test_a_non_finite_gradient_stops_before_the_weights_change(shapes_folder, shapes_set, tmp_path):
    trainer = Trainer(config(shapes_folder, tmp_path, STEPS), data=shapes_set, progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.model.decoder.last_layer.register_hook(lambda grad: grad * float("inf"))
    with pytest.raises(TrainingDiverged, match=r"gradient norm became (nan|inf) at step 0.*No checkpoint was saved"):
        trainer.run()
    assert_same(trainer.model.state_dict(), before)
    assert all(torch.isfinite(p).all() for p in trainer.ema.parameters())
    assert not (tmp_path / "model.safetensors").exists()


# -- odd data ------------------------------------------------------------------------------------
def test_a_corrupt_file_is_skipped_and_listed_in_the_result(tmp_path):
    data = write_shapes_folder(tmp_path / "data", per_style=4)
    bad = data / "disc" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    result = train(replace(config(data, tmp_path / "run", 2), batch_size=4), progress=False)
    assert [p for p, _ in result.skipped] == [str(bad)]
    assert result.step == 2 and np.isfinite(result.history[-1]["loss"])


def test_a_training_split_smaller_than_the_batch(tmp_path):
    rng = np.random.default_rng(0)
    data = image_set_from_arrays(rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8), {"style": ["a", "b", "a", "b", "a"]})
    cfg = replace(config(Path(""), tmp_path, 3), batch_size=16, val_fraction=0.2)
    result = train(cfg, data=data, progress=False)
    assert result.step == 3 and np.isfinite(result.history[-1]["loss"]) and "val_psnr" in result.history[-1]
    assert result.model.vocab == {"style": ["a", "b"]}


def test_init_starts_from_a_models_weights_and_refuses_another_architecture(tiny_run, shapes_folder, shapes_set, tmp_path):
    from cvae_art.vae_core.checkpoint import CheckpointError

    source = tiny_run.run_dir / "model.safetensors"
    cfg = replace(tiny_config(shapes_folder, tmp_path / "ft", steps=2), init=str(source))
    trainer = Trainer(cfg, data=shapes_set, progress=False)
    for k, v in load_model(source, "cpu").state_dict().items():
        if not k.startswith("prior."):
            assert torch.equal(trainer.model.state_dict()[k], v), k
    bigger = replace(cfg, out=str(tmp_path / "other"), model=replace(cfg.model, latent_dim=24))
    with pytest.raises(CheckpointError, match=r"--init .*model.safetensors.*latent_dim"):
        Trainer(bigger, data=shapes_set, progress=False)


def test_cosine_schedule_decays_to_its_floor_and_resumes_exactly(shapes_folder, shapes_set, tmp_path):
    from cvae_art.vae_core.train import LR_FINAL, learning_rate

    def cosine(out: Path):
        return replace(config(shapes_folder, out, STEPS), lr_schedule="cosine")

    cfg = cosine(tmp_path / "full")
    lrs = [learning_rate(cfg, s) for s in range(STEPS + 1)]
    assert lrs[0] == cfg.lr and lrs[-1] == pytest.approx(LR_FINAL * cfg.lr)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    trainer = Trainer(cfg, data=shapes_set, progress=False)
    full = trainer.run()
    assert trainer.opt.param_groups[0]["lr"] == pytest.approx(learning_rate(cfg, STEPS - 1))

    class Cancelled(Exception):
        pass

    def cancel_at_10(step, total, logs):
        if step == 10:
            raise Cancelled

    with pytest.raises(Cancelled):
        train(cosine(tmp_path / "resumed"), data=shapes_set, progress=False, callback=cancel_at_10)
    resumed = train(cosine(tmp_path / "resumed"), data=shapes_set, resume=True, progress=False)
    assert_same_run(resumed, full)
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, cosine"):
        Trainer(replace(cfg, lr_schedule="linear"), data=shapes_set, progress=False)


def test_resume_with_a_truncated_config_names_the_file(shapes_folder, shapes_set, tmp_path):
    train(config(shapes_folder, tmp_path, 4), data=shapes_set, progress=False)
    (tmp_path / "config.json").write_text('{"train": {')
    with pytest.raises(ValueError, match=r"--resume: .*config\.json is missing, truncated"):
        train(config(shapes_folder, tmp_path, 8), data=shapes_set, resume=True, progress=False)


# -- precision -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cpuinfo, native", [
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n", True),  # AMD EPYC (Zen 4)
    ("flags\t\t: fpu avx2 avx512f amx_tile amx_bf16\n", True),  # Intel Sapphire Rapids
    ("flags\t\t: fpu sse2 avx2 avx512f avx512bw\n", False),  # AVX-512 without BF16: emulated, slower
    ("Features\t: fp asimd bf16 i8mm\n", True),  # Arm with the BF16 extension
    ("", False),  # nothing said: not assumed
])
def test_amp_auto_takes_bf16_only_where_the_cpu_computes_it(cpuinfo, native):
    flags = cpu_flags(cpuinfo)
    assert native_bf16(torch.device("cpu"), flags) is native
    assert resolve_amp("fp32", torch.device("cpu")) is False and resolve_amp("bf16", torch.device("cpu")) is True
    with pytest.raises(ValueError, match="amp must be one of auto, bf16, fp32"):
        resolve_amp("fp16", torch.device("cpu"))


def test_a_bf16_run_trains_records_its_precision_and_reads_old_configs(shapes_folder, shapes_set, tmp_path):
    result = train(replace(config(shapes_folder, tmp_path, STEPS), amp="bf16"), data=shapes_set, progress=False)
    assert result.history[-1]["recon"] < result.history[0]["recon"]
    model = load_model(tmp_path / "model.safetensors")
    assert getattr(model, "train_config")["amp"] == "bf16"
    assert json.loads((tmp_path / "model.json").read_text())["precision"] == "bf16"
    # Runs written before "auto" said amp: true / false.
    assert TrainConfig.from_dict({"amp": True}).amp == "bf16" and TrainConfig.from_dict({"amp": False}).amp == "fp32"


def test_bf16_runs_the_judges_in_bf16_and_keeps_their_losses_fp32(shapes_folder, shapes_set, tmp_path):
    # The PatchGAN, the latent critic and the style classifier cost as much as the VAE: under
    # --amp bf16 they must compute in bf16 too, while every loss they feed stays an fp32 number.
    cfg = replace(config(shapes_folder, tmp_path, 4, "latent"), amp="bf16")
    cfg.loss.adv_start = 0
    trainer = Trainer(cfg, data=shapes_set, progress=False)
    seen: dict[str, set] = {}
    judges = {"disc": trainer.loss.disc, "critic": trainer.loss.critic, "style_cls": trainer.loss.style_cls}
    for name, judge in judges.items():
        first = next(m for m in judge.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
        first.register_forward_hook(lambda m, i, out, name=name: seen.setdefault(name, set()).add(out.dtype))
    logs = trainer.train_step(0)
    assert seen == {name: {torch.bfloat16} for name in judges}
    for key in ("g_adv", "d_loss", "z_critic", "real_cls", "swap_cls", "loss"):
        assert np.isfinite(logs[key]), key
    with torch.autocast("cpu", torch.bfloat16):
        assert trainer.loss.disc(to_tensor(shapes_set.images[:2])).dtype == torch.float32


def test_shift_moves_each_image_and_repeats_its_edges():
    x = torch.rand(3, 3, 16, 16)
    out = shift_images(x, torch.tensor([[2, 0], [0, -3], [0, 0]]))
    assert torch.equal(out[0, :, 2:], x[0, :, :-2]) and torch.equal(out[0, :, :2], x[0, :, :1].expand(-1, 2, -1))
    assert torch.equal(out[1, :, :, :-3], x[1, :, :, 3:]) and torch.equal(out[1, :, :, -3:], x[1, :, :, -1:].expand(-1, -1, 3))
    assert torch.equal(out[2], x[2])


def test_augmented_batches_are_the_plain_ones_flipped_and_shifted(shapes_folder, shapes_set, tmp_path):
    # no label dropout: its draws come after the augmentation's, which would change them
    plain = Trainer(replace(config(shapes_folder, tmp_path / "a", 4), label_dropout=0.0), data=shapes_set, progress=False)
    both = Trainer(replace(config(shapes_folder, tmp_path / "b", 4), label_dropout=0.0, augment="flip+shift"),
                   data=shapes_set, progress=False)
    x, cond, _, _ = plain._batch(3)
    y, cond_y, _, _ = both._batch(3)
    assert_same(cond, cond_y)  # the same images and labels, only moved
    assert not torch.equal(x, y)
    # every augmented image is its plain image, maybe mirrored, then moved by at most 2 px (32 / 16)
    for a, b in zip(x, y):
        assert any(torch.equal(shift_images(m[None], torch.tensor([[dy, dx]]))[0], b)
                   for m in (a, a.flip(-1)) for dy in range(-2, 3) for dx in range(-2, 3))
    with pytest.raises(ValueError, match="augment must be one of none, flip, shift, flip\\+shift, got 'rotate'"):
        Trainer(replace(config(shapes_folder, tmp_path / "c", 4), augment="rotate"), data=shapes_set, progress=False)
