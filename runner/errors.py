"""Errors of the workflow runner. Every problem names the node (id, title, class) and the input."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkflowError:
    """One problem in a workflow. `kind` follows ComfyUI's error types where one exists
    (required_input_missing, return_type_mismatch, value_not_in_list, ...)."""

    kind: str
    message: str
    node_id: str | None = None
    title: str | None = None
    class_type: str | None = None
    input: str | None = None

    def where(self) -> str:
        if self.node_id is None:
            return "workflow"
        text = f"node {self.node_id}"
        if self.title and self.title != self.class_type:
            text += f' "{self.title}"'
        if self.class_type:
            text += f" ({self.class_type})"
        if self.input is not None:
            text += f', input "{self.input}"'
        return text

    def __str__(self) -> str:
        return f"{self.where()}: {self.message}"


class WorkflowValidationError(ValueError):
    """Raised with every problem found, before anything runs."""

    def __init__(self, errors: list[WorkflowError], source: str | None = None):
        self.errors = list(errors)
        self.source = source
        head = f"{len(self.errors)} problem(s) in {source or 'the workflow'}, nothing was run:"
        super().__init__("\n".join([head] + [f"  - {e}" for e in self.errors]))


class NodeExecutionError(RuntimeError):
    """A node raised while running; `__cause__` is the original exception."""

    def __init__(self, node_id: str, title: str | None, class_type: str, error: BaseException):
        self.node_id, self.title, self.class_type, self.error = node_id, title, class_type, error
        where = WorkflowError("", "", node_id, title, class_type).where()
        super().__init__(f"{where} failed: {type(error).__name__}: {error}")
