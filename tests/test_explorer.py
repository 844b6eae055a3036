"""The latent explorer: its map, its pins, the node headless, and what its server routes do."""
from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import torch
from comfy_pack import load_pack, pack_module
from PIL import Image

from cvae_art.vae_core.explore import ExplorerError, LatentMap, Pin, parse_pins, pins_json

VOCAB = {"style": ["disc", "ring"]}


def anchors(n: int = 9, d: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * 2


# -- the map -----------------------------------------------------------------------------------------
def test_each_anchor_is_on_the_map_and_its_point_decodes_to_it_exactly():
    z = anchors()
    m = LatentMap.fit(z)
    assert m.coords.abs().max() == pytest.approx(1.0)  # scaled to span -1..1
    assert torch.allclose(m.latents(m.coords), z, atol=1e-5)


def test_the_map_does_not_depend_on_the_anchors_order_or_the_svds_signs():
    z = anchors()
    perm = torch.randperm(len(z), generator=torch.Generator().manual_seed(1))
    a, b = LatentMap.fit(z), LatentMap.fit(z[perm])
    assert torch.allclose(a.coords[perm], b.coords, atol=1e-9)
    # Mirrored anchors: the directions keep their signs, so the map mirrors too.
    assert torch.allclose(LatentMap.fit(-z).coords, -a.coords, atol=1e-9)


def test_between_anchors_the_off_plane_part_keeps_its_length():
    z = anchors(12)
    m = LatentMap.fit(z)
    mid = (m.coords[0] + m.coords[1]) / 2
    w = 1 / torch.cdist(mid[None], m.coords).pow(2)
    w = w / w.sum()
    expected = float(w @ m.residuals.norm(dim=1))
    plane = m.mean + mid.double() @ m.axes
    got = (m.latents(mid[None]).double() - plane).norm()
    assert float(got) == pytest.approx(expected, rel=1e-4)
    # A plain weighted average would be shorter: that is what the rescaling undoes.
    assert float((w @ m.residuals).norm()) < expected


def test_few_or_bad_anchors_and_points_off_the_map_are_refused():
    assert LatentMap.fit(anchors(2)).latents(torch.zeros(1, 2)).shape == (1, 16)  # two anchors: a line, still a map
    with pytest.raises(ValueError, match="anchors must be a whole number from 2 to 64"):
        LatentMap.fit(anchors(1))
    bad = anchors()
    bad[3, 2] = float("nan")
    with pytest.raises(ExplorerError, match="NaN"):
        LatentMap.fit(bad)
    m = LatentMap.fit(anchors())
    for point in ([3.5, 0.0], [0.0, float("nan")]):
        with pytest.raises(ValueError, match="map coordinate"):
            m.latents(torch.tensor([point]))


# -- pins ----------------------------------------------------------------------------------------------
def test_pins_round_trip_and_bad_pins_are_named():
    pins = [Pin(0.25, -0.5, {"style": {"disc": 0.7, "ring": 0.3}}), Pin(-1.0, 1.0, {})]
    assert parse_pins(pins_json(pins), VOCAB) == pins
    assert parse_pins("", VOCAB) == []
    for text, message in [
        ("[{", "not valid JSON"),
        ('{"x": 0}', "expected a JSON list"),
        ('[{"x": 0}]', "pin 1: expected an object with x and y"),
        ('[{"x": 0, "y": 9}]', r"pin 1 y \(a map coordinate\) must be a number from -3 to 3"),
        ('[{"x": 0, "y": 0}, {"x": "left", "y": 0}]', "pin 2: x must be a number, got 'left'"),
        ('[{"x": 0, "y": 0, "cond": {"style": {"disc": "lots"}}}]', "the weight of 'disc' must be a number"),
        ('[{"x": 0, "y": 0, "cond": {"colour": {"red": 1}}}]', "unknown factor 'colour'"),
        ('[{"x": 0, "y": 0, "cond": {"style": {"square": 1}}}]', "unknown label"),
        (json.dumps([{"x": 0, "y": 0}] * 257), "at most 256"),
    ]:
        with pytest.raises(ExplorerError, match=message):
            parse_pins(text, VOCAB)


# -- the node ------------------------------------------------------------------------------------------
@pytest.fixture()
def explorer(tiny_model_path, tmp_path):
    comfy = pack_module("nodes.comfy")
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_model_path, models / "tiny.safetensors")
    comfy.set_model_directories([models])
    yield load_pack(), pack_module("nodes.explorer")
    comfy._model_dirs = None


PINS = json.dumps([{"x": 0.3, "y": -0.2, "cond": {"label": {"disc": 1}}},
                   {"x": -0.6, "y": 0.4, "cond": {"label": {"ring": 0.5, "disc": 0.5}}}, {"x": 0.9, "y": 0.9}])


def run_node(pack, model, **inputs):
    node = pack.NODE_CLASS_MAPPINGS["CVAELatentExplorer"]()
    with torch.inference_mode():
        out = node.explore(model, **{"count": 8, "seed": 3, "temperature": 0.9, "pins": PINS, **inputs})
    return out["ui"], out["result"]


def test_the_node_gives_its_pins_as_keyframes_with_their_styles(explorer, tiny_model):
    pack, module = explorer
    ui, (keys, cond, image) = run_node(pack, tiny_model, unique_id="5")
    assert keys["z"].shape == (3, tiny_model.config.latent_dim) and image.shape == (3, 32, 32, 3)
    assert cond["label"].tolist() == [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]  # the last: null
    _, (again, _, image2) = run_node(pack, tiny_model)
    assert torch.equal(keys["z"], again["z"]) and torch.equal(image, image2)
    _, (other, _, _) = run_node(pack, tiny_model, seed=4)
    assert not torch.equal(keys["z"], other["z"])
    # The route draws the same map the run used, and decodes a pin to the node's image of it.
    reply = module.explorer_map({"node": ui["cvae_map"][0].split(":", 1)[1]})
    assert len(reply["coords"]) == 8 and reply["factors"] == tiny_model.vocab
    png = module.explorer_decode({"key": reply["key"], "x": 0.3, "y": -0.2, "cond": {"label": {"disc": 1}}})
    decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert np.abs(decoded.astype(int) - (image[0].numpy() * 255).round().astype(int)).max() <= 1
    with pytest.raises(ValueError, match="no pinned points"):
        run_node(pack, tiny_model, pins="[]")


def test_the_node_lays_out_connected_latents(explorer, tiny_model):
    pack, _ = explorer
    z = torch.randn(5, tiny_model.config.latent_dim, generator=torch.Generator().manual_seed(0))
    m = LatentMap.fit(z)
    pins = pins_json([Pin(float(m.coords[2, 0]), float(m.coords[2, 1]), {})])
    _, (keys, _, _) = run_node(pack, tiny_model, latents={"z": z}, pins=pins)
    assert torch.allclose(keys["z"][0], z[2], atol=1e-4)  # a pin on an anchor is that latent


def test_the_routes_refuse_bad_requests_by_name(explorer):
    _, module = explorer
    good = {"model": "tiny.safetensors", "count": 6, "seed": 1, "temperature": 0.8}
    reply = module.explorer_map(good)
    assert len(reply["thumbs"]) == 6 and reply["thumbs"][0].startswith("data:image/png;base64,")
    assert module.explorer_map(good)["key"] == reply["key"]  # kept, not drawn again
    with pytest.raises(LookupError, match="unknown model 'nope.safetensors'"):
        module.explorer_map({**good, "model": "nope.safetensors"})
    with pytest.raises(LookupError, match="unknown model '../../etc/passwd'"):
        module.explorer_map({**good, "model": "../../etc/passwd"})
    for change, message in [({"count": 1000}, "count: 1000 is outside"), ({"count": 2.5}, "count: expected a whole"),
                            ({"temperature": "hot"}, "temperature: expected a number"), ({"seed": -1}, "seed")]:
        with pytest.raises(ValueError, match=message):
            module.explorer_map({**good, **change})
    with pytest.raises(LookupError, match="has not run yet"):
        module.explorer_map({"node": "999"})
    with pytest.raises(LookupError, match="unknown or expired map"):
        module.explorer_decode({"key": "prior:0", "x": 0, "y": 0})
    with pytest.raises(ValueError, match="map coordinate"):
        module.explorer_decode({"key": reply["key"], "x": 50, "y": 0})
    with pytest.raises(ValueError, match="unknown label"):
        module.explorer_decode({"key": reply["key"], "x": 0, "y": 0, "cond": {"label": {"square": 1}}})
    png = module.explorer_decode({"key": reply["key"], "x": 0.1, "y": -0.1})
    assert Image.open(io.BytesIO(png)).size == (32, 32)
