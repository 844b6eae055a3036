"""Running a validated workflow: only what the output nodes need, each node once, in a topological
order, with ComfyUI's list semantics and hidden inputs, under torch.inference_mode() as in ComfyUI."""
from __future__ import annotations

import contextlib
import heapq
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

from .errors import NodeExecutionError, WorkflowValidationError
from .lists import map_over_lists, merge_results, merge_ui, split_returns
from .spec import input_specs
from .validate import as_workflow, needed_nodes, output_targets, validate
from .workflow import Workflow, _id_key, is_link

_KEEP = object()


class Step(NamedTuple):
    index: int  # 1-based
    total: int
    node_id: str
    title: str | None
    class_type: str
    seconds: float | None  # None when the node starts


@dataclass
class RunResult:
    ui: dict[str, dict] = field(default_factory=dict)  # node id -> its merged 'ui' dict
    executed: list[str] = field(default_factory=list)  # node ids in the order they ran
    seconds: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, list[list]] = field(default_factory=dict)  # the target nodes' outputs, one list per slot


def execution_order(api: dict, needed: set[str], node_classes: Mapping[str, type]) -> list[str]:
    """Kahn's algorithm; among ready nodes output nodes first (as ComfyUI's ux_friendly_pick_node,
    so files appear early), then by id, so the order is the same on every run."""
    waiting = {nid: {str(v[0]) for v in api[nid]["inputs"].values() if is_link(v)} & needed for nid in needed}
    users: dict[str, set[str]] = {nid: set() for nid in needed}
    for nid, sources in waiting.items():
        for src in sources:
            users[src].add(nid)

    def key(nid: str) -> tuple:
        is_output = getattr(node_classes.get(api[nid]["class_type"]), "OUTPUT_NODE", False) is True
        return (not is_output, _id_key(nid))

    ready = [(key(n), n) for n, s in waiting.items() if not s]
    heapq.heapify(ready)
    order = []
    while ready:
        _, nid = heapq.heappop(ready)
        order.append(nid)
        for user in users[nid]:
            waiting[user].discard(nid)
            if not waiting[user]:
                heapq.heappush(ready, (key(user), user))
    if len(order) != len(needed):  # validate() reports cycles first; this guards direct callers
        raise RuntimeError("the workflow has a dependency cycle")
    return order


def _inference_mode() -> contextlib.AbstractContextManager:
    try:
        import torch
    except ImportError:
        return contextlib.nullcontext()
    return torch.inference_mode()


def execute(workflow: Workflow | dict, node_classes: Mapping[str, type], outputs: list[str] | None = None,
            progress: Callable[[str, Step], None] | None = None, extra_pnginfo: Any = _KEEP) -> RunResult:
    """Validate, then run the nodes that `outputs` (default: every OUTPUT_NODE) need.

    Hidden inputs: PROMPT = the API prompt, EXTRA_PNGINFO = {"workflow": the UI document} for a
    UI-format file (None for an API-format one, as when ComfyUI gets a bare API prompt), UNIQUE_ID =
    the node id. `progress(event, step)` is called with "start" and "done" for every node.
    Raises WorkflowValidationError before running anything, NodeExecutionError when a node fails."""
    wf = as_workflow(workflow, node_classes)
    errors = validate(wf, node_classes, outputs)
    if errors:
        raise WorkflowValidationError(errors, wf.source)
    api = wf.api
    pnginfo = wf.extra_pnginfo() if extra_pnginfo is _KEEP else extra_pnginfo
    targets = set(output_targets(wf, node_classes, outputs))
    needed = needed_nodes(api, list(targets))
    order = execution_order(api, needed, node_classes)
    # Free a node's outputs once its last user has run: a long render should not keep every
    # intermediate batch alive.
    uses: dict[str, int] = {nid: 0 for nid in needed}
    for nid in needed:
        for value in api[nid]["inputs"].values():
            if is_link(value):
                uses[str(value[0])] += 1
    results: dict[str, list[list]] = {}
    run = RunResult()
    with _inference_mode():
        for index, nid in enumerate(order, 1):
            class_type = api[nid]["class_type"]
            cls = node_classes[class_type]
            step = Step(index, len(order), nid, wf.title(nid), class_type, None)
            if progress:
                progress("start", step)
            started = time.perf_counter()
            try:
                data = _node_inputs(wf, nid, cls, results, pnginfo)
                returns = map_over_lists(cls(), data, cls.FUNCTION)
                values, uis = split_returns(returns, cls)
                output, ui = merge_results(values, cls), merge_ui(uis)
            except Exception as err:
                raise NodeExecutionError(nid, wf.title(nid), class_type, err) from err
            results[nid] = output
            if ui:
                run.ui[nid] = ui
            seconds = time.perf_counter() - started
            run.executed.append(nid)
            run.seconds[nid] = seconds
            for value in api[nid]["inputs"].values():
                if is_link(value):
                    src = str(value[0])
                    uses[src] -= 1
                    if uses[src] == 0 and src not in targets:
                        del results[src]
            if progress:
                progress("done", step._replace(seconds=seconds))
    run.outputs = {nid: results[nid] for nid in targets if nid in results}
    return run


def _node_inputs(wf: Workflow, nid: str, cls: type, results: dict, pnginfo: Any) -> dict[str, list]:
    """ComfyUI's get_input_data: a list per input (a link gives the source's whole output list)."""
    inputs = wf.api[nid]["inputs"]
    data: dict[str, list] = {}
    for spec in input_specs(cls):
        if spec.category == "hidden":
            hidden = {"PROMPT": wf.api, "EXTRA_PNGINFO": pnginfo, "UNIQUE_ID": nid}
            data[spec.name] = [hidden.get(spec.type)]
            continue
        if spec.name not in inputs:
            continue
        value = inputs[spec.name]
        if is_link(value):
            src, slot = str(value[0]), value[1]
            produced = results[src]
            if slot >= len(produced):
                raise ValueError(f'input "{spec.name}": node {src} "{wf.title(src)}" returned no value for output {slot} '
                                 "(its function returned no 'result')")
            data[spec.name] = produced[slot]
        else:
            data[spec.name] = [value]
    return data


def output_files(run: RunResult, directories: Mapping[str, str | Path]) -> list[Path]:
    """Absolute paths of the files the nodes reported in their 'ui' dicts: entries with
    filename/subfolder/type (type names a key of `directories`, e.g. output, temp) and plain paths
    listed under 'files' or 'videos'. In the order reported, each once."""
    output_dir = Path(directories.get("output", "."))
    paths: list[Path] = []
    for ui in run.ui.values():
        for key, items in ui.items():
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("filename"), str):
                    base = Path(directories.get(item.get("type") or "output", output_dir))
                    path = base / (item.get("subfolder") or "") / item["filename"]
                elif isinstance(item, (str, os.PathLike)) and key in ("files", "videos"):
                    path = Path(item) if Path(item).is_absolute() else output_dir / item
                else:
                    continue
                path = path.resolve()
                if path not in paths:
                    paths.append(path)
    return paths
