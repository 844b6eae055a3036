"""Reading workflow files: ComfyUI's UI format (0.4, and schema 1 with links as objects) converted
to the API format the way ComfyUI's frontend does it (graphToPrompt), the API format as it is, and
`--set NODE.INPUT=VALUE` overrides."""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import WorkflowError, WorkflowValidationError
from .spec import VALUE_TYPES, InputSpec, input_specs

MUTED, BYPASSED = 2, 4  # LGraphEventMode.NEVER and BYPASS
# Nodes that exist only in the browser: never sent to the server.
FRONTEND_ONLY = frozenset({"Note", "MarkdownNote", "PrimitiveNode", "Reroute"})


@dataclass
class Workflow:
    """A workflow ready to validate and run: the API prompt plus what the UI file told us."""

    api: dict[str, dict]
    ui: dict | None = None  # the UI-format document (kept for EXTRA_PNGINFO), None for API files
    source: str | None = None
    titles: dict[str, str] = field(default_factory=dict)
    notes: dict[tuple[str, str], str] = field(default_factory=dict)  # (node, input) -> why it has no value
    skipped: dict[str, str] = field(default_factory=dict)  # node id -> why it is not in the prompt
    warnings: list[str] = field(default_factory=list)
    errors: list[WorkflowError] = field(default_factory=list)  # found while converting
    widget_slots: dict[tuple[str, str], int | str] = field(default_factory=dict)  # (node, input) -> widgets_values key

    @property
    def format(self) -> str:
        return "api" if self.ui is None else "ui"

    def title(self, node_id: str) -> str | None:
        if node_id in self.titles:
            return self.titles[node_id]
        node = self.api.get(node_id) or {}
        meta = node.get("_meta") if isinstance(node.get("_meta"), dict) else {}
        return meta.get("title") or node.get("class_type")

    def error(self, kind: str, message: str, node_id: str | None = None, input: str | None = None) -> WorkflowError:
        node = self.api.get(node_id) or {} if node_id is not None else {}
        class_type = node.get("class_type") if isinstance(node, dict) else None
        return WorkflowError(kind, message, node_id, self.title(node_id) if node_id else None, class_type, input)

    def extra_pnginfo(self) -> dict | None:
        """What ComfyUI's frontend sends as extra_data.extra_pnginfo: the UI workflow, if there is one."""
        return None if self.ui is None else {"workflow": self.ui}


def is_link(value: Any) -> bool:
    """ComfyUI's test: a two-item list [node id, output index] is a link, any other value a constant."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) and isinstance(value[1], int)


def read_workflow(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such workflow file")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WorkflowValidationError([WorkflowError("bad_file", f"not a JSON workflow: {err}")], str(path)) from err
    except RecursionError:
        raise WorkflowValidationError([WorkflowError("bad_file", "nested too deeply to be a workflow")], str(path)) from None
    return data


def workflow_format(data: Any) -> str | None:
    """'ui', 'api' or None for something else."""
    if isinstance(data, dict) and isinstance(data.get("nodes"), list):
        return "ui"
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "class_type" in v for v in data.values()):
        return "api"
    return None


def load_workflow(path: str | Path, node_classes: Mapping[str, type],
                  display_names: Mapping[str, str] | None = None) -> Workflow:
    """Read a UI- or API-format file. Problems in the graph are collected in `Workflow.errors` (and
    reported by `validate` with everything else); a file that is not a workflow raises."""
    data = read_workflow(path)
    return workflow_from_data(data, node_classes, display_names, source=str(path))


def workflow_from_data(data: Any, node_classes: Mapping[str, type],
                       display_names: Mapping[str, str] | None = None, source: str | None = None) -> Workflow:
    # The body of POST /prompt wraps the API prompt; accept it as it is.
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and workflow_format(data["prompt"]) == "api":
        data = data["prompt"]
    fmt = workflow_format(data)
    if fmt == "ui":
        return ui_to_api(data, node_classes, display_names, source)
    if fmt == "api":
        return api_workflow(data, source)
    raise WorkflowValidationError([WorkflowError(
        "bad_file", "not a ComfyUI workflow: expected the UI format (a 'nodes' list and 'links') or the API "
                    "format ({node id: {'class_type': ..., 'inputs': {...}}})")], source)


def api_workflow(data: dict, source: str | None = None) -> Workflow:
    api = {}
    wf = Workflow(api=api, source=source)
    for node_id, node in copy.deepcopy(data).items():
        node_id = str(node_id)
        if not isinstance(node.get("class_type"), str) or not isinstance(node.get("inputs", {}), dict):
            wf.errors.append(WorkflowError("invalid_prompt", "needs a 'class_type' string and an 'inputs' object", node_id))
            continue
        inputs = node.setdefault("inputs", {})
        for name, value in inputs.items():
            if is_link(value):  # hand-written files often use numbers for node ids
                inputs[name] = [str(value[0]), value[1]]
        api[node_id] = node
    return wf


# ---------------------------------------------------------------------------------------- UI -> API

@dataclass(frozen=True)
class _Link:
    origin: str
    origin_slot: int
    target: str
    target_slot: int
    type: Any


@dataclass(frozen=True)
class _Slot:
    name: str
    type: Any
    link: int | None


@dataclass(frozen=True)
class _Resolved:
    """Where a UI link ends up: a link to a real node, a constant (from a PrimitiveNode), or nothing."""
    link: tuple[str, int] | None = None
    value: Any = None
    is_value: bool = False
    reason: str | None = None  # when it resolves to nothing


class _BadLink(Exception):
    pass


def _parse_links(ui: dict) -> dict[int, _Link]:
    links = {}
    for item in ui.get("links") or []:
        if item is None:
            continue
        try:
            if isinstance(item, dict):  # schema 1
                link = _Link(str(item["origin_id"]), int(item["origin_slot"]), str(item["target_id"]),
                             int(item["target_slot"]), item.get("type"))
                links[item["id"]] = link
            else:  # 0.4: [id, origin, origin slot, target, target slot, type]
                links[item[0]] = _Link(str(item[1]), int(item[2]), str(item[3]), int(item[4]), item[5] if len(item) > 5 else None)
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise WorkflowValidationError([WorkflowError("bad_file", f"malformed link {item!r}: {err}")]) from err
    return links


def valid_connection(a: Any, b: Any) -> bool:
    """LiteGraph.isValidConnection: '*' and '' match anything, comma lists match on any common type."""
    a = 0 if a in ("", "*") else a
    b = 0 if b in ("", "*") else b
    if not a or not b or a == b:
        return True
    a, b = str(a).lower(), str(b).lower()
    if "," not in a and "," not in b:
        return a == b
    return any(valid_connection(x, y) for x in a.split(",") for y in b.split(","))


class _Converter:
    def __init__(self, ui: dict, node_classes: Mapping[str, type], display_names: Mapping[str, str], source: str | None):
        self.node_classes, self.display_names = node_classes, display_names
        self.wf = Workflow(api={}, ui=copy.deepcopy(ui), source=source)
        self.nodes: dict[str, dict] = {}
        for node in ui.get("nodes") or []:
            node_id = str(node.get("id"))
            if node_id in self.nodes:
                self.wf.errors.append(WorkflowError("bad_file", f"two nodes have the id {node_id}"))
            self.nodes[node_id] = node
        self.links = _parse_links(ui)
        definitions = ui.get("definitions") or {}
        self.subgraphs = {str(s.get("id")) for s in definitions.get("subgraphs") or [] if isinstance(s, dict)}
        self.specs: dict[str, list[InputSpec] | None] = {}

    # -- helpers
    def title(self, node_id: str) -> str:
        node = self.nodes[node_id]
        return node.get("title") or self.display_names.get(node.get("type"), "") or str(node.get("type"))

    def node_specs(self, node: dict) -> list[InputSpec] | None:
        node_type = node.get("type")
        if node_type not in self.specs:
            cls = self.node_classes.get(node_type)
            try:
                self.specs[node_type] = input_specs(cls) if cls is not None else None
            except Exception:  # validate() reports the broken class
                self.specs[node_type] = None
        return self.specs[node_type]

    def slots(self, node: dict) -> list[_Slot]:
        """The node's input sockets in the frontend's order: socket-only inputs, then one socket per
        primitive widget (INPUT_TYPES order); links taken from the file by input name."""
        by_name = {e.get("name"): e for e in node.get("inputs") or []}
        specs = self.node_specs(node)
        if specs is None:
            return [_Slot(e.get("name"), e.get("type"), e.get("link")) for e in node.get("inputs") or []]
        visible = [s for s in specs if s.category != "hidden"]
        ordered = [s for s in visible if not s.is_widget] + [s for s in visible if s.is_widget and s.type_name in VALUE_TYPES]
        return [_Slot(s.name, s.type_name, (by_name.get(s.name) or {}).get("link")) for s in ordered]

    def output_type(self, node: dict, slot: int) -> Any:
        cls = self.node_classes.get(node.get("type"))
        returns = getattr(cls, "RETURN_TYPES", None) if cls is not None else None
        if isinstance(returns, (tuple, list)) and slot < len(returns):
            return "COMBO" if isinstance(returns[slot], (list, tuple)) else returns[slot]
        outputs = node.get("outputs") or []
        return outputs[slot].get("type") if slot < len(outputs) else None

    def describe(self, node_id: str) -> str:
        return f'node {node_id} "{self.title(node_id)}"'

    # -- link resolution, as ExecutableNodeDTO.resolveInput / resolveOutput
    def resolve_link(self, link_id: Any, target_type: Any, visited: set) -> _Resolved:
        link = self.links.get(link_id)
        if link is None:
            raise _BadLink(f"refers to link {link_id}, which is not in the file's links")
        return self.resolve_output(link.origin, link.origin_slot, target_type, visited)

    def resolve_output(self, node_id: str, slot: int, target_type: Any, visited: set) -> _Resolved:
        node = self.nodes.get(node_id)
        if node is None:
            raise _BadLink(f"is linked from node {node_id}, which is not in the file")
        if (node_id, slot) in visited:
            raise _BadLink(f"goes through a circular chain of reroutes or bypassed nodes at {self.describe(node_id)}")
        visited.add((node_id, slot))
        if node.get("mode", 0) == BYPASSED:
            # A bypassed node hands on one of its own inputs: the same slot if the types fit, else the
            # first input of exactly the target type, else the first compatible one.
            slots = self.slots(node)
            out_type = self.output_type(node, slot)
            index = self.bypass_index(slots, slot, out_type, target_type)
            if index < 0:
                return _Resolved(reason=f"its source, {self.describe(node_id)}, is bypassed and has no input of type {target_type} to pass on")
            return self.resolve_slot(node_id, slots[index], slots[index].type, visited)
        node_type = node.get("type")
        if node_type == "PrimitiveNode":
            # The frontend copies the primitive's value into the widget it feeds before queueing.
            values = node.get("widgets_values") or []
            if not values:
                return _Resolved(reason=f"its source, primitive {self.describe(node_id)}, holds no value")
            return _Resolved(value=values[0], is_value=True)
        if node_type == "Reroute":
            slots = [_Slot(e.get("name"), e.get("type"), e.get("link")) for e in node.get("inputs") or []]
            if slot >= len(slots):
                return _Resolved(reason=f"its source, reroute {self.describe(node_id)}, has no input")
            return self.resolve_slot(node_id, slots[slot], target_type, visited)
        if node_type in FRONTEND_ONLY:
            return _Resolved(reason=f"its source, {self.describe(node_id)}, is a {node_type}, which has no outputs")
        return _Resolved(link=(node_id, slot))

    def resolve_slot(self, node_id: str, slot: _Slot, target_type: Any, visited: set) -> _Resolved:
        if slot.link is None:
            return _Resolved(reason=f"its source chain ends at {self.describe(node_id)}, whose input \"{slot.name}\" is not connected")
        return self.resolve_link(slot.link, target_type, visited)

    @staticmethod
    def bypass_index(slots: list[_Slot], slot: int, out_type: Any, target_type: Any) -> int:
        if target_type in ("*", "", None):
            return (slot if len(slots) > slot else 0) if slots else -1
        if slot < len(slots) and valid_connection(slots[slot].type, out_type) and valid_connection(slots[slot].type, target_type):
            return slot
        for i, s in enumerate(slots):
            if s.type == target_type:
                return i
        for i, s in enumerate(slots):
            if valid_connection(s.type, out_type) and valid_connection(s.type, target_type):
                return i
        return -1

    # -- widgets
    def widget_inputs(self, node_id: str, node: dict, specs: list[InputSpec]) -> dict:
        inputs: dict[str, Any] = {}
        widgets = [s for s in specs if s.is_widget]
        values = node.get("widgets_values")
        title = self.title(node_id)
        if isinstance(values, dict):  # some packs save widget values by name
            for spec in widgets:
                if spec.name in values:
                    inputs[spec.name] = values[spec.name]
                    self.wf.widget_slots[(node_id, spec.name)] = spec.name
                else:
                    inputs[spec.name] = spec.default()
            return {k: _wrap(v) for k, v in inputs.items()}
        values = values if isinstance(values, list) else []
        index, missing = 0, []
        for spec in widgets:
            if index < len(values):
                inputs[spec.name] = values[index]
                self.wf.widget_slots[(node_id, spec.name)] = index
            else:
                missing.append(spec.name)
                inputs[spec.name] = spec.default()
            index += 1 + spec.extra_widget_values
        if missing:
            # The frontend leaves widgets past the end of widgets_values at their defaults.
            self.wf.warnings.append(
                f'node {node_id} "{title}": widgets_values has {len(values)} value(s), {node.get("type")} expects {index}; '
                f"{', '.join(missing)} take their defaults")
        elif len(values) < index:
            # Every input has its value; only the control_after_generate value after the last widget
            # (a seed) is absent. The inputs are unaffected, but the file is not what the frontend saves.
            self.wf.warnings.append(
                f'node {node_id} "{title}": widgets_values has {len(values)} value(s), {node.get("type")} expects {index}; '
                f'the control_after_generate value after {widgets[-1].name} is missing (the frontend would use its default)')
        elif len(values) > index:
            self.wf.warnings.append(
                f'node {node_id} "{title}": widgets_values has {len(values)} value(s), {node.get("type")} expects {index}; '
                f"the extra ones are ignored")
        return {k: _wrap(v) for k, v in inputs.items()}

    # -- the conversion
    def convert(self) -> Workflow:
        wf = self.wf
        for node_id, node in self.nodes.items():
            node_type = node.get("type")
            title = self.title(node_id)
            wf.titles[node_id] = title

            def error(kind: str, message: str, input: str | None = None) -> None:
                wf.errors.append(WorkflowError(kind, message, node_id, title, node_type, input))

            if node_type in self.subgraphs:
                error("unsupported", "is a subgraph, which cvae run does not expand; open the workflow in ComfyUI and "
                                     "unpack it (right-click the node > Unpack Subgraph), then save")
                continue
            if isinstance(node_type, str) and node_type.startswith(("workflow>", "workflow/")):
                error("unsupported", "is a group node, which cvae run does not expand; convert it back to nodes in ComfyUI")
                continue
            if node_type in FRONTEND_ONLY:
                wf.skipped[node_id] = f"a {node_type} (frontend only)"
                continue
            mode = node.get("mode", 0)
            if mode == MUTED:
                wf.skipped[node_id] = "muted"
                continue
            if mode == BYPASSED:
                wf.skipped[node_id] = "bypassed"
                continue
            specs = self.node_specs(node)
            by_name = {s.name: s for s in specs} if specs else {}
            inputs = self.widget_inputs(node_id, node, specs) if specs else {}
            for entry in node.get("inputs") or []:
                name, link_id = entry.get("name"), entry.get("link")
                if link_id is None:
                    continue
                spec = by_name.get(name)
                target_type = spec.type_name if spec else entry.get("type")
                try:
                    resolved = self.resolve_link(link_id, target_type, set())
                except _BadLink as err:
                    error("bad_link", str(err), name)
                    continue
                if resolved.link is not None:
                    inputs[name] = list(resolved.link)
                elif resolved.is_value:
                    inputs[name] = _wrap(resolved.value)
                else:
                    # Nothing to pass: like the frontend, a widget keeps its own value, a socket stays empty.
                    wf.notes[(node_id, name)] = resolved.reason or "its link leads nowhere"
            wf.api[node_id] = {"inputs": inputs, "class_type": node_type, "_meta": {"title": title}}
        # The frontend drops inputs linked to nodes it did not send (muted ones).
        for node_id, node in wf.api.items():
            for name, value in list(node["inputs"].items()):
                if is_link(value) and value[0] not in wf.api:
                    del node["inputs"][name]
                    why = wf.skipped.get(value[0], "not sent")
                    wf.notes[(node_id, name)] = f"its source, {self.describe(value[0])}, is {why}"
        return wf


def _wrap(value: Any) -> Any:
    # A list value would read as a link; the frontend wraps it and the server unwraps it.
    return {"__value__": value} if isinstance(value, list) else value


def ui_to_api(ui: dict, node_classes: Mapping[str, type], display_names: Mapping[str, str] | None = None,
              source: str | None = None) -> Workflow:
    """Convert a UI-format workflow as ComfyUI's frontend does when queueing it."""
    return _Converter(ui, node_classes, display_names or {}, source).convert()


# ------------------------------------------------------------------------------------- --set

_OVERRIDE = re.compile(r"\s*([^.=\s]+)\.([^=]+?)\s*=(.*)", re.S)
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def parse_value(spec: InputSpec, text: str) -> Any:
    """A command-line string as a value of the input's type; ValueError says why not."""
    kind = spec.type_name
    if kind == "INT":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
    if kind == "FLOAT":
        try:
            return float(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if kind == "BOOLEAN":
        word = text.strip().lower()
        if word in _TRUE | _FALSE:
            return word in _TRUE
        raise ValueError(f"{text!r} is not a boolean (true/false)")
    if kind == "COMBO":
        choices = spec.choices or []
        if text not in choices:  # combos of numbers: match the choice's spelling
            for choice in choices:
                if str(choice) == text:
                    return choice
        return text
    return text


def apply_overrides(wf: Workflow, overrides: list[str], node_classes: Mapping[str, type]) -> list[WorkflowError]:
    """Apply `NODE.INPUT=VALUE` strings to the prompt (and to the UI document's widget values, so the
    workflow embedded in outputs is the one that ran). Returns the problems; values are range-checked
    later by `validate` like every other value."""
    problems = []
    ui_nodes = {str(n.get("id")): n for n in (wf.ui or {}).get("nodes") or []}
    for text in overrides:
        match = _OVERRIDE.fullmatch(text)
        if not match:
            problems.append(WorkflowError("bad_override", f"--set {text!r}: expected NODE.INPUT=VALUE, e.g. 12.seed=5"))
            continue
        node_id, name, raw = match.groups()
        if node_id not in wf.api:
            if node_id in wf.skipped:
                problems.append(WorkflowError("bad_override", f"--set {text!r}: the node is {wf.skipped[node_id]}, so it does not run",
                                              node_id, wf.titles.get(node_id)))
            else:
                problems.append(WorkflowError("bad_override", f"--set {text!r}: there is no node {node_id} (nodes: {', '.join(sorted(wf.api, key=_id_key))})"))
            continue
        cls = node_classes.get(wf.api[node_id]["class_type"])
        if cls is None:
            continue  # validate() reports the unknown type
        try:
            specs = {s.name: s for s in input_specs(cls) if s.category != "hidden"}
        except Exception:
            continue  # validate() reports the broken class
        spec = specs.get(name)
        if spec is None:
            problems.append(wf.error("bad_override", f"--set {text!r}: no such input (inputs: {', '.join(specs)})", node_id))
            continue
        if spec.type_name not in VALUE_TYPES:
            problems.append(wf.error("bad_override", f"--set {text!r}: this input takes a {spec.type_name} from another node, not a value", node_id, name))
            continue
        try:
            value = parse_value(spec, raw)
        except ValueError as err:
            problems.append(wf.error("bad_override", f"--set {text!r}: {err}", node_id, name))
            continue
        wf.api[node_id]["inputs"][name] = value
        wf.notes.pop((node_id, name), None)
        slot = wf.widget_slots.get((node_id, name))
        if slot is not None and node_id in ui_nodes:
            ui_nodes[node_id]["widgets_values"][slot] = value
    return problems


def _id_key(node_id: str) -> tuple:
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)
