"""`cvae run`: run a ComfyUI workflow file (UI or API format) headless with this pack's nodes."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workflow", help="a ComfyUI workflow .json: the UI format ComfyUI saves, or the API format")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="change an input value before running, e.g. --set 12.seed=5 (repeat for more)")
    p.add_argument("--output-dir", default="output", help="folder the output nodes write into (default: ./output)")
    p.add_argument("--node", dest="nodes", action="append", metavar="ID",
                   help="run only this node and what it needs (repeat for more; default: every output node)")
    p.add_argument("--check", action="store_true", help="validate the workflow and stop without running it")
    p.add_argument("--print-api", action="store_true", help="print the workflow in ComfyUI's API format and stop")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.add_argument("--traceback", action="store_true", help="print the full traceback when a node fails")


def _directories(output_dir: Path) -> dict[str, Path]:
    """Point the node pack at the output folder; returns the folders output entries may name."""
    from ..nodes import comfy

    comfy.set_output_directory(output_dir)
    return {"output": output_dir, "temp": comfy.temp_directory(), "input": comfy.input_directory()}


def _progress(event: str, step) -> None:
    if event == "start":
        title = f' "{step.title}"' if step.title and step.title != step.class_type else ""
        print(f"[{step.index}/{step.total}] node {step.node_id}{title} ({step.class_type})", file=sys.stderr, flush=True)
    elif step.seconds >= 1.0:  # a line for the slow ones only; fast nodes would just double the output
        print(f"[{step.index}/{step.total}] node {step.node_id} done in {step.seconds:.1f} s", file=sys.stderr, flush=True)


def _run_run(a: argparse.Namespace) -> int:
    import traceback

    from ..nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    from ..runner import (NodeExecutionError, WorkflowValidationError, apply_overrides, execute, load_workflow,
                          output_files, validate)

    classes = NODE_CLASS_MAPPINGS
    # Folders first: validation lists models, and a model saved by an earlier run into this
    # output folder must be among them.
    output_dir = Path(a.output_dir).resolve()
    folders = _directories(output_dir)
    wf = load_workflow(a.workflow, classes, NODE_DISPLAY_NAME_MAPPINGS)
    for warning in wf.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    problems = apply_overrides(wf, a.overrides, classes) + validate(wf, classes, a.nodes)
    if problems:
        print(f"cvae run: {WorkflowValidationError(problems, a.workflow)}", file=sys.stderr)
        return 2
    if a.print_api:
        print(json.dumps(wf.api, indent=2, default=str))
        return 0
    if a.check:
        print(f"{a.workflow}: valid ({wf.format} format, {len(wf.api)} node(s))")
        return 0
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        run = execute(wf, classes, a.nodes, progress=None if a.quiet else _progress)
    except NodeExecutionError as err:
        if a.traceback:
            traceback.print_exception(err.error)
        print(f"cvae run: error: {err}" + ("" if a.traceback else " (--traceback shows where)"), file=sys.stderr)
        return 1
    files = output_files(run, folders)
    for path in files:
        print(path)
    missing = [p for p in files if not p.exists()]
    for path in missing:
        print(f"warning: a node reported {path}, which does not exist", file=sys.stderr)
    if not a.quiet:
        print(f"ran {len(run.executed)} node(s) in {time.perf_counter() - started:.1f} s, "
              f"{len(files) - len(missing)} file(s) written", file=sys.stderr)
    return 0


COMMANDS = {"run": (_run_args, _run_run)}
