"""Validate an API prompt against node definitions, and order it for execution.

The checks are ComfyUI's own (``execution.validate_prompt`` / ``validate_inputs`` in ComfyUI 0.3.64):
unknown node type, missing required input, malformed link, link to a missing node or output slot,
output/input type mismatch (ComfyUI's comma-separated type matching), a value that cannot be
converted to INT/FLOAT/STRING/BOOLEAN, a value out of an INT/FLOAT ``min``/``max``, a COMBO value
not in its list, and the node's own ``VALIDATE_INPUTS`` (which, as in ComfyUI, replaces the
built-in value checks of the inputs it names). Added here: dependency cycles, absurdly large
graphs, non-finite FLOAT values (NaN passes every min/max comparison), and inputs the node does not
declare (a warning).

ComfyUI validates only the nodes that feed an output node; problems in the other nodes are
warnings here unless ``strict=True`` (use it for workflows you ship).
"""
from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .convert import MAX_LINKS, MAX_NODES
from .errors import Problem, WorkflowError
from .nodedefs import NodeDef


@dataclass
class Validation:
    """Outcome of ``validate_prompt``."""

    prompt: dict                                           # copy with values converted as ComfyUI does
    outputs: list[str] = field(default_factory=list)       # ids of the output nodes
    needed: set[str] = field(default_factory=set)          # output nodes and everything they depend on
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def types_compatible(received: Any, expected: Any) -> bool:
    """ComfyUI's ``validate_node_input``: equal types, or comma-separated type lists that overlap.

    Equality uses ``!=`` so that a custom type class overriding ``__ne__`` (the "any type" trick
    some packs use) keeps working.
    """
    if not received != expected:
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in expected.split(",")})


def is_link(value: Any) -> bool:
    """An API input value that is a link: ``[origin_id, output_slot]``."""
    return isinstance(value, list)


def node_links(entry: Mapping) -> Iterator[tuple[str, str, Any]]:
    """``(input_name, origin_id, slot)`` for every well-formed link input of a prompt entry."""
    inputs = entry.get("inputs")
    for name, value in (inputs.items() if isinstance(inputs, Mapping) else ()):
        if (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
                and not isinstance(value[0], bool)):
            yield name, str(value[0]), value[1]


def node_title(prompt: Mapping, node_id: str, node_defs: Mapping[str, NodeDef]) -> str:
    """The title a user sees for a node: its ``_meta.title``, else its type's display name."""
    entry = prompt.get(node_id) or {}
    meta = entry.get("_meta") if isinstance(entry, Mapping) else None
    title = meta.get("title") if isinstance(meta, Mapping) else None
    if title:
        return str(title)
    class_type = entry.get("class_type") if isinstance(entry, Mapping) else None
    d = node_defs.get(class_type) if isinstance(class_type, str) else None
    return d.display_name if d else str(class_type)


def _combo_text(options: list) -> str:
    return f"(a list of {len(options)} values)" if len(options) > 20 else json.dumps(options, default=str)


_CONVERTERS = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


def validate_prompt(prompt: Mapping, node_defs: Mapping[str, NodeDef], *, check_values: bool = True,
                    strict: bool = False) -> Validation:
    """Check an API prompt; collect every problem instead of stopping at the first.

    Args:
        prompt: API format, ``{node_id: {"class_type": str, "inputs": {...}}}``.
        node_defs: definitions by type id. ``VALIDATE_INPUTS`` runs only for definitions with a class.
        check_values: also check ranges, COMBO lists and ``VALIDATE_INPUTS``. Off when a server will
            check values against its own files (``--server``).
        strict: report problems in nodes that feed no output as problems, not warnings.

    Returns:
        A ``Validation``; ``problems`` empty means the prompt can run.
    """
    result = Validation(prompt={})
    if not isinstance(prompt, Mapping) or not prompt:
        result.problems.append(Problem("invalid_workflow", "the prompt is empty or not an object."))
        return result
    if len(prompt) > MAX_NODES:
        result.problems.append(Problem("graph_too_large",
                                       f"the workflow has {len(prompt)} nodes; at most {MAX_NODES} are accepted."))
        return result
    n_links = sum(1 for e in prompt.values() if isinstance(e, Mapping) and isinstance(e.get("inputs"), Mapping)
                  for v in e["inputs"].values() if isinstance(v, list))
    if n_links > MAX_LINKS:
        result.problems.append(Problem("graph_too_large",
                                       f"the workflow has {n_links} links; at most {MAX_LINKS} are accepted."))
        return result

    work: dict[str, dict] = {}
    per_node: dict[str, list[Problem]] = {}

    def add(nid: str | None, kind: str, message: str) -> None:
        if nid is None:
            result.problems.append(Problem(kind, message))
            return
        entry = work.get(nid) or prompt.get(nid) or {}
        class_type = entry.get("class_type") if isinstance(entry, Mapping) else None
        per_node.setdefault(nid, []).append(Problem(kind, message, nid, node_title(prompt, nid, node_defs),
                                                    class_type if isinstance(class_type, str) else None))

    # Shape and node types.
    for raw_id, entry in prompt.items():
        nid = str(raw_id)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("class_type"), str):
            add(nid, "invalid_workflow", "has no 'class_type'.")
            continue
        inputs = entry.get("inputs", {})
        if not isinstance(inputs, Mapping):
            add(nid, "invalid_workflow", "'inputs' must be an object.")
            continue
        work[nid] = {**entry, "inputs": dict(inputs)}
        if entry["class_type"] not in node_defs:
            add(nid, "unknown_node_type", f"node type {entry['class_type']!r} is not installed; load the pack "
                "that provides it (--pack DIR) or remove the node.")

    outputs = [nid for nid, e in work.items()
               if e["class_type"] in node_defs and node_defs[e["class_type"]].output_node]
    if not outputs and not any(p.kind == "unknown_node_type" for ps in per_node.values() for p in ps):
        add(None, "prompt_no_outputs", "the workflow has no output node (such as Save Image), so nothing "
            "would run; add one.")

    # Everything the outputs depend on (links to missing nodes are reported below).
    needed: set[str] = set()
    stack = list(outputs)
    while stack:
        nid = stack.pop()
        if nid in needed:
            continue
        needed.add(nid)
        stack.extend(origin for _n, origin, _s in node_links(work[nid]) if origin in work)

    for nid, entry in work.items():
        d = node_defs.get(entry["class_type"])
        if d is not None:
            _validate_node(nid, entry, d, work, node_defs, check_values, lambda k, m, nid=nid: add(nid, k, m), result)

    for cycle in _cycles(work):
        add(cycle[0], "cycle", "is part of a dependency cycle " + " -> ".join(cycle + [cycle[0]])
            + " (each node takes an input from the next); ComfyUI cannot run a loop, remove one of its links.")

    for nid in sorted(per_node, key=_sort_key):
        if nid in needed or strict or nid not in work or per_node[nid][0].kind == "unknown_node_type":
            result.problems.extend(per_node[nid])
        else:
            result.warnings.extend(Problem(p.kind, p.message + " (this node feeds no output, so it would not run)",
                                           p.node_id, p.title, p.class_type) for p in per_node[nid])
    result.prompt, result.outputs, result.needed = work, sorted(outputs, key=_sort_key), needed
    return result


def _validate_node(nid: str, entry: dict, d: NodeDef, work: Mapping[str, dict], node_defs: Mapping[str, NodeDef],
                   check_values: bool, add, result: Validation) -> None:
    inputs = entry["inputs"]
    validate_args = d.validate_args or frozenset()
    received_types: dict[str, Any] = {}
    for name in inputs:
        if d.input_spec(name)[0] is None:
            result.warnings.append(Problem("unknown_input",
                                           f"input {name!r} is not an input of {d.name}; it is ignored.",
                                           nid, node_title(work, nid, node_defs), d.name))
    for name in list(d.required) + list(d.optional):
        category, input_type, options = d.input_spec(name)
        if name not in inputs:
            if category == "required":
                add("required_input_missing", f"required input {name!r} is missing; connect it or set its value.")
            continue
        value = inputs[name]
        if is_link(value):
            if len(value) != 2 or not isinstance(value[0], (str, int)) or isinstance(value[0], bool) \
                    or not isinstance(value[1], int) or isinstance(value[1], bool):
                add("bad_linked_input", f"input {name!r} is a malformed link {json.dumps(value, default=str)[:60]}; "
                    "a link is [node_id, output_index].")
                continue
            origin, slot = str(value[0]), value[1]
            origin_entry = work.get(origin)
            if origin_entry is None:
                add("link_to_missing_node", f"input {name!r} is linked to node {origin}, which is not in the workflow.")
                continue
            origin_def = node_defs.get(origin_entry["class_type"])
            if origin_def is None:
                continue  # reported as an unknown node type
            origin_label = f"node {origin} ({node_title(work, origin, node_defs)})"
            if not 0 <= slot < len(origin_def.outputs):
                add("link_to_missing_output", f"input {name!r} is linked to output {slot} of {origin_label}, "
                    f"which has {len(origin_def.outputs)} output(s).")
                continue
            received = origin_def.outputs[slot]
            received_types[name] = received
            if "input_types" not in validate_args and not types_compatible(received, input_type):
                add("return_type_mismatch", f"input {name!r} takes {_type_text(input_type)} but is linked to output "
                    f"{slot} of {origin_label}, which gives {_type_text(received)}.")
            continue

        if isinstance(value, Mapping) and "__value__" in value:
            value = value["__value__"]
            inputs[name] = value
        convert = _CONVERTERS.get(input_type) if isinstance(input_type, str) else None
        if convert is not None:
            try:
                value = convert(value)
            except (TypeError, ValueError, OverflowError) as exc:
                add("invalid_input_type", f"input {name!r}: cannot use {value!r} as {input_type} ({exc}).")
                continue
            inputs[name] = value
        if not check_values or name in validate_args or d.validate_has_kwargs:
            continue
        if input_type == "FLOAT" and isinstance(value, float) and not math.isfinite(value):
            add("invalid_input_type", f"input {name!r}: {value!r} is not a finite number; give a number.")
            continue
        if "min" in options and _lt(value, options["min"]):
            add("value_smaller_than_min", f"input {name!r}: {value!r} is smaller than the minimum {options['min']}.")
            continue
        if "max" in options and _lt(options["max"], value):
            add("value_bigger_than_max", f"input {name!r}: {value!r} is bigger than the maximum {options['max']}.")
            continue
        choices = input_type if isinstance(input_type, list) else (
            options.get("options") if input_type == "COMBO" and isinstance(options.get("options"), list) else None)
        if choices is not None and value not in choices:
            add("value_not_in_list", f"input {name!r}: {value!r} is not one of {_combo_text(choices)}.")

    if check_values and d.cls is not None and (d.validate_args or d.validate_has_kwargs):
        _run_custom_validation(entry, d, received_types, add)


def _lt(a: Any, b: Any) -> bool:
    try:
        return a < b
    except TypeError:
        return False


def _type_text(t: Any) -> str:
    return "a COMBO" if isinstance(t, list) else str(t)


def _run_custom_validation(entry: dict, d: NodeDef, received_types: dict, add) -> None:
    """Call the node's ``VALIDATE_INPUTS`` as ComfyUI does: linked inputs are None, hidden ones filled."""
    args: dict[str, Any] = {}
    for name, value in entry["inputs"].items():
        if d.input_spec(name)[0] is None:
            continue
        args[name] = None if is_link(value) else value
    for name, kind in d.hidden.items():
        args.setdefault(name, {"UNIQUE_ID": None}.get(kind))
    wanted = {k: v for k, v in args.items() if d.validate_has_kwargs or k in (d.validate_args or ())}
    if "input_types" in (d.validate_args or ()):
        wanted["input_types"] = received_types
    try:
        verdict = d.cls.VALIDATE_INPUTS(**wanted)
    except Exception as exc:
        add("exception_during_validation", f"VALIDATE_INPUTS raised {type(exc).__name__}: {exc}")
        return
    if verdict is not True:
        detail = "" if verdict is False else f": {verdict}"
        add("custom_validation_failed", f"{d.name} rejected its inputs{detail}")


def _sort_key(node_id: str) -> tuple:
    # isdecimal, not isdigit: int() reads every decimal digit ("٣") but no superscript ("²"); short: no 4300-digit int
    return (0, int(node_id), "") if node_id.isdecimal() and len(node_id) < 100 else (1, 0, node_id)


def _cycles(work: Mapping[str, dict]) -> list[list[str]]:
    """Every dependency cycle, one per strongly connected component, each as a path of node ids."""
    deps = {nid: sorted({o for _n, o, _s in node_links(e) if o in work}, key=_sort_key) for nid, e in work.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(work, key=_sort_key):
        if root in index:
            continue
        work_stack = [(root, iter(deps[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work_stack:
            nid, children = work_stack[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work_stack.append((child, iter(deps[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[nid] = min(low[nid], index[child])
            if advanced:
                continue
            work_stack.pop()
            if work_stack:
                parent = work_stack[-1][0]
                low[parent] = min(low[parent], low[nid])
            if low[nid] == index[nid]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == nid:
                        break
                if len(component) > 1 or nid in deps[nid]:
                    components.append(component)
    return [_cycle_path(sorted(c, key=_sort_key), deps) for c in components]


def _cycle_path(component: list[str], deps: Mapping[str, list[str]]) -> list[str]:
    """A shortest loop through a strongly connected component, starting at its smallest id."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    queue = deque([start])
    seen = {start}
    last = None
    while queue and last is None:
        current = queue.popleft()
        for nxt in deps[current]:
            if nxt == start:
                last = current
                break
            if nxt in members and nxt not in seen:
                seen.add(nxt)
                previous[nxt] = current
                queue.append(nxt)
    path = [last if last is not None else start]
    while path[-1] != start:
        path.append(previous[path[-1]])
    return path[::-1]


def check_prompt(prompt: Mapping, node_defs: Mapping[str, NodeDef], *, check_values: bool = True,
                 strict: bool = False) -> Validation:
    """``validate_prompt`` that raises ``WorkflowError`` listing every problem."""
    result = validate_prompt(prompt, node_defs, check_values=check_values, strict=strict)
    if result.problems:
        raise WorkflowError(result.problems)
    return result


def execution_order(prompt: Mapping, node_defs: Mapping[str, NodeDef]) -> list[str]:
    """The nodes to run, dependencies first: the output nodes and everything they need.

    Among the nodes that are ready, an output node goes first (ComfyUI also runs outputs as early as
    it can), then the smallest id, so the order is deterministic.

    Raises:
        WorkflowError: the prompt has a dependency cycle.
    """
    outputs = [nid for nid, e in prompt.items() if node_defs[e["class_type"]].output_node]
    needed: set[str] = set()
    stack = list(outputs)
    while stack:
        nid = stack.pop()
        if nid not in needed:
            needed.add(nid)
            stack.extend(o for _n, o, _s in node_links(prompt[nid]) if o in prompt)
    deps = {nid: {o for _n, o, _s in node_links(prompt[nid]) if o in needed} for nid in needed}
    users: dict[str, set[str]] = {nid: set() for nid in needed}
    for nid, ds in deps.items():
        for o in ds:
            users[o].add(nid)
    waiting = {nid: len(ds) for nid, ds in deps.items()}
    ready = {nid for nid, n in waiting.items() if n == 0}
    order: list[str] = []
    while ready:
        nid = min(ready, key=lambda n: (not node_defs[prompt[n]["class_type"]].output_node, _sort_key(n)))
        ready.remove(nid)
        order.append(nid)
        for user in users[nid]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.add(user)
    if len(order) != len(needed):
        stuck = sorted(needed - set(order), key=_sort_key)
        raise WorkflowError([Problem("cycle", "is part of a dependency cycle; remove one of its links.",
                                     stuck[0], node_title(prompt, stuck[0], node_defs),
                                     prompt[stuck[0]]["class_type"])])
    return order
