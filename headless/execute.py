"""Run a validated API prompt locally, with ComfyUI's execution semantics.

What matches ComfyUI 0.3.64 (``execution.py``):

- only output nodes and what they depend on run, each once, dependencies first;
- every input is a list: a widget value is ``[value]``, a link gives the list the upstream node
  produced for that output. A node runs once per item of its longest input list (shorter lists
  repeat their last item), unless it sets ``INPUT_IS_LIST``, in which case it runs once with the
  lists. Outputs flagged in ``OUTPUT_IS_LIST`` are concatenated over the runs instead of collected;
- hidden inputs: ``PROMPT`` (the prompt), ``EXTRA_PNGINFO`` (``extra_data["extra_pnginfo"]``, the
  UI workflow when there is one), ``UNIQUE_ID`` (the node id), ``DYNPROMPT`` (None here);
- optional inputs that are not given are not passed;
- a node may return a tuple, or ``{"ui": ..., "result": ...}``; ``ui`` parts are merged per key;
- before running, each node's ``IS_CHANGED`` result (constant inputs only) is stored in its prompt
  entry as ``is_changed``, so the prompt saved in images matches ComfyUI's;
- the node methods run under ``torch.inference_mode()``, as in ComfyUI (a node that trains must
  open ``torch.inference_mode(False)`` and ``torch.enable_grad()`` itself);
- the interrupt flag is cleared at the start and checked before every call of a node function and
  at every progress update (``comfy.utils.ProgressBar``).

Not supported: node expansion (``{"expand": ...}``), lazy inputs (all inputs are computed
eagerly, which gives the same result), caching between runs, ``ExecutionBlocker``.
"""
from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ExecutionInterrupted, HeadlessError, NodeExecutionError
from .nodedefs import NodeDef
from .validate import check_prompt, execution_order, is_link, node_title

log = logging.getLogger(__name__)

EventCallback = Callable[[str, dict], None]


@dataclass(frozen=True)
class NodeTiming:
    node_id: str
    class_type: str
    title: str
    seconds: float


@dataclass(frozen=True)
class SavedFile:
    """A file a node reported in its ``ui`` result (``type`` is ``"output"`` or ``"temp"``)."""

    node_id: str
    path: str
    type: str
    subfolder: str
    filename: str


@dataclass
class RunResult:
    order: list[str]                                           # node ids in the order they ran
    timings: list[NodeTiming] = field(default_factory=list)
    ui: dict[str, dict] = field(default_factory=dict)          # node id -> merged ui result
    outputs: dict[str, list[list]] = field(default_factory=dict)  # node id -> per output, the list of values
    files: list[SavedFile] = field(default_factory=list)
    seconds: float = 0.0

    def saved(self, type_: str = "output") -> list[SavedFile]:
        return [f for f in self.files if f.type == type_]


def run_prompt(prompt: Mapping, node_defs: Mapping[str, NodeDef], *, extra_data: Mapping | None = None,
               on_event: EventCallback | None = None, strict: bool = False) -> RunResult:
    """Validate ``prompt`` and run it.

    Args:
        prompt: API format, e.g. from ``ui_to_api``.
        node_defs: definitions with classes, e.g. ``build_registry(packs).node_defs()``.
        extra_data: ComfyUI's extra data; ``{"extra_pnginfo": {"workflow": ui_workflow}}`` makes
            SaveImage store the UI workflow as ComfyUI does.
        on_event: called as ``on_event(name, data)`` with ComfyUI's event names: ``execution_start``,
            ``executing`` (``node``, ``title``, ``class_type``, ``index``, ``total``), ``progress``
            (``node``, ``value``, ``max``), ``executed`` (``node``, ``seconds``, ``ui``),
            ``execution_success``.
        strict: passed to validation.

    Raises:
        WorkflowError: the prompt is invalid (nothing ran).
        NodeExecutionError: a node raised; the original exception is its ``__cause__``.
        ExecutionInterrupted: the interrupt flag was set (e.g. by Ctrl-C).
    """
    validation = check_prompt(prompt, node_defs, strict=strict)
    work = validation.prompt
    order = execution_order(work, node_defs)
    extra = dict(extra_data or {})
    emit = on_event or (lambda name, data: None)

    import torch

    mm = importlib.import_module("comfy.model_management")
    utils = importlib.import_module("comfy.utils")
    folder_paths = importlib.import_module("folder_paths")

    result = RunResult(order=order)
    current: dict[str, str | None] = {"node": None}

    def progress_hook(value, total, preview=None, prompt_id=None, node_id=None):
        mm.throw_exception_if_processing_interrupted()
        emit("progress", {"node": node_id or current["node"], "value": value, "max": total})

    previous_hook = utils.PROGRESS_BAR_HOOK
    utils.set_progress_bar_global_hook(progress_hook)
    mm.interrupt_current_processing(False)
    start = time.perf_counter()
    emit("execution_start", {"nodes": list(order)})
    try:
        with torch.inference_mode():
            _record_is_changed(work, node_defs, extra, mm)
            for index, nid in enumerate(order):
                entry = work[nid]
                d = node_defs[entry["class_type"]]
                title = node_title(work, nid, node_defs)
                current["node"] = nid
                emit("executing", {"node": nid, "title": title, "class_type": d.name,
                                   "index": index, "total": len(order)})
                t0 = time.perf_counter()
                try:
                    mm.throw_exception_if_processing_interrupted()
                    inputs = _input_data(nid, entry, d, result.outputs, work, extra)
                    output, ui = _run_node(d, inputs, mm)
                except mm.InterruptProcessingException:
                    raise ExecutionInterrupted(nid, title) from None
                except HeadlessError:
                    raise
                except Exception as exc:
                    raise NodeExecutionError(nid, title, d.name, exc) from exc
                seconds = time.perf_counter() - t0
                result.outputs[nid] = output
                if ui:
                    result.ui[nid] = ui
                    result.files.extend(_files_in_ui(nid, ui, folder_paths))
                result.timings.append(NodeTiming(nid, d.name, title, seconds))
                emit("executed", {"node": nid, "seconds": seconds, "ui": ui})
    finally:
        current["node"] = None
        utils.set_progress_bar_global_hook(previous_hook)
    result.seconds = time.perf_counter() - start
    emit("execution_success", {"seconds": result.seconds})
    return result


def _input_data(nid: str, entry: Mapping, d: NodeDef, outputs: Mapping[str, list[list]], prompt: Mapping,
                extra: Mapping) -> dict[str, list]:
    """ComfyUI's ``get_input_data``: every input as a list of values."""
    data: dict[str, list] = {}
    for name, value in entry["inputs"].items():
        category, _type, options = d.input_spec(name)
        if category is None:
            continue  # not an input of this node (validation warned)
        if is_link(value) and not options.get("rawLink", False):
            produced = outputs.get(str(value[0]))
            slot = value[1]
            data[name] = produced[slot] if produced is not None and slot < len(produced) else [None]
        else:
            data[name] = [value]
    for name, kind in d.hidden.items():
        if kind == "PROMPT":
            data[name] = [prompt]
        elif kind == "DYNPROMPT":
            data[name] = [None]
        elif kind == "EXTRA_PNGINFO":
            data[name] = [extra.get("extra_pnginfo")]
        elif kind == "UNIQUE_ID":
            data[name] = [nid]
        elif kind == "AUTH_TOKEN_COMFY_ORG":
            data[name] = [extra.get("auth_token_comfy_org")]
        elif kind == "API_KEY_COMFY_ORG":
            data[name] = [extra.get("api_key_comfy_org")]
    return data


def _call(func: Callable, kwargs: dict) -> Any:
    if inspect.iscoroutinefunction(func):
        return asyncio.run(func(**kwargs))
    return func(**kwargs)


def _map_over_list(target: Any, func_name: str, inputs: dict[str, list], input_is_list: bool, mm) -> list:
    """ComfyUI's ``_async_map_node_over_list``: call ``target.<func_name>`` once per list item."""
    func = getattr(target, func_name)
    if input_is_list:
        mm.throw_exception_if_processing_interrupted()
        return [_call(func, inputs)]
    if not inputs:
        mm.throw_exception_if_processing_interrupted()
        return [_call(func, {})]
    returns = []
    for i in range(max(len(v) for v in inputs.values())):
        mm.throw_exception_if_processing_interrupted()
        returns.append(_call(func, {k: v[i if len(v) > i else -1] for k, v in inputs.items()}))
    return returns


def _record_is_changed(prompt: dict, node_defs: Mapping[str, NodeDef], extra: Mapping, mm) -> None:
    """Store each node's ``IS_CHANGED`` result in its prompt entry as ``is_changed``, as ComfyUI does
    before running (it ends up in the saved prompt metadata). Only constant inputs are given; linked
    ones are None. A failure is logged and recorded as NaN, as in ComfyUI."""
    for nid, entry in prompt.items():
        d = node_defs[entry["class_type"]]
        if not hasattr(d.cls, "IS_CHANGED") or "is_changed" in entry:
            continue
        try:
            inputs = _input_data(nid, entry, d, {}, prompt, extra)
            entry["is_changed"] = list(_map_over_list(d.cls, "IS_CHANGED", inputs, d.input_is_list, mm))
        except Exception as exc:
            log.warning("WARNING: %s", exc)
            entry["is_changed"] = float("nan")


def _run_node(d: NodeDef, inputs: dict[str, list], mm) -> tuple[list[list], dict]:
    """ComfyUI's ``_async_map_node_over_list`` + ``get_output_from_returns`` for one node."""
    returns = _map_over_list(d.cls(), d.cls.FUNCTION, inputs, d.input_is_list, mm)

    results, uis = [], []
    for r in returns:
        if isinstance(r, dict):
            if "ui" in r:
                uis.append(r["ui"])
            if "expand" in r:
                raise NotImplementedError(f"{d.name} expands into a subgraph (returns 'expand'), which the "
                                          "headless runner does not support; run it in ComfyUI.")
            if "result" in r:
                results.append(r["result"])
        else:
            results.append(r)

    output: list[list] = []
    if results:
        n = len(d.outputs)
        for r in results:
            if not isinstance(r, (tuple, list)) or len(r) != n:
                got = f"{len(r)} values" if isinstance(r, (tuple, list)) else f"a {type(r).__name__}"
                raise TypeError(f"{d.name}.{d.cls.FUNCTION} returned {got}, but RETURN_TYPES has {n}; "
                                "return a tuple such as (image,).")
        for i in range(n):
            if d.output_is_list[i]:
                merged: list = []
                for r in results:
                    merged.extend(r[i])
                output.append(merged)
            else:
                output.append([r[i] for r in results])
    ui = {k: [y for x in uis for y in x[k]] for k in uis[0]} if uis else {}
    return output, ui


def _files_in_ui(nid: str, ui: Mapping, folder_paths) -> list[SavedFile]:
    files = []
    for items in ui.values():
        for item in items if isinstance(items, list) else []:
            if (isinstance(item, Mapping) and isinstance(item.get("filename"), str)
                    and isinstance(item.get("type"), str)):
                base = folder_paths.get_directory_by_type(item["type"])
                if base is None:
                    continue
                subfolder = item.get("subfolder") or ""
                files.append(SavedFile(nid, os.path.join(base, subfolder, item["filename"]), item["type"],
                                       subfolder, item["filename"]))
    return files
