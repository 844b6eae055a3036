"""The pack inside a real ComfyUI: started headless on the CPU, prompts posted to /prompt.

Skipped unless COMFYUI_DIR names a ComfyUI checkout (COMFYUI_PYTHON: the interpreter that has
ComfyUI's requirements, default this one). Everything ComfyUI writes goes to a temporary base
directory (--base-directory), with this repository linked in as custom_nodes/cvae_art.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from comfy_pack import REPO
from PIL import Image

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
pytestmark = pytest.mark.skipif(
    not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").is_file(), reason="set COMFYUI_DIR to a ComfyUI checkout"
)

# torchvision through vae_core's guard (some CPU installs ship a torchvision whose compiled ops
# do not match torch; ComfyUI imports torchvision at start), then ComfyUI's main.py as __main__.
BOOT = """
import importlib.util, os, runpy, sys
spec = importlib.util.spec_from_file_location("_cvae_torchvision", sys.argv[1])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod); mod.import_torchvision()
os.chdir(sys.argv[2]); sys.path.insert(0, sys.argv[2]); sys.argv = ["main.py"] + sys.argv[3:]
runpy.run_path("main.py", run_name="__main__")
"""
WORKFLOW = {"nodes": [], "links": [], "version": 0.4}


def _graph(prompt: dict) -> dict:
    """The prompt without the 'is_changed' keys ComfyUI adds to nodes that define IS_CHANGED."""
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def comfyui(tmp_path_factory, tiny_model_path):
    base = tmp_path_factory.mktemp("comfyui")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "cvae_art").symlink_to(REPO, target_is_directory=True)
    (base / "models" / "cvae").mkdir(parents=True)
    shutil.copy(tiny_model_path, base / "models" / "cvae" / "tiny.safetensors")
    (base / "models" / "cvae" / "notes.txt").write_text("not a model")
    port = _free_port()
    log = open(base / "comfyui.log", "w")
    proc = subprocess.Popen(
        [os.environ.get("COMFYUI_PYTHON", sys.executable), "-c", BOOT, str(REPO / "vae_core" / "_torchvision.py"),
         COMFYUI_DIR, "--cpu", "--base-directory", str(base), "--listen", "127.0.0.1", "--port", str(port),
         "--disable-auto-launch"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                pytest.fail(f"ComfyUI exited: {(base / 'comfyui.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url + "/system_stats", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        else:
            pytest.fail("ComfyUI did not start in 120 s")
        yield url, base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _get(url: str):
    return json.load(urllib.request.urlopen(url, timeout=10))


def _run(url: str, prompt: dict) -> dict:
    body = {"prompt": prompt, "client_id": "cvae-test", "extra_data": {"extra_pnginfo": {"workflow": WORKFLOW}}}
    req = urllib.request.Request(url + "/prompt", json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        pid = json.load(urllib.request.urlopen(req, timeout=10))["prompt_id"]
    except urllib.error.HTTPError as err:
        return {"rejected": json.loads(err.read())}
    for _ in range(600):
        history = _get(f"{url}/history/{pid}")
        if pid in history and history[pid]["status"].get("completed") is not None:
            return history[pid]
        if pid in history and history[pid]["status"].get("status_str") == "error":
            return history[pid]
        time.sleep(0.2)
    pytest.fail("prompt did not finish in 120 s")


def test_comfyui_lists_every_node_and_registers_models_cvae(comfyui):
    url, base = comfyui
    from comfy_pack import load_pack

    info = _get(url + "/object_info")
    assert set(load_pack().NODE_CLASS_MAPPINGS) <= set(info), "a node failed to register in ComfyUI"
    log = (base / "comfyui.log").read_text()
    assert not [line for line in log.splitlines() if "IMPORT FAILED" in line and "cvae_art" in line]
    choices = info["CVAELoadModel"]["input"]["required"]["model_name"][0]
    assert choices == ["cvae_emoji_64.safetensors [bundled]", "tiny.safetensors"]  # filtered by extension


def test_comfyui_runs_a_prompt_and_embeds_the_graph(comfyui):
    url, base = comfyui
    prompt = {
        "1": {"class_type": "CVAELoadModel", "inputs": {"model_name": "tiny.safetensors"}},
        "2": {"class_type": "CVAECondition", "inputs": {"model": ["1", 0], "factor": "", "label": "disc"}},
        "3": {"class_type": "CVAESample", "inputs": {"model": ["1", 0], "count": 3, "seed": 3, "temperature": 1.0, "cond": ["2", 0]}},
        "4": {"class_type": "CVAESaveImages", "inputs": {"images": ["3", 0], "filename_prefix": "cvae/sample"}},
        "5": {"class_type": "CVAERenderWalk", "inputs": {
            "model": ["1", 0], "latents": ["3", 1], "frames": 12, "method": "slerp", "easing": "linear", "hold": 0,
            "loop": True, "pingpong": False, "format": "mp4", "fps": 8.0, "quality": 80, "loop_count": 0, "size": 64,
            "filename_prefix": "cvae/walk", "cond": ["2", 0]}},
    }
    result = _run(url, prompt)
    assert result["status"]["status_str"] == "success", result["status"]
    saved = result["outputs"]["4"]["images"]
    assert [s["filename"] for s in saved] == ["sample_00001_.png", "sample_00002_.png", "sample_00003_.png"]
    with Image.open(base / "output" / "cvae" / "sample_00001_.png") as im:
        assert _graph(json.loads(im.text["prompt"])) == prompt and json.loads(im.text["workflow"]) == WORKFLOW
    assert result["outputs"]["5"]["animated"] == [True]
    import av

    with av.open(str(base / "output" / "cvae" / "walk_00001_.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 12 and _graph(json.loads(c.metadata["prompt"])) == prompt


def test_comfyui_reports_our_errors_per_node(comfyui):
    url, _ = comfyui
    prompt = {
        "1": {"class_type": "CVAELoadModel", "inputs": {"model_name": "tiny.safetensors"}},
        "2": {"class_type": "CVAESample", "inputs": {"model": ["1", 0], "count": 1, "seed": 0, "temperature": 1.0}},
        "3": {"class_type": "CVAESaveImages", "inputs": {"images": ["2", 0], "filename_prefix": "../../escape"}},
    }
    result = _run(url, prompt)
    assert result["status"]["status_str"] == "error"
    errors = [m[1] for m in result["status"]["messages"] if m[0] == "execution_error"]
    assert errors and errors[0]["node_id"] == "3" and "outside" in errors[0]["exception_message"]
    # Out-of-range values are refused by ComfyUI's own validation, from our declared min/max.
    prompt["2"]["inputs"]["count"] = 0
    assert "rejected" in _run(url, prompt)
