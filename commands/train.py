"""`cvae train`: train a model from an image folder."""
from __future__ import annotations

import argparse
import sys

from ..vae_core.limits import arg_type


def _train_args(p: argparse.ArgumentParser) -> None:
    from ..vae_core.losses import LPIPS_BACKBONES
    from ..vae_core.train import LR_FINAL, LR_SCHEDULES

    p.add_argument("data", help="image folder: sub-folder names are labels, or a metadata.csv with a 'path' column")
    p.add_argument("--out", required=True, help="run folder (config, checkpoints, samples, loss plot)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--condition", action="append", help="condition factor (sub-folder names, or a metadata.csv column); repeat for several; 'none' for unconditional")
    p.add_argument("--resolution", type=int, default=64, help="32, 64, 128 or 256")
    p.add_argument("--steps", type=arg_type("steps", "--steps"), default=20_000)
    p.add_argument("--batch-size", type=arg_type("batch_size", "--batch-size"), default=64)
    p.add_argument("--lr", type=arg_type("lr", "--lr"), default=1e-3)
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant",
                   help=f"cosine: decay to {LR_FINAL:g} x --lr at --steps (fine-tuning and final runs recover reconstruction)")
    p.add_argument("--latent-dim", type=int, default=128)
    p.add_argument("--base-channels", type=int, default=32)
    p.add_argument("--max-channels", type=int, default=256)
    p.add_argument("--recon", choices=["mse", "l1", "bce", "gaussian"], default="gaussian", help="reconstruction loss; gaussian learns its variance")
    p.add_argument("--beta", type=arg_type("loss_weight", "--beta"), default=1.0, help="KL weight")
    p.add_argument("--kl-warmup", type=int, default=1000, help="steps over which the KL weight ramps up")
    p.add_argument("--free-bits", type=arg_type("loss_weight", "--free-bits"), default=0.0, help="nats per latent dimension that cost nothing")
    p.add_argument("--ssim-weight", type=arg_type("loss_weight", "--ssim-weight"), default=0.0)
    p.add_argument("--ms-ssim-weight", type=arg_type("loss_weight", "--ms-ssim-weight"), default=0.0)
    p.add_argument("--lpips-weight", type=arg_type("loss_weight", "--lpips-weight"), default=0.0)
    p.add_argument("--lpips-net", choices=sorted(LPIPS_BACKBONES), default="alex")
    p.add_argument("--lpips-weights", help="path to the torchvision backbone file (default: $TORCH_HOME/hub/checkpoints)")
    p.add_argument("--adv-weight", type=arg_type("loss_weight", "--adv-weight"), default=0.0, help="PatchGAN hinge loss weight (0 = off)")
    p.add_argument("--adv-start", type=int, default=2000, help="step at which the discriminator starts")
    p.add_argument("--disc-channels", type=int, default=64, help="PatchGAN width (32 is enough at 64 px and half the cost)")
    p.add_argument("--latent-adv-weight", type=arg_type("loss_weight", "--latent-adv-weight"), default=0.0,
                   help="latent style adversary (Fader): push style out of z so the condition carries it (0 = off)")
    p.add_argument("--style-cls-weight", type=arg_type("loss_weight", "--style-cls-weight"), default=0.0,
                   help="style classification of latents decoded under other labels (StarGAN-style; 0 = off)")
    p.add_argument("--no-fit-prior", dest="fit_prior", action="store_false",
                   help="do not fit the learned prior p(z | c) at the end (samplers then use N(0, I))")
    p.add_argument("--init", default="", help="start from this model file's weights (fine-tune; same architecture and labels)")
    p.add_argument("--label-dropout", type=arg_type("fraction", "--label-dropout"), default=0.1)
    p.add_argument("--augment", choices=["none", "flip"], default="none")
    p.add_argument("--background", default="white", help="colour that transparent pixels are composited on")
    p.add_argument("--val-fraction", type=arg_type("fraction", "--val-fraction"), default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--sample-every", type=int, default=500)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers for decoding")
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--max-minutes", type=arg_type("minutes", "--max-minutes"), default=0.0, help="stop and save after this much time")


def _train_run(a: argparse.Namespace) -> int:
    from ..vae_core.losses import LossConfig
    from ..vae_core.model import ModelConfig
    from ..vae_core.train import TrainConfig, train

    conditions = None if not a.condition else [] if a.condition == ["none"] else a.condition
    cfg = TrainConfig(
        data=a.data, out=a.out, conditions=conditions, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
        lr_schedule=a.lr_schedule,
        label_dropout=a.label_dropout, val_fraction=a.val_fraction, seed=a.seed, background=a.background,
        augment=a.augment, checkpoint_every=a.checkpoint_every, sample_every=a.sample_every, workers=a.workers,
        amp=a.amp, device=a.device, max_minutes=a.max_minutes, init=a.init, fit_prior=a.fit_prior,
        model=ModelConfig(resolution=a.resolution, latent_dim=a.latent_dim, base_channels=a.base_channels,
                          max_channels=a.max_channels, recon=a.recon),
        loss=LossConfig(beta=a.beta, kl_warmup_steps=a.kl_warmup, free_bits=a.free_bits, ssim_weight=a.ssim_weight,
                        ms_ssim_weight=a.ms_ssim_weight, lpips_weight=a.lpips_weight, lpips_net=a.lpips_net,
                        lpips_weights=a.lpips_weights, adv_weight=a.adv_weight, adv_start=a.adv_start,
                        disc_channels=a.disc_channels, latent_adv_weight=a.latent_adv_weight,
                        style_cls_weight=a.style_cls_weight),
    )
    result = train(cfg, resume=a.resume)
    for path, why in result.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable file(s)", file=sys.stderr)
    val = result.history[-1] if result.history else {}
    figures = ", ".join(f"{k[4:]} {val[k]:.4g}" for k in ("val_psnr", "val_ssim", "val_sharpness_ratio", "val_kl") if k in val)
    print(f"{result.stopped} at step {result.step}: {result.run_dir / 'model.safetensors'}" + (f" (validation: {figures})" if figures else ""))
    return 0


COMMANDS = {"train": (_train_args, _train_run)}


