"""The headless workflow runner (cvae_art.runner, `cvae run`) on the real tiny node classes of tests/runner_nodes.py."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from cvae_art import nodes as pack
from cvae_art.cli import main
from cvae_art.runner import (NodeExecutionError, WorkflowValidationError, apply_overrides, execute, load_workflow,
                             output_files, ui_to_api, validate, workflow_from_data)
from cvae_art.runner.spec import input_specs

from runner_nodes import CALLS, CLASSES, NAMES, Add, Seeded  # pytest puts tests/ on sys.path


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


# ------------------------------------------------------------------------------------ workflows

def _inp(name, type_, link=None, widget=False):
    entry = {"name": name, "type": type_, "link": link}
    if widget:
        entry["widget"] = {"name": name}
    return entry


def ui_workflow(folder: str) -> dict:
    """A UI 0.4 graph as ComfyUI's frontend saves it, exercising every conversion rule.

    1 Integer(3) ─────────────── a (converted widget) ─┐
    2 Seeded(seed 42 + control) ── 4 Reroute ── c ──── 3 Add(b=4) ── 5 Save "main"
    1 ──── c of 7 Add (bypassed) ── 8 Save, prefix from 10 PrimitiveNode ("prim")
    6 Integer (muted) ── c of 11 Add (no output needs it)          9 Note
    """
    nodes = [
        {"id": 1, "type": "TestInt", "mode": 0, "inputs": [_inp("value", "INT", widget=True)],
         "outputs": [{"name": "INT", "type": "INT", "links": [1, 6]}], "widgets_values": [3]},
        {"id": 2, "type": "TestSeeded", "title": "Seeded thing", "mode": 0,
         "inputs": [_inp("seed", "INT", widget=True), _inp("scale", "FLOAT", widget=True),
                    _inp("mode", "COMBO", widget=True), _inp("flag", "BOOLEAN", widget=True),
                    _inp("label", "STRING", widget=True)],
         "outputs": [{"name": "INT", "type": "INT", "links": [2]}],
         "widgets_values": [42, "randomize", 2.5, "product", True, "hi"]},
        {"id": 3, "type": "TestAdd", "mode": 0,
         "inputs": [_inp("c", "INT", link=3), _inp("a", "INT", link=1, widget=True), _inp("b", "INT", widget=True)],
         "outputs": [{"name": "INT", "type": "INT", "links": [4]}], "widgets_values": [99, 4]},
        {"id": 4, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 2}],
         "outputs": [{"name": "", "type": "INT", "links": [3]}], "properties": {"showOutputText": False}},
        {"id": 5, "type": "TestSave", "mode": 0,
         "inputs": [_inp("value", "INT", link=4), _inp("folder", "STRING", widget=True), _inp("prefix", "STRING", widget=True)],
         "outputs": [], "widgets_values": [folder, "main"]},
        {"id": 6, "type": "TestInt", "title": "Muted int", "mode": 2, "inputs": [_inp("value", "INT", widget=True)],
         "outputs": [{"name": "INT", "type": "INT", "links": [8]}], "widgets_values": [7]},
        {"id": 7, "type": "TestAdd", "title": "Bypassed add", "mode": 4,
         "inputs": [_inp("c", "INT", link=6), _inp("a", "INT", widget=True), _inp("b", "INT", widget=True)],
         "outputs": [{"name": "INT", "type": "INT", "links": [7]}], "widgets_values": [10, 20]},
        {"id": 8, "type": "TestSave", "title": "Save through bypass", "mode": 0,
         "inputs": [_inp("value", "INT", link=7), _inp("folder", "STRING", widget=True),
                    _inp("prefix", "STRING", link=9, widget=True)],
         "outputs": [], "widgets_values": [folder, "stale"]},
        {"id": 9, "type": "Note", "mode": 0, "inputs": [], "outputs": [], "widgets_values": ["read me"]},
        {"id": 10, "type": "PrimitiveNode", "mode": 0, "inputs": [],
         "outputs": [{"name": "STRING", "type": "STRING", "links": [9], "widget": {"name": "prefix"}}],
         "widgets_values": ["prim"]},
        {"id": 11, "type": "TestAdd", "mode": 0,
         "inputs": [_inp("c", "INT", link=8), _inp("a", "INT", widget=True), _inp("b", "INT", widget=True)],
         "outputs": [{"name": "INT", "type": "INT", "links": []}], "widgets_values": [1, 2]},
    ]
    links = [[1, 1, 0, 3, 1, "INT"], [2, 2, 0, 4, 0, "INT"], [3, 4, 0, 3, 0, "INT"], [4, 3, 0, 5, 0, "INT"],
             [6, 1, 0, 7, 0, "INT"], [7, 7, 0, 8, 0, "INT"], [8, 6, 0, 11, 0, "INT"], [9, 10, 0, 8, 2, "STRING"]]
    return {"last_node_id": 11, "last_link_id": 9, "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {}, "version": 0.4}


def expected_api(folder: str) -> dict:
    """Worked out by hand from the rules of ComfyUI's graphToPrompt."""
    return {
        "1": {"inputs": {"value": 3}, "class_type": "TestInt", "_meta": {"title": "Integer"}},
        # the control_after_generate value after the seed is not an input
        "2": {"inputs": {"seed": 42, "scale": 2.5, "mode": "product", "flag": True, "label": "hi"},
              "class_type": "TestSeeded", "_meta": {"title": "Seeded thing"}},
        # 'a' is a widget turned socket: its stale widget value (99) still takes its slot, the link wins;
        # 'c' comes from node 2 through the reroute
        "3": {"inputs": {"a": ["1", 0], "b": 4, "c": ["2", 0]}, "class_type": "TestAdd", "_meta": {"title": "TestAdd"}},
        "5": {"inputs": {"folder": folder, "prefix": "main", "value": ["3", 0]}, "class_type": "TestSave",
              "_meta": {"title": "Save value"}},
        # bypassed node 7 hands on its INT input 'c', which comes from node 1; the primitive gives the prefix
        "8": {"inputs": {"folder": folder, "prefix": "prim", "value": ["1", 0]}, "class_type": "TestSave",
              "_meta": {"title": "Save through bypass"}},
        # 'c' was linked to the muted node 6: dropped
        "11": {"inputs": {"a": 1, "b": 2}, "class_type": "TestAdd", "_meta": {"title": "TestAdd"}},
    }


def to_schema1(ui: dict) -> dict:
    """The same graph in the frontend's schema version 1: links as objects, a state block."""
    doc = copy.deepcopy(ui)
    doc["links"] = [{"id": l[0], "origin_id": l[1], "origin_slot": l[2], "target_id": l[3], "target_slot": l[4],
                     "type": l[5]} for l in ui["links"]]
    doc["version"] = 1
    doc["state"] = {"lastNodeId": 11, "lastLinkId": 9, "lastGroupId": 0, "lastRerouteId": 0}
    for key in ("last_node_id", "last_link_id"):
        doc.pop(key)
    return doc


def list_api(folder: str) -> dict:
    return {
        "1": {"class_type": "TestRange", "inputs": {"count": 3}},
        "2": {"class_type": "TestDouble", "inputs": {"x": ["1", 0]}},
        "3": {"class_type": "TestListSum", "inputs": {"values": ["2", 0]}},
        "4": {"class_type": "TestAdd", "inputs": {"a": ["2", 0], "b": 10}},
        "5": {"class_type": "TestRange", "inputs": {"count": ["1", 0]}},
        "6": {"class_type": "TestListSum", "inputs": {"values": ["5", 0]}},
        "7": {"class_type": "TestSave", "inputs": {"value": ["3", 0], "folder": folder, "prefix": "sum"}},
        "8": {"class_type": "TestSave", "inputs": {"value": ["4", 0], "folder": folder, "prefix": "each"}},
        "9": {"class_type": "TestSave", "inputs": {"value": ["6", 0], "folder": folder, "prefix": "concat"}},
        "10": {"class_type": "TestRange", "inputs": {"count": 2}},
        "11": {"class_type": "TestAdd", "inputs": {"a": ["1", 0], "b": ["10", 0]}},
        "12": {"class_type": "TestSave", "inputs": {"value": ["11", 0], "folder": folder, "prefix": "mixed"}},
    }


def read_outputs(paths) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


# ------------------------------------------------------------------------------ UI -> API conversion

def test_widget_specs_follow_the_frontend():
    specs = {s.name: s for s in input_specs(Seeded)}
    assert [s.name for s in input_specs(Add)] == ["a", "b", "c"]
    assert specs["seed"].extra_widget_values == 1  # automatic control_after_generate
    assert specs["scale"].extra_widget_values == 0 and specs["mode"].extra_widget_values == 0
    assert not {s.name: s for s in input_specs(Add)}["c"].is_widget  # forceInput
    from cvae_art.runner.spec import InputSpec
    assert InputSpec("steps", "INT", {"control_after_generate": True}).extra_widget_values == 1
    assert InputSpec("seed", "INT", {"control_after_generate": False}).extra_widget_values == 0
    assert InputSpec("style", ["a", "b"], {"control_after_generate": True}).extra_widget_values == 2


def test_ui_04_converts_like_the_frontend(tmp_path):
    wf = ui_to_api(ui_workflow(str(tmp_path)), CLASSES, NAMES)
    assert wf.api == expected_api(str(tmp_path))
    assert wf.errors == [] and wf.warnings == []
    assert wf.skipped == {"4": "a Reroute (frontend only)", "6": "muted", "7": "bypassed",
                          "9": "a Note (frontend only)", "10": "a PrimitiveNode (frontend only)"}
    assert "muted" in wf.notes[("11", "c")]


def test_schema_1_converts_to_the_same_prompt(tmp_path):
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(to_schema1(ui_workflow(str(tmp_path)))))
    wf = load_workflow(path, CLASSES, NAMES)
    assert wf.format == "ui"
    assert wf.api == expected_api(str(tmp_path))


def test_bypass_without_a_matching_input_leaves_the_input_empty(tmp_path):
    ui = ui_workflow(str(tmp_path))
    node7 = next(n for n in ui["nodes"] if n["id"] == 7)
    node7["inputs"][0]["link"] = None  # the bypassed node's INT socket is not connected
    ui["links"] = [l for l in ui["links"] if l[0] != 6]
    wf = ui_to_api(ui, CLASSES, NAMES)
    assert "value" not in wf.api["8"]["inputs"]
    errors = validate(wf, CLASSES)
    assert [(e.kind, e.node_id, e.input) for e in errors] == [("required_input_missing", "8", "value")]
    assert 'node 7 "Bypassed add"' in str(errors[0]) and "not connected" in str(errors[0])


def test_short_widgets_values_take_defaults_with_a_warning(tmp_path):
    ui = ui_workflow(str(tmp_path))
    next(n for n in ui["nodes"] if n["id"] == 2)["widgets_values"] = [42, "fixed", 2.5]
    wf = ui_to_api(ui, CLASSES, NAMES)
    assert wf.api["2"]["inputs"] == {"seed": 42, "scale": 2.5, "mode": "sum", "flag": True, "label": ""}
    assert len(wf.warnings) == 1 and "mode, flag, label take their defaults" in wf.warnings[0]


class SeedLast:
    """A node whose last widget is a seed, so its control value is the last item of widgets_values."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"scale": ("INT", {"default": 1, "min": 0, "max": 10}),
                             "seed": ("INT", {"default": 0, "min": 0, "max": 2**32 - 1})}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, scale, seed):
        return (scale * seed,)


@pytest.mark.parametrize("values,warned", [([2, 9, "fixed"], False), ([2, 9], True)])
def test_missing_control_value_after_the_last_seed_is_warned(values, warned):
    ui = {"nodes": [{"id": 1, "type": "TestSeedLast", "title": "Seed last", "mode": 0, "inputs": [], "outputs": [],
                     "widgets_values": values}], "links": [], "version": 0.4}
    wf = ui_to_api(ui, {"TestSeedLast": SeedLast}, {})
    assert wf.api["1"]["inputs"] == {"scale": 2, "seed": 9}  # the inputs are the same either way
    if warned:
        assert len(wf.warnings) == 1
        assert 'node 1 "Seed last"' in wf.warnings[0] and "2 value(s)" in wf.warnings[0] and "expects 3" in wf.warnings[0]
        assert "control_after_generate value after seed is missing" in wf.warnings[0]
    else:
        assert wf.warnings == []


def test_subgraph_nodes_are_refused_by_name(tmp_path):
    ui = ui_workflow(str(tmp_path))
    ui["definitions"] = {"subgraphs": [{"id": "9b0c-sub", "nodes": [], "links": []}]}
    ui["nodes"].append({"id": 12, "type": "9b0c-sub", "title": "My block", "mode": 0, "inputs": [], "outputs": []})
    errors = validate(ui_to_api(ui, CLASSES, NAMES), CLASSES)
    assert [(e.kind, e.node_id, e.title) for e in errors] == [("unsupported", "12", "My block")]
    assert "Unpack Subgraph" in str(errors[0])


# ------------------------------------------------------------------------------------- running

def test_ui_workflow_runs_only_needed_nodes_once(tmp_path):
    wf = ui_to_api(ui_workflow(str(tmp_path)), CLASSES, NAMES)
    events = []
    run = execute(wf, CLASSES, progress=lambda event, step: events.append((event, step.node_id)))
    files = output_files(run, {"output": tmp_path})
    by_prefix = {Path(f).name.split("_")[0]: data for f, data in zip(files, read_outputs(files))}
    # 3 + 4 + (42 * 2.5 + len("hi")) through the reroute; 3 through the bypassed node
    assert by_prefix["main"]["value"] == 114 and by_prefix["prim"]["value"] == 3
    assert all(Path(f).is_absolute() and Path(f).parent == tmp_path / "sub" for f in files)
    # hidden inputs: the API prompt, the UI workflow, the node's own id
    assert by_prefix["main"]["prompt_nodes"] == sorted(wf.api) and by_prefix["main"]["uid"] == "5"
    assert by_prefix["main"]["workflow_nodes"] == 11
    # node 11 feeds no output and node 6 is muted: neither runs; node 1 feeds two nodes but runs once
    assert CALLS == {("IntSource", "1"): 1, "Seeded": 1, "Add": 1, ("Save", "5"): 1, ("Save", "8"): 1}
    assert sorted(run.executed, key=int) == ["1", "2", "3", "5", "8"]
    assert [e for e, _ in events] == ["start", "done"] * 5
    order = run.executed
    assert order.index("3") > max(order.index("1"), order.index("2")) and order.index("5") > order.index("3")


def test_list_semantics_match_comfyui(tmp_path):
    run = execute(list_api(str(tmp_path)), CLASSES)
    values = {}
    for node_id, ui in run.ui.items():
        values[node_id] = [json.loads((tmp_path / "sub" / i["filename"]).read_text())["value"] for i in ui["images"]]
    assert values["7"] == [0 + 2 + 4]  # INPUT_IS_LIST: one call with the whole list
    assert values["8"] == [10, 12, 14]  # one call per item, the constant b repeated
    assert values["9"] == [0 + 0 + 1]  # OUTPUT_IS_LIST concatenates ranges of 0, 1 and 2
    assert values["12"] == [0 + 0, 1 + 1, 2 + 1]  # lists of 3 and 2: the shorter repeats its last item
    assert CALLS["Double"] == 3 and CALLS["Range"] == 5 and CALLS["ListSum"] == 2 and CALLS[("Save", "8")] == 3
    assert len(output_files(run, {"output": tmp_path})) == 8


def test_api_file_runs_with_no_workflow_in_pnginfo(tmp_path):
    path = tmp_path / "api.json"
    api = expected_api(str(tmp_path))
    path.write_text(json.dumps(api))
    wf = load_workflow(path, CLASSES, NAMES)
    assert wf.format == "api" and wf.api == api and wf.title("8") == "Save through bypass"
    run = execute(wf, CLASSES, outputs=["5"])
    data = read_outputs(output_files(run, {"output": tmp_path}))
    assert [d["value"] for d in data] == [114] and data[0]["workflow_nodes"] is None
    assert ("Save", "8") not in CALLS


def test_node_failure_names_the_node(tmp_path):
    api = {"1": {"class_type": "TestInt", "inputs": {"value": 1}, "_meta": {"title": "Load model"}},
           "2": {"class_type": "TestBoom", "inputs": {"x": ["1", 0]}, "_meta": {"title": "Decode"}},
           "3": {"class_type": "TestSave", "inputs": {"value": ["2", 0], "folder": str(tmp_path), "prefix": "x"}}}
    with pytest.raises(NodeExecutionError) as caught:
        execute(api, CLASSES)
    assert str(caught.value) == 'node 2 "Decode" (TestBoom) failed: ValueError: the model file is corrupt'
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------- validation

def _valid_api(folder: str) -> dict:
    return {
        "1": {"class_type": "TestInt", "inputs": {"value": 5}, "_meta": {"title": "Five"}},
        "2": {"class_type": "TestAdd", "inputs": {"a": ["1", 0], "b": 1}, "_meta": {"title": "Plus one"}},
        "3": {"class_type": "TestSeeded", "inputs": {"seed": 1, "scale": 1.0, "mode": "sum", "flag": True, "label": ""},
              "_meta": {"title": "Seed"}},
        "4": {"class_type": "TestEven", "inputs": {"n": 4}, "_meta": {"title": "Even"}},
        "5": {"class_type": "TestSave", "inputs": {"value": ["2", 0], "folder": folder, "prefix": "a"}, "_meta": {"title": "Out A"}},
        "6": {"class_type": "TestSave", "inputs": {"value": ["3", 0], "folder": folder, "prefix": "b"}, "_meta": {"title": "Out B"}},
        "7": {"class_type": "TestSave", "inputs": {"value": ["4", 0], "folder": folder, "prefix": "c"}, "_meta": {"title": "Out C"}},
    }


BROKEN = [
    ("unknown_node_type", lambda a: a["2"].update(class_type="TestAd"), "2", None, "did you mean TestAdd"),
    ("required_input_missing", lambda a: a["2"]["inputs"].pop("b"), "2", "b", "required input is missing"),
    ("missing_node", lambda a: a["2"]["inputs"].update(a=["42", 0]), "2", "a", "node 42"),
    ("bad_output_index", lambda a: a["2"]["inputs"].update(a=["1", 3]), "2", "a", "has 1 output(s)"),
    ("return_type_mismatch", lambda a: a.update({"9": {"class_type": "TestPicture", "inputs": {}}}) or a["2"]["inputs"].update(a=["9", 0]),
     "2", "a", "gives TEST_PICTURE; this input takes INT"),
    ("value_bigger_than_max", lambda a: a["3"]["inputs"].update(scale=12.5), "3", "scale", "above the maximum 10.0"),
    ("value_smaller_than_min", lambda a: a["1"]["inputs"].update(value=-101), "1", "value", "below the minimum -100"),
    ("value_not_in_list", lambda a: a["3"]["inputs"].update(mode="products"), "3", "mode", "did you mean 'product'"),
    ("invalid_input_type", lambda a: a["3"]["inputs"].update(seed="lots"), "3", "seed", "'lots' is not an integer"),
    ("invalid_input_type", lambda a: a["3"]["inputs"].update(flag="false"), "3", "flag", "not a boolean"),
    ("invalid_input_type", lambda a: a["3"]["inputs"].update(seed=1.5), "3", "seed", "1.5 is not an integer"),
    ("custom_validation_failed", lambda a: a["4"]["inputs"].update(n=3), "4", None, "n must be even, got 3"),
    ("dependency_cycle", lambda a: a["2"]["inputs"].update(c=["2", 0]), "2", "c", '2 "Plus one" -> 2'),
]


@pytest.mark.parametrize("kind, breaks, node_id, input_name, words", BROKEN, ids=[f"{b[0]}-{i}" for i, b in enumerate(BROKEN)])
def test_each_invalid_workflow_gives_its_named_error(tmp_path, kind, breaks, node_id, input_name, words):
    api = _valid_api(str(tmp_path))
    assert validate(copy.deepcopy(api), CLASSES) == []
    breaks(api)
    errors = validate(api, CLASSES)
    assert [(e.kind, e.node_id, e.input) for e in errors] == [(kind, node_id, input_name)]
    text = str(errors[0])
    assert text.startswith(f'node {node_id} "{api[node_id]["_meta"]["title"]}" ({api[node_id]["class_type"]})')
    assert words in text
    with pytest.raises(WorkflowValidationError):
        execute(api, CLASSES)
    assert not CALLS and not list(tmp_path.iterdir())  # nothing ran


def test_all_problems_are_reported_together_and_nothing_runs(tmp_path):
    api = _valid_api(str(tmp_path))
    api["3"]["inputs"].update(scale=11.0, mode="nope")
    api["4"]["inputs"]["n"] = 5
    api["5"]["inputs"].pop("prefix")
    api["8"] = {"class_type": "Mystery", "inputs": {}}
    with pytest.raises(WorkflowValidationError) as caught:
        execute(api, CLASSES)
    found = {(e.kind, e.node_id, e.input) for e in caught.value.errors}
    assert found == {("value_bigger_than_max", "3", "scale"), ("value_not_in_list", "3", "mode"),
                     ("custom_validation_failed", "4", None), ("required_input_missing", "5", "prefix"),
                     ("unknown_node_type", "8", None)}
    assert str(caught.value).startswith("5 problem(s)")
    assert not CALLS


def test_comfyui_leniencies_are_kept(tmp_path):
    api = _valid_api(str(tmp_path))
    api["9"] = {"class_type": "TestAdd", "inputs": {"a": "not a number", "b": 1}}  # feeds no output: not checked
    api["4"]["inputs"]["n"] = 20  # above max, but VALIDATE_INPUTS takes n, so the range is left to it
    api["3"]["inputs"].update(seed="12", scale=2)  # converted as ComfyUI does
    wf = workflow_from_data(api, CLASSES)
    assert validate(wf, CLASSES) == []
    assert wf.api["3"]["inputs"]["seed"] == 12 and isinstance(wf.api["3"]["inputs"]["scale"], float)
    assert validate({"1": {"class_type": "TestAdd", "inputs": {"a": 1, "b": 2}}}, CLASSES)[0].kind == "prompt_no_outputs"


def test_ui_errors_use_the_titles_of_the_ui_file(tmp_path):
    ui = ui_workflow(str(tmp_path))
    next(n for n in ui["nodes"] if n["id"] == 2)["widgets_values"][2] = 99.0  # scale above its max
    errors = validate(ui_to_api(ui, CLASSES, NAMES), CLASSES)
    assert [str(e) for e in errors] == ['node 2 "Seeded thing" (TestSeeded), input "scale": value 99.0 is above the maximum 10.0']


def test_required_input_from_a_muted_node_says_so(tmp_path):
    ui = ui_workflow(str(tmp_path))
    next(n for n in ui["nodes"] if n["id"] == 1)["mode"] = 2
    errors = validate(ui_to_api(ui, CLASSES, NAMES), CLASSES)
    # node 8 loses its value too: the bypassed node 7 hands on node 1's output
    assert [(e.kind, e.node_id, e.input) for e in errors] == [("required_input_missing", "3", "a"),
                                                               ("required_input_missing", "8", "value")]
    assert all('its source, node 1 "Integer", is muted' in str(e) for e in errors)


# ---------------------------------------------------------------------------------------- --set

def test_overrides_are_typed_validated_and_reach_the_embedded_workflow(tmp_path):
    wf = ui_to_api(ui_workflow(str(tmp_path)), CLASSES, NAMES)
    assert apply_overrides(wf, ["2.seed=7", "2.scale=1.5", "2.flag=false", "2.mode=sum", "5.prefix=renamed"], CLASSES) == []
    assert wf.api["2"]["inputs"] == {"seed": 7, "scale": 1.5, "mode": "sum", "flag": False, "label": "hi"}
    ui_node = next(n for n in wf.ui["nodes"] if n["id"] == 2)
    assert ui_node["widgets_values"] == [7, "randomize", 1.5, "sum", False, "hi"]
    run = execute(wf, CLASSES, outputs=["5"])
    data = read_outputs(output_files(run, {"output": tmp_path}))
    assert data[0]["value"] == 3 + 4 + 0  # flag off: the seeded node gives 0
    assert Path(output_files(run, {"output": tmp_path})[0]).name.startswith("renamed_5")


@pytest.mark.parametrize("override, words", [
    ("2.seed=abc", "'abc' is not an integer"),
    ("2.flag=maybe", "not a boolean"),
    ("2.sed=1", "no such input (inputs: seed, scale, mode, flag, label)"),
    ("99.seed=1", "there is no node 99"),
    ("6.value=1", "the node is muted"),
    ("20.picture=3", "takes a TEST_PICTURE from another node, not a value"),
    ("seed=3", "expected NODE.INPUT=VALUE"),
])
def test_bad_overrides_are_named(tmp_path, override, words):
    wf = ui_to_api(ui_workflow(str(tmp_path)), CLASSES, NAMES)
    wf.api["20"] = {"class_type": "TestFrame", "inputs": {"picture": ["1", 0]}}
    problems = apply_overrides(wf, [override], CLASSES)
    assert len(problems) == 1 and words in str(problems[0])


def test_override_out_of_range_fails_validation(tmp_path):
    wf = ui_to_api(ui_workflow(str(tmp_path)), CLASSES, NAMES)
    assert apply_overrides(wf, ["1.value=101"], CLASSES) == []
    assert [(e.kind, e.node_id, e.input) for e in validate(wf, CLASSES)] == [("value_bigger_than_max", "1", "value")]


# ------------------------------------------------------------------------------------------ CLI

@pytest.fixture()
def registered(monkeypatch):
    """Our test classes in the pack's real registry, which `cvae run` reads; the pack's output
    folder (which `cvae run --output-dir` sets) restored afterwards."""
    from cvae_art.nodes import comfy

    monkeypatch.setattr(comfy, "_output_dir", getattr(comfy, "_output_dir", None), raising=False)
    for name, cls in CLASSES.items():
        monkeypatch.setitem(pack.NODE_CLASS_MAPPINGS, name, cls)
    for name, title in NAMES.items():
        monkeypatch.setitem(pack.NODE_DISPLAY_NAME_MAPPINGS, name, title)


def test_cli_runs_prints_files_and_applies_sets(tmp_path, registered, capsys):
    out = tmp_path / "out"
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(ui_workflow(str(out))))
    code = main(["run", str(path), "--output-dir", str(out), "--set", "1.value=10", "--set", "2.label=abcd"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    printed = captured.out.split()
    assert len(printed) == 2 and all(Path(p).is_file() for p in printed)
    values = sorted(d["value"] for d in read_outputs(printed))
    assert values == sorted([10, 10 + 4 + 105 + 4])
    assert '[1/5] node' in captured.err and "Seeded thing" in captured.err


def test_cli_exit_codes(tmp_path, registered, capsys):
    out = tmp_path / "out"
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(ui_workflow(str(out))))
    assert main(["run", str(path), "--check"]) == 0 and not out.exists()
    assert "valid (ui format, 6 node(s))" in capsys.readouterr().out
    assert main(["run", str(path), "--print-api"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed) == expected_api(str(out))

    assert main(["run", str(path), "--set", "2.scale=20", "--set", "2.mode=odd"]) == 2
    err = capsys.readouterr().err
    assert 'node 2 "Seeded thing" (TestSeeded), input "scale"' in err and 'input "mode"' in err
    assert not out.exists()

    broken = tmp_path / "boom.json"
    broken.write_text(json.dumps({"1": {"class_type": "TestInt", "inputs": {"value": 1}},
                                  "2": {"class_type": "TestBoom", "inputs": {"x": ["1", 0]}},
                                  "3": {"class_type": "TestSave", "inputs": {"value": ["2", 0], "folder": str(out), "prefix": "p"}}}))
    assert main(["run", str(broken), "--output-dir", str(out)]) == 1
    assert "node 2 (TestBoom) failed: ValueError: the model file is corrupt" in capsys.readouterr().err

    assert main(["run", str(tmp_path / "missing.json")]) == 2
    not_workflow = tmp_path / "list.json"
    not_workflow.write_text("[1, 2]")
    assert main(["run", str(not_workflow)]) == 2
    assert "not a ComfyUI workflow" in capsys.readouterr().err


def test_a_workflow_nested_too_deeply_is_a_validation_error(tmp_path, capsys):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["run", str(path)]) != 0
    err = capsys.readouterr().err
    assert "deep.json" in err and "nested too deeply" in err and "Traceback" not in err
