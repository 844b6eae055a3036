"""Run by torchrun in test_distributed.py: train(TrainConfig from a JSON file), as a user's own
script would call the Python API under torchrun."""
import json
import sys

from cvae_art.vae_core.train import TrainConfig, train

if __name__ == "__main__":
    cfg = TrainConfig.from_dict(json.loads(open(sys.argv[1], encoding="utf-8").read()))
    train(cfg, resume="--resume" in sys.argv[2:], progress=False)
