"""The pack inside a real ComfyUI: started headless on the CPU, prompts posted to /prompt.

Skipped unless COMFYUI_DIR names a ComfyUI checkout (COMFYUI_PYTHON: the interpreter that has
ComfyUI's requirements, default this one). Everything ComfyUI writes goes to a temporary base
directory (--base-directory), with this repository linked in as custom_nodes/cvae_art.
"""
from __future__ import annotations

import json
import shutil

import pytest
from comfy_pack import REPO
from comfyui_server import comfyui_server, finish, needs_comfyui, request
from PIL import Image

pytestmark = needs_comfyui
WORKFLOW = {"nodes": [], "links": [], "version": 0.4}


def _graph(prompt: dict) -> dict:
    """The prompt without the 'is_changed' keys ComfyUI adds to nodes that define IS_CHANGED."""
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


@pytest.fixture(scope="module")
def comfyui(tmp_path_factory, tiny_model_path):
    base = tmp_path_factory.mktemp("comfyui")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "cvae_art").symlink_to(REPO, target_is_directory=True)
    (base / "models" / "cvae").mkdir(parents=True)
    shutil.copy(tiny_model_path, base / "models" / "cvae" / "tiny.safetensors")
    (base / "models" / "cvae" / "notes.txt").write_text("not a model")
    with comfyui_server(base) as url:
        yield url, base


def _get(url: str):
    return request(url)[1]


def _run(url: str, prompt: dict) -> dict:
    body = {"prompt": prompt, "client_id": "cvae-test", "extra_data": {"extra_pnginfo": {"workflow": WORKFLOW}}}
    status, reply = request(url + "/prompt", body)
    if status != 200:
        return {"rejected": reply}
    return finish(url, reply["prompt_id"])


def test_comfyui_lists_every_node_and_registers_models_cvae(comfyui):
    url, base = comfyui
    from comfy_pack import load_pack

    info = _get(url + "/object_info")
    assert set(load_pack().NODE_CLASS_MAPPINGS) <= set(info), "a node failed to register in ComfyUI"
    log = (base / "comfyui.log").read_text()
    assert not [line for line in log.splitlines() if "IMPORT FAILED" in line and "cvae_art" in line]
    choices = info["CVAELoadModel"]["input"]["required"]["model_name"][0]
    assert choices == ["cvae_emoji_64.safetensors [bundled]", "tiny.safetensors"]  # filtered by extension


def test_comfyui_without_opencv_loads_every_node(tmp_path):
    """A pack installed with requirements.txt alone has no cv2: it must still load, all of it."""
    from comfy_pack import load_pack

    blocker = tmp_path / "no_opencv" / "cv2"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('OpenCV is not installed (test)')\n")
    base = tmp_path / "base"
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / "cvae_art").symlink_to(REPO, target_is_directory=True)
    with comfyui_server(base, env={"PYTHONPATH": str(blocker.parent)}) as url:
        info = _get(url + "/object_info")
    assert set(load_pack().NODE_CLASS_MAPPINGS) <= set(info), "a node failed to register without OpenCV"
    log = (base / "comfyui.log").read_text()
    assert not [line for line in log.splitlines() if "IMPORT FAILED" in line and "cvae_art" in line]


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
