"""The Latent Explorer in the real ComfyUI frontend, driven by headless Chromium.

Skipped unless COMFYUI_DIR names a ComfyUI checkout, Debian's Chromium is at /usr/bin/chromium
and Playwright is installed from pip (its own browsers are never downloaded). Set
CVAE_EXPLORER_SCREENSHOT=path.png to keep a screenshot of the node (the README's).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import av
import numpy as np
import pytest
from comfy_pack import REPO
from comfyui_server import comfyui_server, needs_comfyui, request

from cvae_art.cli import main as cvae

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    needs_comfyui,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="no Chromium (Debian package chromium)"),
]
playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")
# Chromium on a closed network: no background connections, no sandbox as root, a fresh profile.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
APP = "window.comfyAPI.app.app"


def frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as f:
        return [frame.to_ndarray(format="rgb24") for frame in f.decode(video=0)]


def test_explore_pin_and_render_in_the_real_frontend(tmp_path, monkeypatch, capsys):
    base = tmp_path / "comfyui"
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / "cvae_art").symlink_to(REPO, target_is_directory=True)
    # A first visit opens the template browser over the graph; a user who has seen it has this.
    (base / "user" / "default").mkdir(parents=True)
    (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    workflow = json.loads((REPO / "workflows" / "latent_explorer.json").read_text(encoding="utf-8"))
    with comfyui_server(base) as url, playwright.sync_playwright() as pw:
        # The route refuses bad input by itself, with JSON errors.
        assert request(f"{url}/cvae/explorer/map", {"model": "nope.safetensors", "count": 4, "seed": 0,
                                                      "temperature": 1.0})[0] == 404
        assert request(f"{url}/cvae/explorer/decode", {"key": "prior:0", "x": 0, "y": 0})[0] == 404
        status, reply = request(f"{url}/cvae/explorer/map", {"model": "cvae_emoji_64.safetensors [bundled]",
                                                               "count": 500, "seed": 0, "temperature": 1.0})
        assert status == 400 and "count" in reply["error"]
        status, reply = request(f"{url}/cvae/explorer/map", {"pad": "x" * 20_000})
        assert status == 413

        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        errors: list[str] = []
        # Errors of the page once the app is up. "Failed to load resource" messages are judged by
        # their responses: ComfyUI's own frontend asks for user files an empty profile lacks (404).
        page.on("console", lambda m: errors.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
        page.on("pageerror", lambda e: errors.append(e.stack or str(e)))
        page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.url}")
                if r.status >= 400 and ("/cvae/" in r.url or "cvae_art" in r.url) else None)
        page.goto(url)
        page.wait_for_function(f"() => {APP} && {APP}.graph", timeout=120_000)
        page.wait_for_function("() => !!window.LiteGraph?.registered_node_types?.CVAELatentExplorer", timeout=120_000)
        errors.clear()  # the frontend's own start-up (a settings handler of 1.27.10 throws on an empty profile)
        page.evaluate(f"wf => {APP}.loadGraphData(wf)", workflow)
        page.wait_for_function("() => document.querySelector('.cvae-explorer-status')?.textContent.includes('hover')",
                               timeout=60_000)
        box = page.locator("canvas.cvae-explorer-map").bounding_box()
        preview = page.locator("img.cvae-explorer-preview")

        def hover(fx: float, fy: float) -> str:
            before = preview.get_attribute("src")
            page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"], steps=4)
            page.wait_for_function("s => document.querySelector('img.cvae-explorer-preview').src !== s", arg=before,
                                   timeout=20_000)
            return page.evaluate("() => document.querySelector('img.cvae-explorer-preview').dataset.point")

        first = hover(0.3, 0.3)
        second = hover(0.7, 0.6)
        assert first != second  # a new point, decoded and shown
        page.mouse.click(box["x"] + 0.7 * box["width"], box["y"] + 0.6 * box["height"])
        pins = json.loads(page.evaluate(
            f"() => {APP}.graph.nodes.find(n => n.type === 'CVAELatentExplorer').widgets.find(w => w.name === 'pins').value"))
        assert len(pins) == 5 and pins[-1]["cond"]  # the shipped four, and this one with the sliders' style
        if os.environ.get("CVAE_EXPLORER_SCREENSHOT"):
            node = page.locator(".cvae-explorer").bounding_box()
            page.screenshot(path=os.environ["CVAE_EXPLORER_SCREENSHOT"],
                            clip={"x": node["x"] - 12, "y": node["y"] - 330, "width": node["width"] + 24,
                                  "height": node["height"] + 342})
        saved = page.evaluate(f"() => {APP}.graph.serialize()")
        page.evaluate(f"() => {APP}.queuePrompt(0)")
        deadline = time.monotonic() + 240
        while not list((base / "output").rglob("latent_explorer_*.mp4")) and time.monotonic() < deadline:
            time.sleep(1)
        (theirs,) = (base / "output").rglob("latent_explorer_*.mp4")
        browser.close()
    assert errors == []
    # The graph as the page saved it, run headless: the same frames.
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(saved), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert cvae(["run", str(path), "--output-dir", str(tmp_path / "headless"), "-q"]) == 0
    capsys.readouterr()
    (ours,) = (tmp_path / "headless").rglob("latent_explorer_*.mp4")
    a, b = frames(theirs), frames(ours)
    assert len(a) == len(b) == 144  # Render Walk's frames, whatever the number of pins
    assert max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b)) <= 2
