"""Every loss term against an independent computation: KL (closed form, free bits, warm-up),
reconstruction likelihoods, the adaptive adversarial weight, hinge loss, SSIM / MS-SSIM and LPIPS."""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl
from torch.nn import functional as F

from cvae_art.vae_core._torchvision import import_torchvision
from cvae_art.vae_core.losses import (
    LPIPS_BACKBONES,
    LossConfig,
    LPIPSWeightsMissing,
    Swapped,
    MSSSIMLoss,
    PatchDiscriminator,
    VAELoss,
    adaptive_weight,
    build_lpips,
    hinge_d_loss,
    kl_divergence,
    kl_term,
    kl_weight,
    reconstruction_nll,
    ssim_loss,
)
from cvae_art.vae_core.model import CVAE, ModelConfig


# -- KL ------------------------------------------------------------------------------------------
def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 7, generator=g) * 2, torch.randn(5, 7, generator=g) * 2
    expected = torch_kl(Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros(5, 7), torch.ones(5, 7)))
    assert torch.allclose(kl_divergence(mu, logvar), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2, 3))
    # Without free bits the term is the batch mean of the per-image KL.
    assert torch.allclose(kl_term(mu, logvar, 0.0), expected.sum(1).mean())


def test_free_bits_make_small_dimensions_free():
    # Dimension 0 costs 2 nats (mu = 2), dimension 1 costs 0.125 (mu = 0.5), under the 0.5 floor.
    mu = torch.tensor([[2.0, 0.5], [2.0, 0.5]], requires_grad=True)
    logvar = torch.zeros(2, 2)
    term = kl_term(mu, logvar, free_bits=0.5)
    assert torch.allclose(term, torch.tensor(2.0 + 0.5))
    term.backward()
    assert torch.all(mu.grad[:, 0] > 0)  # above the floor: pushed toward the prior
    assert torch.equal(mu.grad[:, 1], torch.zeros(2))  # below it: free


def test_kl_warmup_ramps_linearly_to_beta():
    cfg = LossConfig(beta=2.0, kl_warmup_steps=10)
    assert [kl_weight(cfg, s) for s in range(12)] == pytest.approx([2.0 * (s + 1) / 10 for s in range(10)] + [2.0, 2.0])
    assert kl_weight(LossConfig(beta=0.5, kl_warmup_steps=0), 0) == 0.5


# -- reconstruction ------------------------------------------------------------------------------
def test_reconstruction_likelihoods():
    g = torch.Generator().manual_seed(1)
    logits, target = torch.randn(3, 3, 4, 4, generator=g), torch.rand(3, 3, 4, 4, generator=g)
    x = torch.sigmoid(logits)
    log_sigma = torch.tensor(-0.7)
    gauss = -Normal(x, log_sigma.exp()).log_prob(target).flatten(1).sum(1)
    assert torch.allclose(reconstruction_nll("gaussian", logits, target, log_sigma), gauss, rtol=1e-5)
    bce = F.binary_cross_entropy(x, target, reduction="none").flatten(1).sum(1)
    assert torch.allclose(reconstruction_nll("bce", logits, target, log_sigma), bce, rtol=1e-4)
    assert torch.allclose(reconstruction_nll("mse", logits, target, log_sigma), ((x - target) ** 2).flatten(1).sum(1))
    assert torch.allclose(reconstruction_nll("l1", logits, target, log_sigma), (x - target).abs().flatten(1).sum(1))
    with pytest.raises(ValueError, match="unknown reconstruction loss 'huber'"):
        reconstruction_nll("huber", logits, target, log_sigma)


# -- adversarial ---------------------------------------------------------------------------------
def test_adaptive_weight_against_a_hand_computation():
    g = torch.Generator().manual_seed(2)
    W = torch.randn(3, 4, generator=g).requires_grad_()
    x, t, v = torch.randn(4, generator=g), torch.randn(3, generator=g), torch.randn(3, generator=g)
    h = W @ x
    nll = ((h - t) ** 2).sum()
    g_loss = -(v * torch.tanh(h)).sum()
    # d nll / dW = 2 (Wx - t) x^T ;  d g / dW = -(v * (1 - tanh^2(Wx))) x^T
    with torch.no_grad():
        hd = W @ x
        nll_grad = torch.outer(2 * (hd - t), x)
        g_grad = torch.outer(-(v * (1 - torch.tanh(hd) ** 2)), x)
        expected = nll_grad.norm() / (g_grad.norm() + 1e-4)
    w = adaptive_weight(nll, g_loss, W)
    assert not w.requires_grad
    assert torch.allclose(w, expected, rtol=1e-5)
    # The graph is kept for the real backward pass.
    (nll + w * g_loss).backward()
    assert W.grad is not None
    # A generator loss with no gradient at the layer is capped, not infinite.
    W2 = torch.randn(2, 2).requires_grad_()
    assert adaptive_weight((W2 * 100).sum(), W2.sum() * 0.0, W2, max_weight=50.0) == 50.0


def test_generator_loss_uses_the_adaptive_weight_at_the_decoders_last_layer():
    torch.manual_seed(0)
    model = CVAE(ModelConfig(resolution=32, latent_dim=8, base_channels=4, max_channels=16, recon="mse"))
    loss = VAELoss(LossConfig(adv_weight=0.5, adv_start=0, disc_channels=4), "mse")
    x = torch.rand(2, 3, 32, 32)
    eps = torch.randn(2, 8)
    logits, mu, logvar = model(x, None, eps)
    total, logs = loss.generator(x, logits, mu, logvar, model.log_sigma, model.decoder.last_layer, step=0)
    assert {"recon", "kl", "g_adv", "adv_w", "loss"} <= set(logs)
    # Independently: fresh graphs, gradients of each term on their own at ups[-1].weight.
    logits, mu, logvar = model(x, None, eps)
    nll = reconstruction_nll("mse", logits, x, model.log_sigma).mean()
    g_loss = -loss.disc(torch.sigmoid(logits)).mean()
    last = model.decoder.ups[-1].weight
    (gn,) = torch.autograd.grad(nll, last, retain_graph=True)
    (gg,) = torch.autograd.grad(g_loss, last)
    assert logs["adv_w"] == pytest.approx(0.5 * float(gn.norm() / (gg.norm() + 1e-4)), rel=1e-4)
    assert logs["loss"] == pytest.approx(float(total.detach()))
    # The generator step must not train the discriminator.
    model.zero_grad()
    total.backward()
    assert all(p.grad is None for p in loss.disc.parameters())
    # Its one pass through the PatchGAN gives the gradients of nll + KL + w * g_loss backpropagated
    # through it the plain way.
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    loss.disc.requires_grad_(False)
    logits, mu, logvar = model(x, None, eps)
    nll = reconstruction_nll("mse", logits, x, model.log_sigma).mean()
    reference = nll + kl_weight(loss.cfg, 0) * kl_term(mu, logvar, 0.0) - logs["adv_w"] * loss.disc(torch.sigmoid(logits)).mean()
    reference.backward()
    loss.disc.requires_grad_(True)
    assert got.keys() == {n for n, p in model.named_parameters() if p.grad is not None}
    for n, p in model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(got[n], p.grad, rtol=1e-4, atol=1e-6), n
    # The discriminator trains on the same fake logits: hinge(D(x), D(x_hat)), with its gradients.
    d_loss, _ = loss.discriminator(x)
    d_loss.backward()
    got = {n: p.grad.clone() for n, p in loss.disc.named_parameters()}
    loss.disc.zero_grad()
    hinge_d_loss(loss.disc(x), loss.disc(torch.sigmoid(logits).detach())).backward()
    for n, p in loss.disc.named_parameters():
        assert torch.allclose(got[n], p.grad, rtol=1e-4, atol=1e-6), n
    with pytest.raises(AssertionError, match="generator pass comes first"):
        loss.discriminator(x)  # each generator pass's fake logits serve one discriminator step


def test_hinge_discriminator_loss():
    real, fake = torch.tensor([2.0, -0.5]), torch.tensor([-2.0, 0.5])
    # 0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake))) = 0.5 * (0.75 + 0.75)
    assert float(hinge_d_loss(real, fake)) == pytest.approx(0.75)


@pytest.mark.parametrize("size", [32, 64])
def test_patch_discriminator_gives_a_patch_map(size):
    out = PatchDiscriminator(channels=8)(torch.rand(2, 3, size, size))
    assert out.shape[:2] == (2, 1) and min(out.shape[2:]) >= 2


# -- SSIM / MS-SSIM ------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [32, 64])
def test_ssim_and_ms_ssim_losses(size):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, size, size, generator=g)
    y = (x + 0.2 * torch.randn(2, 3, size, size, generator=g)).clamp(0, 1)
    ms = MSSSIMLoss()
    for loss in (ssim_loss, ms):
        same, other = loss(x, x), loss(x, y)
        assert same.shape == other.shape == (2,)
        assert torch.allclose(same, torch.zeros(2), atol=1e-5)
        assert torch.all(other > 0.05)
        assert torch.all(loss(x, torch.rand(2, 3, size, size, generator=g)) > other)  # worse image, larger loss


@pytest.mark.parametrize("shape", [(3, 3, 64, 64), (2, 1, 16, 40)])
def test_ssim_matches_kornia_in_value_and_gradient(shape):
    # The matmul blur replaced kornia's depthwise convolution for speed; the figures in
    # BENCHMARKS.md stay comparable only while the two agree, border (reflect) included.
    import kornia

    from cvae_art.vae_core.metrics import ssim_per_image

    g = torch.Generator().manual_seed(5)
    x = torch.rand(shape, generator=g).requires_grad_(True)
    y = (x.detach() + 0.3 * torch.randn(shape, generator=g)).clamp(0, 1)
    ours = ssim_per_image(x, y)
    (ours_grad,) = torch.autograd.grad(ours.sum(), x)
    ref = kornia.metrics.ssim(x, y, window_size=11).flatten(1).mean(1)
    (ref_grad,) = torch.autograd.grad(ref.sum(), x)
    assert torch.allclose(ours, ref, atol=1e-6)
    assert torch.allclose(ours_grad, ref_grad, atol=1e-7, rtol=1e-4)
    with torch.autocast("cpu", torch.bfloat16):  # the loss under --amp bf16: still fp32 inside
        assert torch.allclose(ssim_per_image(x, y), ref, atol=1e-6)


def test_ms_ssim_measures_structure_not_l1():
    # Same absolute error everywhere: a uniform brightness shift keeps the structure, sign noise
    # destroys it. An L1 loss scores both the same; MS-SSIM must score the noise far worse.
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 32, 32, generator=g) * 0.5 + 0.25
    sign = torch.where(torch.rand(x.shape, generator=g) < 0.5, -1.0, 1.0)
    ms = MSSSIMLoss()
    shift, noise = ms(x, x + 0.1), ms(x, x + 0.1 * sign)
    assert torch.all(noise > 3 * shift)


def test_ssim_and_ms_ssim_terms_are_logged_and_weighted():
    torch.manual_seed(0)
    loss = VAELoss(LossConfig(ssim_weight=1.0, ms_ssim_weight=1.0, kl_warmup_steps=0), "mse")
    x = torch.rand(2, 3, 32, 32)
    logits = torch.randn(2, 3, 32, 32)
    mu, logvar = torch.zeros(2, 4), torch.zeros(2, 4)
    total, logs = loss.generator(x, logits, mu, logvar, torch.zeros(()), torch.zeros(1), step=0)
    d = 3 * 32 * 32
    assert logs["loss"] == pytest.approx(logs["recon"] + d * (logs["ssim"] + logs["ms_ssim"]), rel=1e-5)


# -- LPIPS ---------------------------------------------------------------------------------------
def test_lpips_wiring_with_a_random_backbone():
    """Wiring only: a random backbone has no perceptual meaning."""
    loss = VAELoss(LossConfig(lpips_weight=0.5, lpips_random_backbone=True, kl_warmup_steps=0), "mse")
    lp = loss.lpips
    assert not any(p.requires_grad for p in lp.parameters())
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 32, 32, generator=g)
    y = torch.rand(2, 3, 32, 32, generator=g).requires_grad_()
    assert torch.allclose(lp(x, x, normalize=True).flatten(), torch.zeros(2), atol=1e-6)
    d = lp(y, x, normalize=True).flatten()
    assert d.shape == (2,) and torch.all(d > 0)
    d.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0  # usable as a training loss

    _, logs = loss.generator(x, torch.randn(2, 3, 32, 32, generator=g), torch.zeros(2, 4), torch.zeros(2, 4),
                             torch.zeros(()), torch.zeros(1), step=0)
    assert logs["lpips"] > 0
    assert logs["loss"] == pytest.approx(logs["recon"] + 0.5 * 3 * 32 * 32 * logs["lpips"], rel=1e-5)


def test_lpips_loads_the_backbone_weights_from_a_file(tmp_path):
    tv = import_torchvision()
    torch.manual_seed(6)
    backbone = tv.models.alexnet()  # random weights stand in for the ImageNet file
    path = tmp_path / "my_alexnet.pth"
    torch.save(backbone.state_dict(), path)
    lp = build_lpips("alex", weights=str(path))
    checked = 0
    for name, part in lp.net.named_children():
        if not name.startswith("slice"):
            continue
        for idx, layer in part.named_children():
            for key, value in layer.state_dict().items():
                assert torch.equal(value, backbone.state_dict()[f"features.{idx}.{key}"]), (name, idx, key)
                checked += 1
    assert checked == 10  # the five conv layers' weights and biases

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a state dict" * 10)
    with pytest.raises(ValueError, match=r"junk\.pth: not the torchvision alex weights"):
        build_lpips("alex", weights=str(junk))


def test_lpips_without_weights_is_a_clear_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    with pytest.raises(LPIPSWeightsMissing) as err:
        build_lpips("alex")
    msg = str(err.value)
    assert LPIPS_BACKBONES["alex"] in msg
    assert str(tmp_path / "empty_torch_home" / "hub" / "checkpoints") in msg
    assert "--lpips-weights" in msg and "--ssim-weight" in msg and "--adv-weight" in msg
    assert isinstance(err.value, FileNotFoundError)  # the CLI reports it as an error, not a traceback
    with pytest.raises(LPIPSWeightsMissing):
        VAELoss(LossConfig(lpips_weight=1.0), "mse")
    with pytest.raises(ValueError, match="LPIPS net must be one of"):
        build_lpips("resnet")


def test_kl_is_logged_in_nats_per_image():
    loss = VAELoss(LossConfig(kl_warmup_steps=0, beta=1.0), "mse")
    mu = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    logvar = torch.zeros(2, 2)
    _, logs = loss.generator(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 32), mu, logvar,
                             torch.zeros(()), torch.zeros(1), step=0)
    assert logs["kl"] == pytest.approx((0.5 + 4.5) / 2)
    assert logs["loss"] == pytest.approx(logs["recon"] + logs["kl"])
    assert math.isfinite(logs["recon"])


def test_the_style_judges_only_learn_from_rows_with_one_known_label():
    from cvae_art.vae_core.conditions import make_condition
    from cvae_art.vae_core.losses import LatentCritic, PixelStyleClassifier

    vocab = {"style": ["a", "b", "c"]}
    cond = {"style": torch.cat([make_condition(vocab, s)["style"] for s in
                                ("style=b", None, "style=a:0.5,c:0.5", "style=c")])}
    assert LatentCritic.targets(cond)["style"].tolist() == [1, -1, -1, 2]
    critic = LatentCritic(8, vocab)
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    # Only rows 0 and 3 count: changing the null and blended rows' latents changes nothing.
    z2 = z.clone()
    z2[1:3] += 100
    assert torch.equal(critic.loss(z, cond), critic.loss(z2, cond))
    assert torch.equal(critic.confusion(z, cond), critic.confusion(z2, cond))
    # A critic that cannot tell the labels apart (zero logits) costs the encoder nothing.
    for head in critic.heads.values():
        torch.nn.init.zeros_(head[-1].weight)
        torch.nn.init.zeros_(head[-1].bias)
    assert float(critic.confusion(z, cond).detach()) == pytest.approx(0.0, abs=1e-6)
    cls = PixelStyleClassifier(vocab, width=8)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    x2 = x.clone()
    x2[1:3] = 0
    assert torch.equal(cls.loss(x, cond), cls.loss(x2, cond))


def test_the_patchgan_judges_swapped_decodes_when_asked():
    torch.manual_seed(0)
    vocab = {"style": ["a", "b"]}
    model = CVAE(ModelConfig(resolution=32, latent_dim=8, base_channels=4, max_channels=16, recon="mse", conditions=vocab))
    loss = VAELoss(LossConfig(adv_weight=0.5, adv_start=0, disc_channels=4, swap_adv_weight=0.7), "mse", 8, vocab)
    assert loss.swaps  # the swapped decodes are drawn for this term alone
    x, eps = torch.rand(4, 3, 32, 32), torch.randn(4, 8)
    cond = model.condition("style=a", 4)
    other = model.condition("style=b", 2)

    def forward():
        logits, mu, logvar = model(x, cond, eps)
        return logits, mu, logvar, Swapped(model.decode_logits(mu[:2] + eps[:2] * (0.5 * logvar[:2]).exp(), other), other)

    logits, mu, logvar, swapped = forward()
    total, logs = loss.generator(x, logits, mu, logvar, model.log_sigma, model.decoder.last_layer, 0, cond, swapped)
    assert "g_adv_swap" in logs and loss.fake_logits.shape[0] == 6  # 4 reconstructions + 2 swapped decodes
    model.zero_grad()
    total.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    # The plain way: w * (-D(x_hat) - 0.7 D(swapped)) backpropagated through the PatchGAN, run on
    # both at once (its batch norm sees them as one batch).
    model.zero_grad()
    loss.disc.requires_grad_(False)
    logits, mu, logvar, swapped = forward()
    d = loss.disc(torch.sigmoid(torch.cat([logits, swapped.logits])))
    g = -d[:4].mean() - 0.7 * d[4:].mean()
    nll = reconstruction_nll("mse", logits, x, model.log_sigma).mean()
    (nll + kl_weight(loss.cfg, 0) * kl_term(mu, logvar, 0.0) + logs["adv_w"] * g).backward()
    for n, p in model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(got[n], p.grad, rtol=1e-4, atol=1e-6), n
    # and the discriminator sees the swapped decodes as fakes too
    d_loss, _ = loss.discriminator(x)
    fakes = torch.sigmoid(torch.cat([logits, swapped.logits])).detach()
    with torch.no_grad():
        assert float(d_loss) == pytest.approx(float(hinge_d_loss(loss.disc(x), loss.disc(fakes))), rel=1e-5)
