"""Headless runner for ComfyUI workflow files, for any mapping of classic node classes.

    wf = load_workflow("graph.json", NODE_CLASS_MAPPINGS)        # UI (0.4 / 1) or API format
    problems = apply_overrides(wf, ["12.seed=5"], NODE_CLASS_MAPPINGS)
    problems += validate(wf, NODE_CLASS_MAPPINGS)                 # everything, nothing run
    run = execute(wf, NODE_CLASS_MAPPINGS)                        # validates again, then runs
    files = output_files(run, {"output": "output"})

Nothing here imports ComfyUI or this pack's nodes.
"""
from .errors import NodeExecutionError, WorkflowError, WorkflowValidationError
from .execute import RunResult, Step, execute, execution_order, output_files
from .spec import InputSpec, input_specs
from .validate import validate
from .workflow import (Workflow, api_workflow, apply_overrides, load_workflow, read_workflow, ui_to_api,
                       workflow_format, workflow_from_data)

__all__ = [
    "InputSpec", "NodeExecutionError", "RunResult", "Step", "Workflow", "WorkflowError", "WorkflowValidationError",
    "api_workflow", "apply_overrides", "execute", "execution_order", "input_specs", "load_workflow", "output_files",
    "read_workflow", "ui_to_api", "validate", "workflow_format", "workflow_from_data",
]
