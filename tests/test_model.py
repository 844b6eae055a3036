"""The conditional VAE: shapes at every resolution, conditions (label, blend, null), seeded sampling."""
from __future__ import annotations

import pytest
import torch

from cvae_art.vae_core.conditions import ConditionError, blend_conditions, make_condition
from cvae_art.vae_core.losses import PatchDiscriminator
from cvae_art.vae_core.model import CVAE, ModelConfig


def tiny(resolution: int = 32, **kw) -> CVAE:
    torch.manual_seed(0)
    cfg = dict(resolution=resolution, latent_dim=8, base_channels=4, max_channels=16, conditions={"style": ["a", "b"]})
    return CVAE(ModelConfig(**{**cfg, **kw})).eval()


@pytest.mark.parametrize("resolution", [32, 64, 128, 256])
def test_encode_decode_shapes_at_every_resolution(resolution):
    model = tiny(resolution)
    x = torch.rand(2, 3, resolution, resolution)
    cond = model.condition("style=b", 2)
    mu, logvar = model.encode(x, cond)
    assert mu.shape == logvar.shape == (2, 8)
    out = model.decode(mu, cond)
    assert out.shape == (2, 3, resolution, resolution)
    assert out.min() >= 0 and out.max() <= 1
    logits, mu2, _ = model(x, cond, eps=torch.zeros(2, 8))
    assert logits.shape == (2, 3, resolution, resolution)
    assert torch.allclose(torch.sigmoid(logits), out, atol=1e-6)  # eps = 0 decodes the mean
    # The discriminator must leave at least one patch at the smallest resolution too.
    patches = PatchDiscriminator(channels=4)(out)
    assert patches.shape[:2] == (2, 1) and min(patches.shape[2:]) >= 1


@pytest.mark.parametrize("resolution", [16, 48, 512])
def test_resolution_must_be_a_power_of_two_from_32_to_256(resolution):
    with pytest.raises(ValueError, match="power of two"):
        ModelConfig(resolution=resolution)


def test_wrong_image_size_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected images \[B, 3, 32, 32\], got \[1, 3, 31, 31\]"):
        tiny().encode(torch.rand(1, 3, 31, 31))


def test_unconditional_model_encodes_and_decodes():
    model = tiny(conditions={})
    assert model.vocab == {}
    mu, _ = model.encode(torch.rand(3, 3, 32, 32))
    assert model.decode(mu).shape == (3, 3, 32, 32)


def test_changing_the_condition_changes_the_decode(tiny_model):
    z = tiny_model.prior_sample(6, seed=1)
    with torch.inference_mode():
        disc = tiny_model.decode(z, tiny_model.condition("label=disc", 6))
        disc_again = tiny_model.decode(z, tiny_model.condition("label=disc", 6))
        ring = tiny_model.decode(z, tiny_model.condition("label=ring", 6))
    assert torch.equal(disc, disc_again)
    assert torch.isfinite(ring).all()
    assert (disc - ring).abs().mean() > 0.01  # measured 0.07 after the 150 fixture steps


def test_null_condition(tiny_model):
    cond = tiny_model.condition(None, 4)
    assert torch.equal(cond["label"], torch.tensor([[0.0, 0.0, 1.0]]).expand(4, -1))
    assert torch.equal(tiny_model.condition("label=null", 4)["label"], cond["label"])
    z = tiny_model.prior_sample(4, seed=2)
    with torch.inference_mode():
        null = tiny_model.decode(z, cond)
        default = tiny_model.decode(z)  # no condition at all = null
        disc = tiny_model.decode(z, tiny_model.condition("label=disc", 4))
    assert torch.equal(null, default)
    assert torch.isfinite(null).all() and null.min() >= 0 and null.max() <= 1
    assert not torch.equal(null, disc)


def test_blend_weights_are_a_weighted_mix_of_the_embeddings(tiny_model):
    table = tiny_model.embed.tables["label"].detach()
    cond = tiny_model.condition("label=disc:1,ring:3", 2)  # normalised to 0.25 / 0.75
    assert torch.allclose(cond["label"], torch.tensor([[0.25, 0.75, 0.0]]).expand(2, -1))
    with torch.no_grad():
        mixed = tiny_model.embed(cond)
    assert torch.allclose(mixed, (0.25 * table[0] + 0.75 * table[1]).expand(2, -1), atol=1e-6)

    a, b = tiny_model.condition("label=disc"), tiny_model.condition("label=ring")
    assert torch.allclose(blend_conditions(a, b, 0.75)["label"], cond["label"][:1])
    # A per-row t sweeps from a to b.
    sweep = blend_conditions(a, b, torch.tensor([0.0, 0.5, 1.0]))["label"]
    assert torch.allclose(sweep, torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0]]))


def test_unknown_label_names_the_label_and_the_known_ones(tiny_model):
    with pytest.raises(ConditionError) as err:
        tiny_model.condition("label=square")
    assert "'square'" in str(err.value) and "disc" in str(err.value) and "ring" in str(err.value)
    with pytest.raises(ConditionError, match=r"unknown condition factor.*'colour'.*\['label'\]"):
        tiny_model.condition("colour=red")
    with pytest.raises(ConditionError, match="not a number"):
        make_condition({"label": ["disc"]}, "label=disc:lots")


def test_sampling_is_seeded_and_independent_of_the_global_generator(tiny_model):
    a = tiny_model.sample(4, seed=3)
    torch.manual_seed(123)
    torch.rand(10)
    b = tiny_model.sample(4, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, tiny_model.sample(4, seed=4))
    z = tiny_model.prior_sample(3, seed=5, temperature=0.0, prior="normal")
    assert torch.equal(z, torch.zeros_like(z))
    # T = 0 under the learned prior: the means of the mixture components drawn.
    z = tiny_model.prior_sample(3, seed=5, temperature=0.0)
    assert all(any(torch.allclose(row, m) for m in tiny_model.prior.means) for row in z)
    assert torch.allclose(tiny_model.prior_sample(3, seed=5, temperature=0.5, prior="normal"),
                          0.5 * tiny_model.prior_sample(3, seed=5, prior="normal"))


def test_condition_takes_a_spec_or_a_cond_of_this_model_and_refuses_another_models():
    m = CVAE(ModelConfig(resolution=32, latent_dim=4, base_channels=8, max_channels=16, conditions={"style": ["a", "b"]}))
    made = m.condition("style=a:0.25,b:0.75", 1)
    again = m.condition(made, 3)
    assert again["style"].shape == (3, 3) and torch.equal(again["style"][2], made["style"][0])
    with pytest.raises(ConditionError, match="other labels than this model's"):
        m.condition({"style": torch.tensor([[1.0, 0.0, 0.0, 0.0]])}, 1)
    with pytest.raises(ConditionError, match="batch 2, expected 1 or 3"):
        m.condition(m.condition("style=a", 2), 3)
