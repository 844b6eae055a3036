"""The runner against a real ComfyUI: the same workflows give the same files, and invalid ones the
same named errors. Skipped unless COMFYUI_DIR names a ComfyUI checkout (its Python environment:
COMFYUI_PYTHON, default this interpreter). The tiny node classes of tests/runner_nodes.py are
installed into a private base directory as a custom node pack; ComfyUI runs on a free port."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import test_runner as base  # pytest puts tests/ on sys.path; a module import keeps its tests uncollected here
from comfyui_server import comfyui_server, finish, needs_comfyui, request
from cvae_art.runner import execute, ui_to_api, validate
from runner_nodes import CLASSES, NAMES

pytestmark = needs_comfyui
TESTS = Path(__file__).resolve().parent

SHIM = f'''import importlib.util
_spec = importlib.util.spec_from_file_location("cvae_runner_test_nodes_impl", {str(TESTS / "runner_nodes.py")!r})
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
NODE_CLASS_MAPPINGS = _module.NODE_CLASS_MAPPINGS
'''


@pytest.fixture(scope="module")
def comfyui(tmp_path_factory):
    root = tmp_path_factory.mktemp("comfyui_base")
    pack = root / "custom_nodes" / "cvae_runner_test_nodes"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(SHIM)
    with comfyui_server(root) as url:
        yield url


def _queue(url: str, api: dict, workflow: dict | None = None) -> dict:
    """POST the prompt as ComfyUI's frontend does; return the response (node_errors included)."""
    extra = {"extra_pnginfo": {"workflow": workflow}} if workflow is not None else {}
    status, reply = request(f"{url}/prompt", {"prompt": api, "extra_data": extra})
    reply["status_code"] = status
    return reply


def _saved(folder: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((folder / "sub").glob("*.json"))}


def test_ui_workflow_gives_the_same_files(comfyui, tmp_path):
    theirs, ours = tmp_path / "comfyui", tmp_path / "headless"
    ui = base.ui_workflow(str(theirs))
    reply = _queue(comfyui, ui_to_api(ui, CLASSES, NAMES).api, ui)
    assert reply["status_code"] == 200 and reply["node_errors"] == {}, reply
    history = finish(comfyui, reply["prompt_id"])
    assert history["status"]["status_str"] == "success", history["status"]

    run = execute(ui_to_api(base.ui_workflow(str(ours)), CLASSES, NAMES), CLASSES)
    assert _saved(theirs) == _saved(ours) and len(_saved(ours)) == 2
    assert sorted(history["outputs"]) == sorted(run.ui)
    for node_id, ui_out in run.ui.items():
        assert history["outputs"][node_id] == ui_out


def test_list_semantics_are_the_same(comfyui, tmp_path):
    theirs, ours = tmp_path / "comfyui", tmp_path / "headless"
    reply = _queue(comfyui, base.list_api(str(theirs)))
    assert reply["status_code"] == 200, reply
    assert finish(comfyui, reply["prompt_id"])["status"]["status_str"] == "success"
    execute(base.list_api(str(ours)), CLASSES)
    assert _saved(theirs) == _saved(ours) and len(_saved(ours)) == 8


# Kinds ComfyUI reports under the same name; the others differ only in name (an unknown type is its
# 'invalid_prompt', a missing node or output index an exception during validation).
SAME_KIND = {"required_input_missing", "return_type_mismatch", "value_bigger_than_max", "value_smaller_than_min",
             "value_not_in_list", "custom_validation_failed"}


@pytest.mark.parametrize("case", [c for c in base.BROKEN if c[0] in SAME_KIND or c[4] == "'lots' is not an integer"],
                         ids=lambda c: c[0])
def test_invalid_workflows_fail_the_same_way(comfyui, tmp_path, case):
    kind, breaks, node_id, input_name, _ = case
    api = base._valid_api(str(tmp_path))
    breaks(api)
    ours = validate(json.loads(json.dumps(api)), CLASSES)
    reply = _queue(comfyui, api)
    theirs = {e["type"] for e in reply["node_errors"][node_id]["errors"]}
    assert [(e.kind, e.node_id) for e in ours] == [(kind, node_id)] and kind in theirs, reply
    if reply["status_code"] == 200:  # ComfyUI still runs the outputs that validated; let it finish
        finish(comfyui, reply["prompt_id"])


@pytest.mark.parametrize("change", [{"flag": "false"}, {"seed": 1.5}], ids=["bool-string", "fractional-int"])
def test_values_comfyui_converts_silently_are_refused_here(comfyui, tmp_path, change):
    """ComfyUI runs bool("false") == True and int(1.5) == 1; we report the value instead."""
    api = base._valid_api(str(tmp_path))
    api["3"]["inputs"].update(change)
    reply = _queue(comfyui, api)
    assert reply["status_code"] == 200 and reply["node_errors"] == {}
    finish(comfyui, reply["prompt_id"])
    assert [e.kind for e in validate(api, CLASSES)] == ["invalid_input_type"]
