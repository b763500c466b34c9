"""Headless runtime for ComfyUI workflows: convert, validate and run them without ComfyUI.

The public API (everything a test or script needs)::

    from headless import build_registry, load_workflow, ui_to_api, validate_prompt, run_prompt

    registry = build_registry(["/path/to/pack"])     # core stubs + the pack's nodes
    defs = registry.node_defs()
    prompt = ui_to_api(load_workflow("example_workflows/x.json").data, defs)
    report = validate_prompt(prompt, defs, strict=True)  # report.problems, report.warnings
    result = run_prompt(prompt, defs)                    # result.files, result.timings

Importing this package does not import torch or ComfyUI; ``build_registry`` and ``run_prompt`` do
(through ``comfy_env.ensure_comfy_interface``).
"""
from .client import ComfyClient, ServerRunResult, handle_ws_message, run_on_server
from .convert import (MAX_LINKS, MAX_NODES, MAX_WORKFLOW_BYTES, Conversion, LoadedWorkflow, convert_workflow,
                      detect_format, load_workflow, to_api_prompt, ui_to_api)
from .errors import (ExecutionInterrupted, HeadlessError, NodeDefinitionError, NodeExecutionError, Problem,
                     ServerError, WorkflowError)
from .execute import NodeTiming, RunResult, SavedFile, run_prompt
from .nodedefs import (NodeDef, NodeRegistry, WidgetSlot, build_registry, core_registry, node_def_from_class,
                       node_def_to_object_info, node_defs_from_object_info, widget_layout)
from .validate import Validation, check_prompt, execution_order, types_compatible, validate_prompt

__all__ = [
    "ComfyClient", "ServerRunResult", "handle_ws_message", "run_on_server",
    "MAX_LINKS", "MAX_NODES", "MAX_WORKFLOW_BYTES", "Conversion", "LoadedWorkflow", "convert_workflow",
    "detect_format", "load_workflow", "to_api_prompt", "ui_to_api",
    "ExecutionInterrupted", "HeadlessError", "NodeDefinitionError", "NodeExecutionError", "Problem",
    "ServerError", "WorkflowError",
    "NodeTiming", "RunResult", "SavedFile", "run_prompt",
    "NodeDef", "NodeRegistry", "build_registry", "core_registry", "node_def_from_class",
    "node_def_to_object_info", "node_defs_from_object_info", "WidgetSlot", "widget_layout",
    "Validation", "check_prompt", "execution_order", "types_compatible", "validate_prompt",
]
