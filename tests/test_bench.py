"""`cvae bench`: every part runs on tiny settings and gives well-formed tables with sane numbers.

No timing is asserted (timings belong in BENCHMARKS.md); what is asserted is structure, units and
the arithmetic that does not depend on the machine (FLOP counts, the NLL estimator, the split).
"""
from __future__ import annotations

import csv
import gzip
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cvae_art.cli import main
from cvae_art.bench import harness as bench
from cvae_art.vae_core.likelihood import importance_sampled_nll
from cvae_art.vae_core.checkpoint import load_model
from cvae_art.vae_core.data import load_image_set
from cvae_art.vae_core.model import CVAE, ModelConfig


def run_json(capsys, *argv: str) -> dict:
    assert main(["bench", *argv, "--quick", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def positive(row: dict, *columns: str) -> None:
    for c in columns:
        assert isinstance(row[c], (int, float)) and math.isfinite(row[c]) and row[c] > 0, (c, row)




# -- train --------------------------------------------------------------------------------------------
def test_train_table_counts_real_step_flops():
    table = bench.bench_train(resolution=32, batch_size=4, settings=["mse", "mse+adv"], warmup=0, repeats=1,
                              peak_n=128, model=ModelConfig(base_channels=8, max_channels=32, latent_dim=8))
    assert [r["setting"] for r in table.rows] == ["mse", "mse+adv"]
    for row in table.rows:
        positive(row, "images/s", "ms/step", "GFLOP/step", "GFLOP/s", "% of peak")
        assert row["images/s"] == pytest.approx(4000 / row["ms/step"])
    mse, adv = table.rows
    # A training step is a forward and a backward (about 2x the forward); the discriminator adds its own.
    model = CVAE(ModelConfig(resolution=32, base_channels=8, max_channels=32, latent_dim=8, conditions={"style": list(bench.STYLES)}))
    forward = bench.count_flops(lambda: model(torch.rand(4, 3, 32, 32), model.condition("style=a", 4)))
    assert 2.5 * forward < mse["GFLOP/step"] * 1e9 < 3.2 * forward
    assert adv["GFLOP/step"] > 1.2 * mse["GFLOP/step"]
    assert "| mse |" in table.format() and "matmul peak" in table.notes[0]


# -- decode and render through the CLI -----------------------------------------------------------------
def test_decode_and_render_json(capsys):
    out = run_json(capsys, "decode")
    assert out["machine"]["cores"] >= 1 and out["machine"]["torch"] == torch.__version__
    (table,) = out["tables"]
    assert [r["resolution"] for r in table["rows"]] == [32, 64]
    for row in table["rows"]:
        positive(row, "frames/s", "ms/frame", "GFLOP/frame", "GFLOP/s")
        assert row["ms/frame"] == pytest.approx(1000 / row["frames/s"])
        assert row["GFLOP/s"] == pytest.approx(row["GFLOP/frame"] * row["frames/s"])
    small, large = table["rows"]
    assert large["GFLOP/frame"] > 4 * small["GFLOP/frame"]  # 4x the pixels, and one more level

    (render,) = run_json(capsys, "render")["tables"]
    # the model's own size, then the node's default, then an untrained model at each other resolution
    assert [(r["resolution"], r["video px"]) for r in render["rows"]] == [(32, 32), (32, 256), (64, 64)]
    for row in render["rows"]:
        positive(row, "model.decode frames/s", "decode_chunks frames/s", "render frames/s", "MB")
        assert row["render / model.decode"] == pytest.approx(row["render frames/s"] / row["model.decode frames/s"])
        assert row["render / decode_chunks"] == pytest.approx(row["render frames/s"] / row["decode_chunks frames/s"])
    assert [r["frames"] for r in render["rows"]] == [96, 96, 24]  # --frames 24 at 64 px, scaled by the pixel count
    assert render["rows"][1]["MB"] > render["rows"][0]["MB"]


def test_table_prints_markdown(capsys):
    assert main(["bench", "decode", "--quick", "--resolutions", "32"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("machine: cpu ")
    assert "| resolution | frames/s | ms/frame | GFLOP/frame | GFLOP/s | batch |" in text and "\n| 32 | " in text


# -- restyle ---------------------------------------------------------------------------------------------
def test_restyle_measures_each_size_in_its_own_process(capsys):
    (table,) = run_json(capsys, "restyle")["tables"]
    assert [r["images"] for r in table["rows"]] == [8, 24]
    for row in table["rows"]:
        positive(row, "seconds", "images/s", "peak RSS MiB", "RSS before MiB")
        assert row["peak RSS MiB"] >= row["RSS before MiB"]
        assert row["images/s"] == pytest.approx(row["images"] / row["seconds"])
    assert table["rows"][0]["growth vs first %"] == 0


def test_peak_rss_sees_an_allocation():
    code = (
        "def main():\n"
        "    import numpy as np\n"
        "    from cvae_art.bench.harness import peak_rss_mb\n"
        "    before = peak_rss_mb()\n"
        "    block = np.ones(200 << 20, np.uint8)  # 200 MiB, every page touched\n"
        "    return {'before': before, 'after': peak_rss_mb(), 'check': int(block[::4096].sum())}\n"
    )
    res = bench.run_in_fresh_process(code, {})
    assert res["check"] == 200 << 8
    assert res["after"] >= res["before"] + 190


# -- runner ------------------------------------------------------------------------------------------------
def test_runner_overhead_rows(capsys):
    (table,) = run_json(capsys, "runner")["tables"]
    assert [r["how"] for r in table["rows"]] == ["in one process (execute vs calls)", "end to end (fresh processes)"]
    for row in table["rows"]:
        positive(row, "direct s", "runner s")
        assert row["overhead s"] == pytest.approx(row["runner s"] - row["direct s"])
        assert row["overhead %"] == pytest.approx(100 * row["overhead s"] / row["direct s"])


def test_runner_graph_and_direct_job_write_the_same_files(tmp_path):
    """The two sides of the runner benchmark must do the same work: same PNGs, same video frames."""
    import av

    from cvae_art.bench.runner import MODEL_NAME, job_values
    from cvae_art.vae_core.checkpoint import save_model

    save_model(bench.untrained_model(32), tmp_path / "models" / "cvae" / MODEL_NAME)
    # In a fresh process, as the benchmark runs it: it points the nodes at its own folders.
    bench.run_in_fresh_process("from cvae_art.bench.runner import _in_process as main",
                               {"work": str(tmp_path), "values": job_values(frames=8, size=0, count=3), "repeats": 1})
    direct = sorted((tmp_path / "direct").glob("*.png"))
    ours = sorted((tmp_path / "out" / "bench").glob("key*.png"))
    assert len(direct) == len(ours) == 3
    for a, b in zip(direct, ours):
        np.testing.assert_array_equal(cv2.imread(str(a)), cv2.imread(str(b)))
    (walk,) = (tmp_path / "out" / "bench").glob("walk*.mp4")
    frames = [[f.to_ndarray(format="rgb24") for f in av.open(str(p)).decode(video=0)] for p in (tmp_path / "direct" / "walk.mp4", walk)]
    assert len(frames[0]) == len(frames[1]) == 8
    np.testing.assert_array_equal(np.stack(frames[0]), np.stack(frames[1]))


# -- quality and the training curve -----------------------------------------------------------------
def test_quality_uses_the_training_split_and_style_pairs(styled_model, capsys):
    root, run_dir = styled_model
    model_file = run_dir / "model.safetensors"
    (table,) = run_json(capsys, "quality", "--models", f"tiny={model_file}", "--data", str(root))["tables"]
    (row,) = table["rows"]
    # The pairs: every validation image of a key drawn in both styles, paired with its other drawing.
    data = load_image_set(root, 32, ["style"], workers=0, vocab=load_model(model_file).vocab, progress=False)
    _, val = data.split(0.3)
    assert row["images"] == len(val) > 0
    assert row["pairs"] == sum(1 for i in val if not data.names[i].endswith("lonely.png")) > 0
    positive(row, "psnr", "ssim", "sharpness_ratio", "hf_energy_ratio", "kl/image", "transfer psnr", "identity psnr")
    assert row["psnr gain"] == pytest.approx(row["transfer psnr"] - row["identity psnr"])
    assert row["ssim gain"] == pytest.approx(row["transfer ssim"] - row["identity ssim"])
    assert -1 <= row["ssim"] <= 1 and row["step"] == 20


def test_style_pairs_only_pair_validation_sources_with_their_other_styles(styled_model):
    root, _ = styled_model
    data = load_image_set(root, 32, ["style"], workers=0, progress=False)
    keys = {r["path"]: r["key"] for r in csv.DictReader(open(root / "metadata.csv"))}
    val = np.array([0, 1, len(data) - 1])
    pairs = bench.style_pairs(data, val, keys)
    for src, dst in pairs:
        assert src in val and src != dst
        assert keys[data.names[src]] == keys[data.names[dst]]
        assert data.labels["style"][src] != data.labels["style"][dst]
    assert len(pairs) == sum(1 for i in val if keys[data.names[i]] != "lonely")


def test_curve_reads_every_checkpoint(styled_model, capsys):
    _, run_dir = styled_model
    (table,) = run_json(capsys, "curve", "--runs", str(run_dir))["tables"]
    assert [r["step"] for r in table["rows"]] == [10, 20]  # checkpoint at 10, final save at 20
    minutes = [r["train minutes"] for r in table["rows"]]
    assert 0 < minutes[0] < minutes[1]
    for row in table["rows"]:
        positive(row, "val_psnr", "val_kl")


# -- nll ------------------------------------------------------------------------------------------------
def test_importance_sampled_nll_is_exact_when_the_model_ignores_z():
    """Decoder logits fixed to a bias and q(z|x) = p(z): log p(x) is a plain Bernoulli sum, and
    every importance weight equals it, so both estimates must give it to float precision."""
    torch.manual_seed(0)
    model = CVAE(ModelConfig(resolution=32, latent_dim=4, base_channels=8, max_channels=16, recon="bce")).eval()
    with torch.no_grad():
        model.encoder.head.weight.zero_()
        model.encoder.head.bias.zero_()  # mu = 0, logvar = 0
        model.decoder.ups[-1].weight.zero_()
        model.decoder.ups[-1].bias.copy_(torch.tensor([-1.0, 0.5, 2.0]))  # channel mean: 0.5
    x = (torch.rand(3, 1, 32, 32) < 0.3).float()
    exact = torch.nn.functional.binary_cross_entropy_with_logits(torch.full_like(x, 0.5), x, reduction="none").flatten(1).sum(1)
    nll, elbo = importance_sampled_nll(model, x, k=7, chunk=3, batch=2)
    np.testing.assert_allclose(nll, exact.numpy(), rtol=1e-5)
    np.testing.assert_allclose(elbo, exact.numpy(), rtol=1e-5)
    # A learned prior that is N(0, I) (one component, identity) is the same density; one that is
    # not changes the estimate.
    from cvae_art.vae_core.prior import MixturePrior

    model.prior = MixturePrior(4, 1, {})
    np.testing.assert_allclose(importance_sampled_nll(model, x, k=7, chunk=3, batch=2)[1], elbo, rtol=1e-5)
    model.prior.means.fill_(3.0)
    assert (importance_sampled_nll(model, x, k=7, chunk=3, batch=2)[1] > elbo + 10).all()


def write_idx(path: Path, images: np.ndarray) -> None:
    n, h, w = images.shape
    header = b"".join(int(v).to_bytes(4, "big") for v in (2051, n, h, w))
    with gzip.open(path, "wb") as f:
        f.write(header + images.astype(np.uint8).tobytes())


def test_nll_trains_on_binarised_digits_and_bounds(tmp_path, capsys):
    rng = np.random.default_rng(0)
    digits = (rng.random((40, 28, 28)) < 0.2) * rng.integers(100, 256, (40, 28, 28))
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", digits[:32])
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", digits[32:])
    np.testing.assert_array_equal(bench.read_idx_images(tmp_path / "t10k-images-idx3-ubyte.gz"), digits[32:])

    out = run_json(capsys, "nll", "--mnist", str(tmp_path), "--out", str(tmp_path / "run"))
    (table,) = out["tables"]
    rows = table["rows"]
    # Training fitted a learned prior, so both priors are scored on the same weights.
    assert ["learned mixture prior" in r["estimate"] for r in rows[:4]] == [True, True, False, False]
    assert all("N(0, I) prior" in r["estimate"] for r in rows[2:4])
    for ours, elbo in (rows[0:2], rows[2:4]):
        assert ours["test images"] == 8 and ours["samples k"] == 16
        positive(ours, "nats", "std. error")
        # The importance-sampled bound is never looser than the ELBO from the same samples.
        assert ours["nats"] <= elbo["nats"] + 1e-6
    assert rows[0]["nats"] != rows[2]["nats"]
    assert [r["nats"] for r in rows[4:]] == [86.76, 85.33, 82.90, 78.45, 78.01]
    model = load_model(tmp_path / "run" / "model.safetensors")
    assert model.vocab == {} and model.config.recon == "bce" and model.resolution == 32


def test_binarized_trainer_feeds_binary_grey_batches(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (16, 28, 28), dtype=np.uint8)
    cfg = bench.nll_train_config(tmp_path, steps=1, minutes=0, batch_size=8, latent_dim=4)
    trainer = bench.BinarizedTrainer(cfg, data=bench.mnist_image_set(images), progress=False)
    x, _, _, _ = trainer._batch(0)
    assert x.shape == (8, 3, 32, 32)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    assert x[..., :2, :].sum() == 0  # the padding stays black
    assert torch.equal(x, trainer._batch(0)[0]) and not torch.equal(x, trainer._batch(1)[0])


def test_disentanglement_scores_find_the_dimension_that_carries_a_factor():
    from cvae_art.bench.disentangle import linear_probe, mig, sap

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 2000)
    noise = rng.normal(size=(2000, 6))
    carried = noise.copy()
    carried[:, 3] = labels + 0.1 * rng.normal(size=2000)  # dimension 3 alone holds the factor
    m, top = mig(carried[:1500], labels[:1500])
    assert top == 3 and m > 0.8
    assert sap(carried[:1500], labels[:1500], carried[1500:], labels[1500:]) > 0.6
    assert linear_probe(carried[:1500], labels[:1500], carried[1500:], labels[1500:]) > 0.95
    m0, _ = mig(noise[:1500], labels[:1500])
    assert m0 < 0.05 and sap(noise[:1500], labels[:1500], noise[1500:], labels[1500:]) < 0.05
    assert linear_probe(noise[:1500], labels[:1500], noise[1500:], labels[1500:]) < 0.35  # chance: 0.25
    spread = noise.copy()  # held by two dimensions together: the probe sees it, MIG does not single one out
    spread[:, 0], spread[:, 1] = labels + rng.normal(size=2000), labels + rng.normal(size=2000)
    assert mig(spread[:1500], labels[:1500])[0] < m / 3


def test_disentangle_bench_scores_the_conditioned_factor(styled_model, capsys):
    root, run_dir = styled_model
    (table,) = run_json(capsys, "disentangle", "--models", f"tiny={run_dir / 'model.safetensors'}", "--data", str(root))["tables"]
    (row,) = table["rows"]  # the styled folder has no group column
    assert row["factor"] == "style" and row["conditioned"] == "yes" and row["labels"] == 2
    assert 0 <= row["MIG"] <= 1 and 0 <= row["SAP"] <= 1 and 0 <= row["linear probe acc"] <= 1
    assert 0 <= row["top dim"] < 8 and 0.5 <= row["chance"] <= 1
