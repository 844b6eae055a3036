"""The node pack as ComfyUI sees it: import by path, then every class's declaration."""
from __future__ import annotations

import inspect
import sys

import pytest
from comfy_pack import REPO, load_pack, pack_module

CORE_TYPES = {"IMAGE", "MASK", "STRING", "INT", "FLOAT", "BOOLEAN", "AUDIO"}
OUR_TYPES = {"CVAE_MODEL", "CVAE_LATENT", "CVAE_COND"}
HIDDEN = {"PROMPT", "EXTRA_PNGINFO", "UNIQUE_ID", "DYNPROMPT"}
EXPECTED_IDS = {
    "CVAELoadModel", "CVAESaveModel", "CVAETrainModel",
    "CVAEEncode", "CVAEDecode", "CVAESample",
    "CVAELatentAdd", "CVAELatentSubtract", "CVAELatentScale", "CVAELatentAnalogy", "CVAEAttributeVector",
    "CVAEInterpolate", "CVAELatentBatch", "CVAELatentFromBatch",
    "CVAECondition", "CVAEConditionBlendLabels", "CVAEConditionMix", "CVAEConditionBatch", "CVAEControl",
    "CVAERenderWalk", "CVAELoadImageFolder", "CVAERestyleFolder", "CVAESaveImages", "CVAEAnomalyScore",
    "CVAEImageGrid", "CVAEAugmentFolder", "CVAEAttributeSlider", "CVAELatentExplorer",
}


@pytest.fixture(scope="module")
def pack():
    return load_pack()


def all_classes():
    return sorted(load_pack().NODE_CLASS_MAPPINGS.items())


def test_pack_imports_like_comfyui_without_touching_its_modules(pack):
    assert pack.__name__ == str(REPO).replace(".", "_x_")
    assert pack.NODE_CLASS_MAPPINGS and set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS)
    # Our modules live under the pack's own name; no top-level module of ours appeared.
    ours = [m for m in sys.modules if m.startswith(pack.__name__ + ".")]
    assert f"{pack.__name__}.nodes.comfy" in ours and f"{pack.__name__}.vae_core.model" in ours
    assert "nodes" not in sys.modules or not getattr(sys.modules["nodes"], "__file__", "").startswith(str(REPO))
    # Headless: the ComfyUI-only modules are absent and the fallbacks are in use.
    comfy = pack_module("nodes.comfy")
    assert comfy.folder_paths is None and comfy.comfy_utils is None and comfy.model_management is None


def test_every_expected_node_is_registered(pack):
    missing = EXPECTED_IDS - set(pack.NODE_CLASS_MAPPINGS)
    assert not missing, f"nodes missing from NODE_CLASS_MAPPINGS: {sorted(missing)}"
    for node_id, name in pack.NODE_DISPLAY_NAME_MAPPINGS.items():
        assert node_id.startswith("CVAE") and name.startswith("CVAE "), (node_id, name)


def _check_number(node_id: str, name: str, kind: str, opts: dict) -> None:
    for key in ("default", "min", "max", "step"):
        assert key in opts, f"{node_id}.{name}: {kind} without {key}"
    assert opts["min"] <= opts["default"] <= opts["max"], f"{node_id}.{name}: default outside min..max"
    assert opts["step"] > 0, f"{node_id}.{name}: step must be positive"
    if kind == "INT":
        assert all(isinstance(opts[k], int) and not isinstance(opts[k], bool) for k in ("default", "min", "max", "step")), name
    if name == "seed":
        assert opts.get("control_after_generate") is True and opts["max"] >= 2**32, f"{node_id}.seed"


@pytest.mark.parametrize("node_id,cls", all_classes(), ids=[k for k, _ in all_classes()])
def test_node_declaration(node_id, cls):
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"} and spec.get("required"), node_id
    assert cls.CATEGORY.startswith("CVAE/"), node_id
    assert isinstance(cls.DESCRIPTION, str) and len(cls.DESCRIPTION) > 20, node_id
    assert isinstance(cls.RETURN_TYPES, tuple) and all(isinstance(t, str) for t in cls.RETURN_TYPES)
    names = getattr(cls, "RETURN_NAMES", None)
    assert names is None or len(names) == len(cls.RETURN_TYPES), node_id
    tips = getattr(cls, "OUTPUT_TOOLTIPS", None)
    assert tips is None or len(tips) == len(cls.RETURN_TYPES), node_id
    if not cls.RETURN_TYPES:
        assert getattr(cls, "OUTPUT_NODE", False), f"{node_id} returns nothing, so it must be an output node"
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            assert isinstance(entry, tuple) and 1 <= len(entry) <= 2, (node_id, name)
            kind, opts = entry[0], entry[1] if len(entry) == 2 else {}
            assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"
            if isinstance(kind, list):
                assert kind and all(isinstance(c, str) for c in kind), (node_id, name)
                assert opts.get("default", kind[0]) in kind, f"{node_id}.{name}: combo default not in list"
            elif kind in ("INT", "FLOAT"):
                _check_number(node_id, name, kind, opts)
            elif kind == "BOOLEAN":
                assert isinstance(opts.get("default"), bool), (node_id, name)
            elif kind == "STRING":
                assert isinstance(opts.get("default", ""), str), (node_id, name)
            else:
                assert kind in CORE_TYPES | OUR_TYPES, f"{node_id}.{name}: unknown type {kind}"
    for name, kind in spec.get("hidden", {}).items():
        assert kind in HIDDEN, (node_id, name)

    # FUNCTION takes exactly these inputs: required without defaults, optional/hidden with them.
    fn = getattr(cls, cls.FUNCTION)
    params = inspect.signature(fn).parameters
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    declared = {n for s in spec.values() for n in s}
    for name in declared:
        assert name in params or var_kw, f"{node_id}.{cls.FUNCTION} does not take input {name!r}"
    for name in list(spec.get("optional", {})) + list(spec.get("hidden", {})):
        if name in params:
            assert params[name].default is not inspect.Parameter.empty, f"{node_id}: optional {name!r} needs a default"
    for name, p in params.items():
        if name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD and p.default is inspect.Parameter.empty:
            assert name in spec["required"], f"{node_id}.{cls.FUNCTION} needs {name!r}, which is not a required input"
    if hasattr(cls, "IS_CHANGED"):
        assert isinstance(inspect.getattr_static(cls, "IS_CHANGED"), classmethod), node_id
        # ComfyUI calls it with every widget value (links arrive as None) and the hidden inputs.
        widget_values = {n: e[1].get("default") if len(e) > 1 else None for s in ("required", "optional") for n, e in spec.get(s, {}).items()}
        cls.IS_CHANGED(**widget_values)


def test_every_custom_type_has_a_producer_and_a_consumer(pack):
    produced, consumed = set(), set()
    for cls in pack.NODE_CLASS_MAPPINGS.values():
        produced |= set(cls.RETURN_TYPES)
        for section in ("required", "optional"):
            consumed |= {e[0] for e in cls.INPUT_TYPES().get(section, {}).values() if isinstance(e[0], str)}
    assert OUR_TYPES <= produced and OUR_TYPES <= consumed
    assert not (produced - CORE_TYPES - OUR_TYPES), "a node returns an undeclared type"


def test_model_combo_lists_the_bundled_model_first_and_defaults_to_it(pack):
    comfy = pack_module("nodes.comfy")
    choices, opts = pack.NODE_CLASS_MAPPINGS["CVAELoadModel"].INPUT_TYPES()["required"]["model_name"]
    assert choices[0] == comfy.BUNDLED_MODEL == opts["default"]
    assert comfy.BUNDLED_MODEL_FILE == REPO / "assets" / "cvae_emoji_64.safetensors"


def test_defaults_fit_the_bundled_model(pack):
    """The shipped defaults name the bundled model's factor and labels."""
    m = pack.NODE_CLASS_MAPPINGS
    assert m["CVAECondition"].INPUT_TYPES()["required"]["factor"][1]["default"] == "style"
    labels = {m["CVAEConditionBlendLabels"].INPUT_TYPES()["required"][f"label_{i}"][1]["default"] for i in range(1, 5)}
    assert labels == {"noto", "emojitwo", "openmoji", "twemoji2015"}
    assert (REPO / "assets" / m["CVAELoadImageFolder"].INPUT_TYPES()["required"]["folder"][1]["default"]).is_dir()


def test_widget_ranges_are_the_ones_the_cli_checks(pack):
    from cvae_art.vae_core.limits import RANGES

    def spec(node, name):
        inputs = pack.NODE_CLASS_MAPPINGS[node].INPUT_TYPES()
        return {**inputs.get("required", {}), **inputs.get("optional", {})}[name][1]

    for node, name, rng in [("CVAESample", "count", "count"), ("CVAESample", "temperature", "temperature"),
                            ("CVAEInterpolate", "frames", "frames"), ("CVAERenderWalk", "frames", "frames"),
                            ("CVAERenderWalk", "fps", "fps"), ("CVAERenderWalk", "size", "video_size"),
                            ("CVAERestyleFolder", "batch_size", "batch_size"), ("CVAEImageGrid", "nrow", "nrow")]:
        assert spec(node, name)["max"] == RANGES[rng].hi, (node, name)
