"""Typed errors of the headless runner. Each message names the node (id and title) and the fix."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow, tied to a node where there is one.

    ``kind`` is a stable identifier (the names follow ComfyUI's own validation error types where
    one exists: ``required_input_missing``, ``return_type_mismatch``, ``value_not_in_list`` ...).
    """

    kind: str                      # stable identifier, e.g. "required_input_missing"
    message: str                   # one sentence, no node prefix
    node_id: str | None = None     # the node's id in the workflow, None for workflow-wide problems
    title: str | None = None       # the node's title as the user sees it
    class_type: str | None = None  # the node's type id

    def where(self) -> str:
        if self.node_id is None:
            return "workflow"
        label = self.title or self.class_type
        return f"node {self.node_id} ({label})" if label else f"node {self.node_id}"

    def __str__(self) -> str:
        return f"{self.where()}: {self.message}"


class HeadlessError(Exception):
    """Base class of every error the headless runner raises on purpose."""


class WorkflowError(HeadlessError):
    """The workflow cannot be run as it is; ``problems`` lists every reason found."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid workflow")


class NodeDefinitionError(HeadlessError):
    """A node class does not follow ComfyUI's node interface (bad INPUT_TYPES, RETURN_TYPES ...)."""


class NodeExecutionError(HeadlessError):
    """A node raised while running. ``__cause__`` is the original exception."""

    def __init__(self, node_id: str, title: str, class_type: str, error: BaseException):
        self.node_id, self.title, self.class_type, self.error = node_id, title, class_type, error
        detail = str(error) or type(error).__name__
        super().__init__(f"node {node_id} ({title}) failed: {type(error).__name__}: {detail}")


class ExecutionInterrupted(HeadlessError):
    """The run was stopped on request (Ctrl-C, or ``interrupt_current_processing``)."""

    def __init__(self, node_id: str | None = None, title: str | None = None):
        self.node_id, self.title = node_id, title
        where = f" at node {node_id} ({title})" if node_id is not None else ""
        super().__init__(f"interrupted{where}")


class ServerError(HeadlessError):
    """Talking to a ComfyUI server failed (unreachable, unexpected answer, or a failed run there)."""
