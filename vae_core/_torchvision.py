"""The one place torchvision is imported.

Some installs pair a CPU build of torch with a CUDA build of torchvision (the package registry
here has only that). Its compiled ops are then missing and `import torchvision` dies in
`_meta_registrations.py` registering fakes for `torchvision::nms` / `qnms`, although the
pure-Python parts (models, transforms, utils) work. Only for that exact failure we define the two
op schemas and import again.
"""
from __future__ import annotations

import sys
from types import ModuleType

_MISSING_OP = "torchvision::nms does not exist"


def import_torchvision() -> ModuleType:
    try:
        import torchvision
    except RuntimeError as err:
        if _MISSING_OP not in str(err):
            raise
        import torch

        for op in ("nms", "qnms"):
            torch.library.define(
                f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
            )
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        import torchvision
    return torchvision
