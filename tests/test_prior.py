"""The learned prior: EM on known mixtures, conditional sampling, storage in the model file,
`cvae fit-prior` on a real folder, and the refusals (a prior for another model, no images)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from cvae_art.cli import main
from cvae_art.vae_core.checkpoint import CheckpointError, load_model, save_model
from cvae_art.vae_core.conditions import make_condition
from cvae_art.vae_core.model import REFINE_DEFAULT, REFINE_STEP
from cvae_art.vae_core.prior import PriorConfig, fit_mixture, fit_prior_on_folder

VOCAB = {"style": ["a", "b"]}


def two_clusters(n: int = 400, d: int = 6, seed: int = 0):
    """Label a around +3 on every axis, label b around -3, with different spreads."""
    g = torch.Generator().manual_seed(seed)
    za = 3 + 0.5 * torch.randn(n, d, generator=g)
    zb = -3 + 1.5 * torch.randn(n, d, generator=g)
    return torch.cat([za, zb]), {"style": np.r_[np.zeros(n, np.int64), np.ones(n, np.int64)]}


def test_em_recovers_two_labelled_clusters():
    z, labels = two_clusters()
    prior = fit_mixture(z, labels, VOCAB, PriorConfig(components=2, shrinkage=1.0))
    order = prior.means[:, 0].argsort(descending=True)
    assert torch.allclose(prior.means[order], torch.tensor([[3.0] * 6, [-3.0] * 6]), atol=0.25)
    stds = torch.diagonal(prior.scale_tril @ prior.scale_tril.transpose(1, 2), dim1=1, dim2=2).sqrt()[order]
    assert torch.allclose(stds.mean(1), torch.tensor([0.5, 1.5]), atol=0.15)
    # Each component learned which label lives in it.
    assert prior.label_logp("style")[order].exp()[:, 0].tolist() == pytest.approx([1.0, 0.0], abs=0.02)


def test_conditional_samples_come_from_the_asked_label_and_blends_mix():
    z, labels = two_clusters()
    prior = fit_mixture(z, labels, VOCAB, PriorConfig(components=4))
    for label, sign in (("a", 1), ("b", -1)):
        s = prior.sample(500, torch.Generator().manual_seed(1), 1.0, make_condition(VOCAB, f"style={label}"))
        assert (torch.sign(s.mean(1)) == sign).float().mean() > 0.98
    blend = prior.sample(2000, torch.Generator().manual_seed(1), 1.0, make_condition(VOCAB, "style=a:0.5,b:0.5"))
    assert 0.4 < float((blend.mean(1) > 0).float().mean()) < 0.6
    null = prior.sample(2000, torch.Generator().manual_seed(1), 1.0, None)
    assert 0.4 < float((null.mean(1) > 0).float().mean()) < 0.6


def test_log_prob_is_a_normalised_density():
    z, labels = two_clusters(d=2)
    prior = fit_mixture(z, labels, VOCAB, PriorConfig(components=3))
    # Integrate p(z) over a grid that holds all the mass.
    xs = torch.linspace(-12, 12, 241)
    grid = torch.cartesian_prod(xs, xs)
    mass = float(prior.log_prob(grid).exp().sum() * (xs[1] - xs[0]) ** 2)
    assert mass == pytest.approx(1.0, abs=0.01)
    on, off = prior.log_prob(torch.tensor([[3.0, 3.0], [0.0, 8.0]]))
    assert on > off + 10


def test_same_seed_same_latents_and_temperature_scales_around_the_component_mean():
    z, labels = two_clusters()
    prior = fit_mixture(z, labels, VOCAB, PriorConfig(components=2))
    draw = lambda t: prior.sample(8, torch.Generator().manual_seed(5), t)  # noqa: E731
    assert torch.equal(draw(1.0), draw(1.0))
    means = draw(0.0)
    assert all(min(float((m - c).norm()) for c in prior.means) < 1e-5 for m in means)
    assert torch.allclose(draw(2.0) - means, 2 * (draw(1.0) - means), atol=1e-5)


def test_fitting_refuses_broken_encodings():
    with pytest.raises(ValueError, match="NaN"):
        fit_mixture(torch.full((10, 3), float("nan")), {"style": np.zeros(10, np.int64)}, VOCAB)
    with pytest.raises(ValueError, match="at least 2"):
        fit_mixture(torch.zeros(1, 3), {"style": np.zeros(1, np.int64)}, VOCAB)
    with pytest.raises(ValueError, match="components"):
        PriorConfig(components=0)


def test_per_label_components_follow_each_labels_own_latents():
    g = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(2000, 2, generator=g), 3 * torch.randn(2000, 2, generator=g)])  # same centre
    labels = {"style": np.repeat([0, 1], 2000)}
    split = fit_mixture(z, labels, VOCAB, PriorConfig(components=2))
    shared = fit_mixture(z, labels, VOCAB, PriorConfig(components=1, per_label=False))
    assert split.components == 2 and split.info["split_by"] == "style" and shared.info["split_by"] is None
    for label, std in (("a", 1.0), ("b", 3.0)):
        cond = make_condition(VOCAB, f"style={label}")
        assert float(split.sample(4000, torch.Generator().manual_seed(1), 1.0, cond).std()) == pytest.approx(std, rel=0.08)
        # One shared component cannot tell the labels apart: both draw from the pooled spread.
        assert float(shared.sample(4000, torch.Generator().manual_seed(1), 1.0, cond).std()) == pytest.approx(2.24, rel=0.08)
    assert split.log_weights.exp().tolist() == pytest.approx([0.5, 0.5], abs=1e-6)
    # Uneven labels still get exactly the asked number of components, in proportion.
    uneven = fit_mixture(z[:2500], {"style": labels["style"][:2500]}, VOCAB, PriorConfig(components=5))
    assert uneven.components == 5 and sorted(uneven.label_logp("style").argmax(1).tolist()) == [0, 0, 0, 0, 1]


def test_latents_without_a_label_get_components_that_favour_no_label():
    z, labels = two_clusters()
    unknown = labels["style"].copy()
    unknown[::4] = -1
    prior = fit_mixture(z, {"style": unknown}, VOCAB, PriorConfig(components=8))
    p = prior.label_logp("style").exp()
    assert prior.components == 8 and float(prior.log_weights.exp().sum()) == pytest.approx(1.0, abs=1e-5)
    neutral = (p - 0.5).abs().max(1).values < 1e-6
    assert int(neutral.sum()) == 2  # a quarter of the latents, a quarter of the components
    assert float(p[~neutral].max(1).values.min()) > 0.97  # one smoothing pseudo-count in ~100 latents


# -- in the model file ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plain_model_path(tiny_model_path, tmp_path_factory):
    """The tiny model as a checkpoint from before learned priors (training now fits one)."""
    model = load_model(tiny_model_path, "cpu")
    model.prior = None
    return save_model(model, tmp_path_factory.mktemp("plain") / "plain.safetensors", step=model.step,
                      extra={"train_config": model.train_config})


@pytest.fixture(scope="module")
def model_with_prior(plain_model_path, shapes_folder, tmp_path_factory):
    """The plain model given a prior fitted on the shapes folder, saved to a new file."""
    out = tmp_path_factory.mktemp("prior") / "with_prior.safetensors"
    assert main(["fit-prior", str(plain_model_path), str(shapes_folder), "--out", str(out), "--workers", "0",
                 "--components", "8"]) == 0
    return out


def test_training_fits_a_prior_to_its_training_split_at_the_end(tiny_model, shapes_folder):
    from cvae_art.vae_core.data import load_image_set

    train_idx, val_idx = load_image_set(shapes_folder, 32, workers=0, progress=False).split(0.1)
    assert len(val_idx) > 0
    assert tiny_model.has_learned_prior and tiny_model.prior.info["images"] == len(train_idx)


def test_fit_prior_cli_writes_a_new_file_that_samples_like_the_data(model_with_prior, plain_model_path, shapes_folder):
    fitted, plain = load_model(model_with_prior, "cpu"), load_model(plain_model_path, "cpu")
    assert fitted.has_learned_prior and fitted.prior.info["components"] == 8
    # Same weights; the input file is untouched and still has no prior.
    assert not plain.has_learned_prior
    for k, v in plain.state_dict().items():
        assert torch.equal(v, fitted.state_dict()[k]), k
    meta = json.loads(model_with_prior.with_suffix(".json").read_text())
    assert meta["prior"]["kind"] == "mixture" and meta["train_config"]["val_fraction"] == 0.1
    # The fitted prior explains fresh posterior draws of the data better than N(0, I) does.
    from cvae_art.vae_core.data import load_image_set
    from cvae_art.vae_core.prior import encode_aggregate

    data = load_image_set(shapes_folder, 32, workers=0, progress=False)
    z, _ = encode_aggregate(fitted, data.images, data.labels, draws=2, seed=99)
    normal_logp = -0.5 * z.pow(2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)
    assert float(fitted.prior.log_prob(z).mean()) > float(normal_logp.mean()) + 1.0
    assert torch.equal(plain.prior_sample(4, 0), fitted.prior_sample(4, 0, prior="normal"))


def test_sample_cli_uses_the_learned_prior_and_notes_a_missing_one(model_with_prior, plain_model_path, tmp_path, capsys):
    from PIL import Image

    for name, path in (("learned", model_with_prior), ("plain", plain_model_path)):
        assert main(["sample", str(path), "--n", "4", "--out", str(tmp_path / f"{name}.png"), "--cond", "label=disc"]) == 0
    err = capsys.readouterr().err
    assert err.count("no learned prior") == 1 and "cvae fit-prior" in err
    a, b = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in ("learned", "plain"))
    assert a.shape == b.shape and not np.array_equal(a, b)
    assert main(["sample", str(model_with_prior), "--n", "4", "--prior", "normal", "--out", str(tmp_path / "n.png"),
                 "--cond", "label=disc"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "n.png")), b)


def test_fit_prior_refuses_to_overwrite_its_input_and_a_folder_without_images(tiny_model_path, tmp_path, capsys):
    before = tiny_model_path.read_bytes()
    assert main(["fit-prior", str(tiny_model_path), str(tmp_path), "--out", str(tiny_model_path)]) == 2
    (tmp_path / "notes.txt").write_text("not an image")
    assert main(["fit-prior", str(tiny_model_path), str(tmp_path), "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "no images found" in err and str(tmp_path) in err
    assert tiny_model_path.read_bytes() == before and not (tmp_path / "x.safetensors").exists()


def test_a_prior_that_does_not_match_the_model_is_refused_naming_the_file(model_with_prior, tmp_path):
    tensors = load_file(str(model_with_prior))
    from safetensors import safe_open

    with safe_open(str(model_with_prior), framework="pt") as f:
        meta = f.metadata()
    bad = dict(tensors)
    bad["prior.means"] = torch.zeros(8, 5)  # 5-dim latents for a 16-dim model
    path = tmp_path / "wrong_dims.safetensors"
    save_file(bad, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="wrong_dims.safetensors.*5-dim latents"):
        load_model(path, "cpu")
    bad = {k: v for k, v in tensors.items() if k != "prior.label_logp_label"}
    path = tmp_path / "wrong_labels.safetensors"
    save_file(bad, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="wrong_labels.safetensors.*condition 'label'"):
        load_model(path, "cpu")


def test_a_saved_prior_round_trips_exactly_also_in_half_precision(model_with_prior, tmp_path):
    model = load_model(model_with_prior, "cpu")
    for dtype in (None, torch.float16):
        path = save_model(model, tmp_path / f"copy_{dtype}.safetensors", dtype=dtype)
        again = load_model(path, "cpu")
        assert torch.equal(again.prior_sample(16, 3), model.prior_sample(16, 3))


def test_fit_on_a_folder_whose_labels_the_model_does_not_know(tiny_model, tmp_path):
    from conftest import write_shapes_folder

    root = write_shapes_folder(tmp_path / "other", per_style=4)
    for sub in ("disc", "ring"):
        (root / sub).rename(root / f"x{sub}")
    with pytest.raises(ValueError, match="no image has a label of the model's condition 'label'"):
        fit_prior_on_folder(tiny_model, root, PriorConfig(components=2), workers=0)


def test_an_old_model_without_a_prior_samples_from_the_standard_normal(plain_model_path):
    model = load_model(plain_model_path, "cpu")
    assert not model.has_learned_prior
    z = model.prior_sample(2000, seed=0)
    assert abs(float(z.std()) - 1.0) < 0.02 and abs(float(z.mean())) < 0.02
    assert math.isclose(float(model.prior_sample(10, 0, 0.5).std() / model.prior_sample(10, 0).std()), 0.5, rel_tol=1e-5)


# -- transport: restyle carries a latent from one label's part of the prior to another's ----------
def test_transport_maps_one_labels_gaussian_onto_anothers():
    z, labels = two_clusters(n=3000, d=4)
    prior = fit_mixture(z, labels, VOCAB, PriorConfig(components=2, shrinkage=1.0))
    a, b = make_condition(VOCAB, "style=a"), make_condition(VOCAB, "style=b")
    moved = prior.transport(z[:3000], a, b)
    assert torch.allclose(moved.mean(0), z[3000:].mean(0), atol=0.05)
    assert torch.allclose(moved.std(0), z[3000:].std(0), rtol=0.05)
    # A monotone map, (T(x) - T(y)) . (x - y) >= 0: neighbours stay neighbours, so the content stays.
    dz, dm = z[:200, None] - z[None, :200], moved[:200, None] - moved[None, :200]
    assert float((dz * dm).sum(-1).min()) >= -1e-4
    # Back again is the identity, and a latent asked to stay in its label stays exactly.
    assert torch.allclose(prior.transport(moved, b, a), z[:3000], atol=1e-4)
    assert torch.equal(prior.transport(z[:10], a, a), z[:10])
    # Row-wise conditions: each row moves by its own pair; a half blend lands half way.
    rows = {"style": torch.cat([a["style"], b["style"]])}
    both = prior.transport(z[[0, 3000]], rows, {"style": torch.cat([b["style"], b["style"]])})
    assert torch.allclose(both[0], moved[0], atol=1e-5) and torch.equal(both[1], z[3000])
    half = prior.transport(z[:3000], a, make_condition(VOCAB, "style=a:0.5,b:0.5"))
    assert float(half.mean()) == pytest.approx(float(z.mean()), abs=0.1)


def test_a_prior_saved_without_label_moments_still_transports_with_its_mixture(model_with_prior, tmp_path):
    from safetensors import safe_open

    with safe_open(str(model_with_prior), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(model_with_prior))
    old = {k: v for k, v in tensors.items() if not k.startswith(("prior.label_mean_", "prior.label_cov_"))}
    path = tmp_path / "before_label_moments.safetensors"
    save_file(old, str(path), metadata=meta)
    model = load_model(path, "cpu")
    assert not model.prior.label_moments
    vocab = model.vocab["label"]
    z = model.prior_sample(64, 0, cond=model.condition(f"label={vocab[0]}", 1))
    moved = model.prior.transport(z, model.condition(f"label={vocab[0]}", 1), model.condition(f"label={vocab[1]}", 1))
    assert torch.isfinite(moved).all() and not torch.equal(moved, z)
    bad = dict(tensors)
    bad["prior.label_mean_label"] = torch.zeros(5, 3)
    path = tmp_path / "bad_moments.safetensors"
    save_file(bad, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="bad_moments.safetensors.*label moments"):
        load_model(path, "cpu")


def test_sampling_refines_by_decoding_and_encoding_again(model_with_prior):
    m = load_model(model_with_prior, "cpu")
    c = m.condition(f"label={m.vocab['label'][0]}", 4)
    with torch.inference_mode():
        z = m.prior_sample(4, 3, 1.0, c)
        passes = [z]  # each pass moves REFINE_STEP of the way to the re-encoding of the drawing
        for _ in range(REFINE_DEFAULT):
            again, _ = m.encode(m.decode(passes[-1], c), c)
            passes.append(passes[-1] + REFINE_STEP * (again - passes[-1]))
        assert torch.equal(m.sample(4, c, seed=3, refine=0), m.decode(z, c))
        assert torch.allclose(m.sample(4, c, seed=3, refine=2), m.decode(passes[2], c), atol=1e-6)
        assert torch.allclose(m.sample(4, c, seed=3), m.decode(passes[-1], c), atol=1e-6)  # the default
        # damped: one pass is not the full step to the re-encoding
        full, _ = m.encode(m.decode(z, c), c)
        assert not torch.allclose(m.refine(z, c, 1), full, atol=1e-3)
    with pytest.raises(ValueError, match="refine must be a whole number from 0 to 32"):
        m.sample(4, c, refine=33)


# -- merge: a model between two others' weights, given its own prior ------------------------------
@pytest.fixture(scope="module")
def fine_tuned_path(tiny_model_path, shapes_folder, tmp_path_factory):
    """The tiny model fine-tuned 20 real steps further: the second end of a merge."""
    from conftest import tiny_config

    from cvae_art.vae_core.train import train

    cfg = tiny_config(shapes_folder, tmp_path_factory.mktemp("fine"), steps=20)
    cfg.init, cfg.seed = str(tiny_model_path), 3
    return train(cfg, progress=False).run_dir / "model.safetensors"


def test_merge_writes_the_weights_between_with_a_fitted_prior(tiny_model_path, fine_tuned_path, shapes_folder, tmp_path):
    first, second = load_model(tiny_model_path, "cpu"), load_model(fine_tuned_path, "cpu")
    out = tmp_path / "merged.safetensors"
    assert main(["merge", str(tiny_model_path), str(fine_tuned_path), str(shapes_folder), "--weight", "0.25",
                 "--out", str(out), "--workers", "0"]) == 0
    merged = load_model(out, "cpu")
    a, b, m = first.state_dict(), second.state_dict(), merged.state_dict()
    moved = [k for k in b if not k.startswith("prior.") and not torch.equal(a[k], b[k])]
    assert moved  # the fine-tune changed weights, so the check below can fail
    for k in moved:
        assert torch.allclose(m[k], 0.75 * a[k] + 0.25 * b[k], atol=1e-6), k
    # Its own prior, fitted to its own encodings of the training split, not either input's.
    assert merged.has_learned_prior and merged.prior.info["images"] == second.prior.info["images"]
    assert not torch.equal(merged.prior.means, second.prior.means)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["merged"]["weight"] == 0.25 and meta["train_config"]["val_fraction"] == 0.1


def test_merge_refuses_other_architectures_weights_out_of_range_and_its_inputs_as_output(
        tiny_model_path, fine_tuned_path, shapes_folder, tmp_path, capsys):
    from cvae_art.vae_core.model import CVAE, ModelConfig

    other = load_model(tiny_model_path, "cpu").config.to_dict() | {"latent_dim": 8}
    wider = save_model(CVAE(ModelConfig.from_dict(other)), tmp_path / "latent8.safetensors")
    before = fine_tuned_path.read_bytes()
    args = [str(tiny_model_path), str(fine_tuned_path), str(shapes_folder), "--workers", "0"]
    assert main(["merge", *args, "--weight", "0.5", "--out", str(fine_tuned_path)]) == 2
    assert main(["merge", str(tiny_model_path), str(wider), str(shapes_folder), "--weight", "0.5",
                 "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "is an input model" in err and "differ in latent_dim" in err
    for bad in ("1.5", "nan", "-0.1"):
        with pytest.raises(SystemExit):
            main(["merge", *args, "--weight", bad, "--out", str(tmp_path / "y.safetensors")])
        assert "--weight" in capsys.readouterr().err
    assert fine_tuned_path.read_bytes() == before and not list(tmp_path.glob("[xy].safetensors"))
