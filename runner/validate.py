"""Validation before anything runs, following ComfyUI's validate_prompt / validate_inputs: unknown
node types anywhere; then, for every node an output needs: required inputs, links (to an existing
node, a real output, of the same type), value types, min/max, combo lists, VALIDATE_INPUTS; and
cycles. All problems are collected, each naming its node and input."""
from __future__ import annotations

import difflib
import inspect
import math
from typing import Any, Mapping

from .errors import WorkflowError
from .lists import map_over_lists
from .spec import InputSpec, class_problems, input_specs
from .workflow import FRONTEND_ONLY, Workflow, _id_key, is_link, workflow_from_data


def as_workflow(workflow: Workflow | dict, node_classes: Mapping[str, type]) -> Workflow:
    return workflow if isinstance(workflow, Workflow) else workflow_from_data(workflow, node_classes)


def type_matches(received: Any, expected: Any) -> bool:
    """ComfyUI's validate_node_input: equal (a type may define __ne__ to act as a wildcard), or two
    comma-separated type lists with a type in common."""
    if not received != expected:
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in expected.split(",")})


def convert_value(spec: InputSpec, value: Any) -> Any:
    """The value as the input's type, as ComfyUI converts it, but refusing conversions that hide a
    mistake (ComfyUI turns 2.7 into 2 for an INT and the string "false" into True for a BOOLEAN)."""
    kind = spec.type_name
    if kind not in ("INT", "FLOAT", "STRING", "BOOLEAN"):
        return value
    if value is None:
        raise ValueError("has no value (null)")
    if kind == "INT":
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is a boolean, not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ValueError(f"{value!r} is not an integer")
    if kind == "FLOAT":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a number") from None
        else:
            raise ValueError(f"{value!r} is not a number")
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not a finite number")
        return number
    if kind == "STRING":
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"{value!r} is not a string")
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{value!r} is not a boolean (true or false)")


def _type_text(kind: Any) -> str:
    return "a list of choices" if isinstance(kind, (list, tuple)) else str(kind)


def _choices_text(choices: list) -> str:
    if len(choices) > 20:
        return f"a list of {len(choices)} choices"
    return ", ".join(repr(c) for c in choices)


def _unknown_type(class_type: Any, node_classes: Mapping[str, type]) -> str:
    text = f"unknown node type {class_type!r}"
    if class_type in FRONTEND_ONLY:
        return text + " (a frontend-only node, which belongs in a UI-format file, not an API-format one)"
    close = difflib.get_close_matches(str(class_type), list(node_classes), n=3)
    if close:
        return text + f"; did you mean {', '.join(close)}?"
    return text + " (cvae run knows only this pack's nodes; is it from another node pack?)"


def output_targets(wf: Workflow, node_classes: Mapping[str, type], outputs: list[str] | None) -> list[str]:
    if outputs:
        return [str(o) for o in outputs if str(o) in wf.api]
    return [nid for nid, node in wf.api.items()
            if getattr(node_classes.get(node.get("class_type")), "OUTPUT_NODE", False) is True]


def needed_nodes(api: dict, targets: list[str]) -> set[str]:
    """The targets and everything they link from."""
    needed, stack = set(), list(targets)
    while stack:
        nid = stack.pop()
        if nid in needed or nid not in api:
            continue
        needed.add(nid)
        stack.extend(str(v[0]) for v in api[nid].get("inputs", {}).values() if is_link(v))
    return needed


def _cycles(api: dict, needed: set[str]) -> list[list[tuple[str, str]]]:
    """Each cycle as [(node, input that links to the next node), ...] (Tarjan's strongly connected
    components, then one loop through each)."""
    edges = {nid: [(name, str(v[0])) for name, v in api[nid].get("inputs", {}).items()
                   if is_link(v) and str(v[0]) in needed] for nid in needed}
    index, low, on_stack, stack, components, counter = {}, {}, set(), [], [], [0]

    def strongconnect(root: str) -> None:  # iterative, so long chains do not hit the recursion limit
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for _, child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)

    for nid in sorted(needed, key=_id_key):
        if nid not in index:
            strongconnect(nid)
    cycles = []
    for component in components:
        members = set(component)
        if len(component) == 1 and not any(src == component[0] for _, src in edges[component[0]]):
            continue
        start = min(component, key=_id_key)
        path, node, seen = [], start, set()
        while node not in seen:  # walk inside the component until a node repeats
            seen.add(node)
            name, nxt = next((n, s) for n, s in edges[node] if s in members)
            path.append((node, name))
            node = nxt
        cut = [n for n, _ in path].index(node)
        cycles.append(path[cut:])
    return cycles


def validate(workflow: Workflow | dict, node_classes: Mapping[str, type], outputs: list[str] | None = None) -> list[WorkflowError]:
    """Every problem that would stop the workflow, found without running any node function
    (VALIDATE_INPUTS classmethods excepted). An empty list means it may run."""
    wf = as_workflow(workflow, node_classes)
    api = wf.api
    errors = list(wf.errors)
    classes: dict[str, type] = {}
    problems_by_class: dict[type, list[str]] = {}
    for nid, node in api.items():
        cls = node_classes.get(node.get("class_type"))
        if cls is None:
            errors.append(wf.error("unknown_node_type", _unknown_type(node.get("class_type"), node_classes), nid))
            continue
        if cls not in problems_by_class:
            problems_by_class[cls] = class_problems(cls)
        if problems_by_class[cls]:
            errors.append(wf.error("bad_node_class", "the node class is broken: " + "; ".join(problems_by_class[cls]), nid))
            continue
        classes[nid] = cls

    for requested in outputs or []:
        if str(requested) not in api:
            why = wf.skipped.get(str(requested))
            errors.append(WorkflowError("bad_output", f"cannot run node {requested}: " + (f"it is {why}" if why else "there is no such node")))
    targets = output_targets(wf, node_classes, outputs)
    if not targets and not outputs and len(classes) == len(api):
        errors.append(WorkflowError("prompt_no_outputs", "the workflow has no output node (OUTPUT_NODE = True), so nothing would run"))
    needed = needed_nodes(api, targets)
    for nid in sorted(needed, key=_id_key):
        if nid in classes:
            errors.extend(_check_node(wf, nid, classes[nid], classes))
    for cycle in _cycles(api, needed):
        loop = " -> ".join(f'{n} "{wf.title(n)}"' for n, _ in cycle) + f" -> {cycle[0][0]}"
        node_id, name = cycle[0]
        errors.append(wf.error("dependency_cycle", f"is part of a cycle, each node waiting for the next: {loop}", node_id, name))
    return errors


def _check_node(wf: Workflow, nid: str, cls: type, classes: dict[str, type]) -> list[WorkflowError]:
    api = wf.api
    inputs = api[nid].setdefault("inputs", {})
    errors: list[WorkflowError] = []
    validate_fn = getattr(cls, "VALIDATE_INPUTS", None)
    validate_args, validate_kwargs = [], False
    if validate_fn is not None:
        spec = inspect.getfullargspec(validate_fn)
        validate_args, validate_kwargs = spec.args, spec.varkw is not None
    received_types: dict[str, Any] = {}
    specs = input_specs(cls)

    def error(kind: str, message: str, name: str | None) -> None:
        errors.append(wf.error(kind, message, nid, name))

    for spec in specs:
        name = spec.name
        if spec.category == "hidden":
            continue
        if name not in inputs:
            if spec.category == "required":
                note = wf.notes.get((nid, name))
                error("required_input_missing", "required input is missing" + (f": {note}" if note else ""), name)
            continue
        value = inputs[name]
        if isinstance(value, list):
            if not is_link(value):
                error("bad_linked_input", f"a link must be [node id, output index], got {value!r}", name)
                continue
            source, slot = str(value[0]), value[1]
            if source not in api:
                why = wf.skipped.get(source)
                error("missing_node", f"is linked to node {source}, " + (f"which is {why}" if why else "which is not in the workflow"), name)
                continue
            if source not in classes:
                continue  # the source's own error says why
            returns = classes[source].RETURN_TYPES
            source_text = f'node {source} "{wf.title(source)}" ({api[source]["class_type"]})'
            if not 0 <= slot < len(returns):
                error("bad_output_index", f"is linked to output {slot} of {source_text}, which has {len(returns)} output(s)", name)
                continue
            received_types[name] = returns[slot]
            if "input_types" not in validate_args and not type_matches(returns[slot], spec.type):
                error("return_type_mismatch", f"is linked to output {slot} of {source_text}, which gives "
                                              f"{_type_text(returns[slot])}; this input takes {_type_text(spec.type)}", name)
            continue
        if isinstance(value, dict) and "__value__" in value:
            value = inputs[name] = value["__value__"]
        try:
            value = inputs[name] = convert_value(spec, value)
        except ValueError as err:
            error("invalid_input_type", f"wrong value type for {spec.type_name}: {err}", name)
            continue
        if name in validate_args or validate_kwargs:
            continue  # ComfyUI leaves range and list checks to the node's VALIDATE_INPUTS
        options = spec.options
        try:
            if "min" in options and value < options["min"]:
                error("value_smaller_than_min", f"value {value!r} is below the minimum {options['min']!r}", name)
                continue
            if "max" in options and value > options["max"]:
                error("value_bigger_than_max", f"value {value!r} is above the maximum {options['max']!r}", name)
                continue
        except TypeError:
            error("invalid_input_type", f"value {value!r} cannot be compared with the input's min/max", name)
            continue
        choices = spec.choices
        if choices is not None and value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            error("value_not_in_list", f"{value!r} is not one of {_choices_text(choices)}{hint}", name)

    if validate_fn is not None and (validate_args or validate_kwargs) and not errors:
        errors.extend(_custom_validation(wf, nid, cls, specs, validate_args, validate_kwargs, received_types))
    return errors


def _custom_validation(wf: Workflow, nid: str, cls: type, specs: list[InputSpec], args: list[str], kwargs: bool,
                       received_types: dict) -> list[WorkflowError]:
    """VALIDATE_INPUTS as ComfyUI calls it: on the class, with only the inputs it names (all of them
    given **kwargs), linked inputs as None (not computed yet), hidden inputs without a prompt."""
    inputs = wf.api[nid]["inputs"]
    data: dict[str, list] = {}
    for spec in specs:
        if spec.category == "hidden":
            hidden = {"UNIQUE_ID": nid, "PROMPT": {}}.get(spec.type)
            data[spec.name] = [hidden]
        elif spec.name in inputs:
            value = inputs[spec.name]
            data[spec.name] = [None] if is_link(value) else [value]
    data = {k: v for k, v in data.items() if k in args or kwargs}
    if "input_types" in args:
        data["input_types"] = [received_types]
    try:
        verdicts = map_over_lists(cls, data, "VALIDATE_INPUTS")
    except Exception as err:  # a node's own check must not take the whole validation down
        return [wf.error("custom_validation_failed", f"VALIDATE_INPUTS raised {type(err).__name__}: {err}", nid)]
    return [wf.error("custom_validation_failed", "VALIDATE_INPUTS returned False" if v is False else str(v), nid)
            for v in verdicts if v is not True]
