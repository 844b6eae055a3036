"""Import the node pack exactly the way ComfyUI's nodes.load_custom_node does.

The repository folder is loaded by the path of its __init__.py under a module name made from the
folder's absolute path, while ComfyUI's own top-level `nodes` and `comfy` modules are already
registered: our pack must neither import nor shadow them.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_PACK: types.ModuleType | None = None


def load_pack() -> types.ModuleType:
    global _PACK
    if _PACK is not None:
        return _PACK
    foreign = {name: types.ModuleType(name) for name in ("nodes", "comfy")}
    for mod in foreign.values():
        mod.__dict__["FOREIGN"] = True  # ComfyUI's modules are plain modules, not packages
    saved = {name: sys.modules.get(name) for name in foreign}
    sys.modules.update(foreign)
    try:
        module_path = str(REPO)
        name = module_path.replace(".", "_x_")  # what ComfyUI does
        spec = importlib.util.spec_from_file_location(name, str(REPO / "__init__.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        assert module.NODE_CLASS_MAPPINGS  # read right after the import, as ComfyUI does (the pack loads then)
        for other, mod in foreign.items():  # still ComfyUI's, untouched
            assert sys.modules[other] is mod and set(vars(mod)) - {"FOREIGN"} <= set(vars(types.ModuleType("x")))
    finally:
        for other, mod in saved.items():
            if mod is None:
                sys.modules.pop(other, None)
            else:
                sys.modules[other] = mod
    _PACK = module
    return module


def pack_module(sub: str) -> types.ModuleType:
    """A submodule of the pack as ComfyUI loaded it, e.g. pack_module('nodes.comfy')."""
    return sys.modules[f"{load_pack().__name__}.{sub}"]
