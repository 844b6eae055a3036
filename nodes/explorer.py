"""CVAE Latent Explorer: a 2-D map of latents in the node, decoded live under the cursor.

The page code (web/cvae_explorer.js) asks two server routes for a map and for the image at a map
point; pinned points live in the node's `pins` widget, so they are saved in the workflow and the
node gives the same keyframes headless (`cvae run`) as in ComfyUI. The routes' work is in the
plain functions `explorer_map` and `explorer_decode`, which run without ComfyUI.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from ..vae_core.checkpoint import load_model
from ..vae_core.conditions import Cond
from ..vae_core.explore import ANCHORS, ExplorerError, LatentMap, parse_pins, pin, prior_anchors
from ..vae_core.images import to_uint8
from ..vae_core.limits import widget
from . import comfy
from .common import COND_TYPE, LATENT_TYPE, decode, latent_input, latent_z, make_latent, model_input, seed_input

ROUTE = "/cvae/explorer"
MAX_BODY = 16_384  # bytes of one request: a map spec or a point with its style weights
MAPS_KEPT = 8  # maps the routes keep (each a few hundred KB)


@dataclass
class ExplorerMap:
    model: object
    map: LatentMap
    cond: Cond | None  # the anchors' own conditions (prior anchors), for their thumbnails


_maps: OrderedDict[str, ExplorerMap] = OrderedDict()
_lock = threading.Lock()


def _keep(key: str, entry: ExplorerMap) -> None:
    with _lock:
        _maps[key] = entry
        _maps.move_to_end(key)
        while len(_maps) > MAPS_KEPT:
            _maps.popitem(last=False)


def _get(key: str) -> ExplorerMap | None:
    with _lock:
        return _maps.get(key)


def _node_key(unique_id: object) -> str:
    return f"node:{unique_id}"


class CVAELatentExplorer:
    DESCRIPTION = (
        "Explore the latent space on a map: hover to see the drawing at any point (decoded live), set the style "
        "sliders, click to pin keyframes, shift-click a pin to remove it. The map shows the connected latents "
        "(e.g. encoded images), or 'count' samples of the model's prior. The pins feed Render Walk directly "
        "and are saved in the workflow."
    )
    CATEGORY = "CVAE/latent"
    RETURN_TYPES = (LATENT_TYPE, COND_TYPE, "IMAGE")
    RETURN_NAMES = ("keyframes", "cond", "image")
    OUTPUT_TOOLTIPS = ("The pinned points, in order.", "Each pin's condition (the style sliders as they stood).",
                       "The pinned points decoded.")
    FUNCTION = "explore"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": model_input(),
                "count": ("INT", {"default": 12, **widget("anchors"), "step": 1,
                                  "tooltip": "Prior samples drawn for the map when no latents are connected."}),
                "seed": seed_input("Seed of the prior samples on the map."),
                "temperature": ("FLOAT", {"default": 0.85, **widget("temperature"), "step": 0.05,
                                          "tooltip": "Spread of the prior samples on the map (1: the prior as learned)."}),
                "pins": ("STRING", {"default": "[]", "multiline": True,
                                    "tooltip": "The pinned points (JSON, written by the map: x, y and the style weights)."}),
            },
            "optional": {"latents": latent_input("Latents to lay out on the map instead of prior samples.")},
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def explore(self, model, count, seed, temperature, pins, latents=None, unique_id=None):
        entry = _build(model, count, seed, temperature, latents)
        if unique_id is not None:  # the page can then draw the map of whatever fed this run
            _keep(_node_key(unique_id), entry)
        points = parse_pins(pins, model.vocab)
        if not points:
            raise ValueError("no pinned points: hover over the map and click to pin at least one keyframe")
        z = entry.map.latents(torch.tensor([[p.x, p.y] for p in points])).to(model.device)
        conds = [model.condition(p.cond or None, 1) for p in points]
        cond = {k: torch.cat([c[k] for c in conds]) for k in conds[0]}
        return {"ui": {"cvae_map": [_node_key(unique_id)]}, "result": (make_latent(z), cond, decode(model, z, cond))}


def _build(model, count: int, seed: int, temperature: float, latents: dict | None) -> ExplorerMap:
    with torch.inference_mode():
        if latents is not None:
            return ExplorerMap(model, LatentMap.fit(latent_z(latents, model, "latents")), None)
        z, cond = prior_anchors(model, count, seed, temperature)
        return ExplorerMap(model, LatentMap.fit(z), cond)


# -- what the routes do ------------------------------------------------------------------------------
_models: OrderedDict[tuple, object] = OrderedDict()


def _route_model(name: object):
    """The model a Load Model node names, loaded once per file version for the routes (not the
    executor's copy, so the two never share state)."""
    if not isinstance(name, str) or name not in comfy.model_list():
        raise LookupError(f"unknown model {name!r}; pick one CVAE Load Model lists")
    path = comfy.resolve_model(name)
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _lock:
        if key not in _models:
            _models[key] = load_model(path, device="cpu")
            while len(_models) > 2:
                _models.popitem(last=False)
        return _models[key]


def _number(spec: dict, name: str, kind: type, lo: float, hi: float):
    v = spec.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not float(v).is_integer()):
        raise ExplorerError(f"{name}: expected a {'whole number' if kind is int else 'number'}, got {v!r}")
    if not lo <= v <= hi:
        raise ExplorerError(f"{name}: {v} is outside {lo:g}..{hi:g}")
    return kind(v)


def explorer_map(spec: dict) -> dict:
    """{"model", "count", "seed", "temperature"} (a Load Model's choice and the node's widgets) or
    {"node": id} (the map of that node's last run) -> the map: its key, the anchors' coordinates
    and thumbnails, and the model's factors and labels (for the style sliders)."""
    if "node" in spec:
        key = _node_key(spec["node"])
        entry = _get(key)
        if entry is None:
            raise LookupError("this node has not run yet: queue the workflow once to draw its map")
    else:
        model = _route_model(spec.get("model"))
        count = _number(spec, "count", int, ANCHORS.lo, ANCHORS.hi)
        seed = _number(spec, "seed", int, 0, 2**64 - 1)
        temperature = _number(spec, "temperature", float, 0.0, 3.0)
        key = "prior:" + hashlib.sha1(json.dumps([id(model), count, seed, temperature]).encode()).hexdigest()[:16]
        entry = _get(key)
        if entry is None:
            entry = _build(model, count, seed, temperature, None)
            _keep(key, entry)
    model, m = entry.model, entry.map
    with torch.inference_mode():
        z = m.latents(m.coords).to(model.device)
        thumbs = model.decode(z, entry.cond)
    return {"key": key, "coords": m.coords.tolist(), "thumbs": [_png_data_url(t) for t in thumbs],
            "factors": model.vocab}


def explorer_decode(spec: dict) -> bytes:
    """{"key", "x", "y", "cond": {factor: {label: weight}}} -> the PNG of that point."""
    entry = _get(str(spec.get("key")))
    if entry is None:
        raise LookupError("unknown or expired map; it is drawn again")
    model = entry.model
    point = pin(spec, "point", model.vocab)
    with torch.inference_mode():
        z = entry.map.latents(torch.tensor([[point.x, point.y]])).to(model.device)
        image = model.decode(z, model.condition(point.cond or None, 1))[0]
    return _png(image)


def _png(image: torch.Tensor) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(to_uint8(image[None])[0]).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _png_data_url(image: torch.Tensor) -> str:
    return "data:image/png;base64," + base64.b64encode(_png(image)).decode()


comfy.add_explorer_routes(ROUTE, explorer_map, explorer_decode, MAX_BODY)

NODE_CLASS_MAPPINGS = {"CVAELatentExplorer": CVAELatentExplorer}
NODE_DISPLAY_NAME_MAPPINGS = {"CVAELatentExplorer": "CVAE Latent Explorer"}
