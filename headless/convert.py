"""Read workflow files and convert ComfyUI's UI (saved) format to the API (prompt) format.

Two formats exist:

- **UI format**, what ComfyUI's "Save" writes: ``{"nodes": [...], "links": [...], ...}``. Each node
  has ``id``, ``type``, ``mode``, ``inputs`` (slots with a ``link`` id), ``outputs`` and
  ``widgets_values`` (widget values by position). Links are ``[id, origin_id, origin_slot,
  target_id, target_slot, type]`` (schema 0.4) or objects with those keys (schema 1).
- **API format**, what ``/prompt`` takes: ``{node_id: {"class_type": ..., "inputs": {...}}}`` where
  an input is a value or a link ``[origin_id, origin_slot]``.

``ui_to_api`` does what the ComfyUI frontend's ``graphToPrompt`` does (frontend 1.2x, with ComfyUI
0.3.64): widget values are matched to the node's widget inputs by position, counting the extra
``control_after_generate`` (and a COMBO's filter-list) values and the image-upload button's value
(``nodedefs.widget_layout``);
links override widget values; muted (mode 2) and bypassed (mode 4) nodes are left out, a link from
a bypassed node is re-routed to that node's first input of the same type; ``Reroute`` nodes are
followed; a ``PrimitiveNode`` gives its value to the widget it feeds; ``Note``/``MarkdownNote`` are
ignored; inputs left pointing at a node that is not in the result are dropped. Subgraphs and the
legacy group nodes are not supported and reported as problems.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import Problem, WorkflowError
from .nodedefs import NodeDef, widget_layout

MAX_WORKFLOW_BYTES = 64 * 1024 * 1024  # a workflow file larger than this is refused unread
MAX_NODES = 10_000                     # more nodes than this is refused as absurd
MAX_LINKS = 100_000                    # likewise for links / linked inputs

MODE_MUTED = 2   # LiteGraph "never": the node is left out
MODE_BYPASS = 4  # the node is left out and its inputs are passed through to its outputs

# Frontend-only nodes that never reach the server.
VIRTUAL_NODE_TYPES = frozenset({"Reroute", "PrimitiveNode", "Note", "MarkdownNote"})


@dataclass
class LoadedWorkflow:
    """A workflow read from a file: which format it is in and the parsed JSON."""

    kind: Literal["ui", "api"]
    data: dict
    path: str | None = None


@dataclass
class Conversion:
    """Result of turning a workflow into an API prompt."""

    prompt: dict                                            # API format, ready for validation
    problems: list[Problem] = field(default_factory=list)   # make the workflow unusable
    warnings: list[Problem] = field(default_factory=list)   # worth telling, not fatal
    ui_workflow: dict | None = None                         # the UI workflow, if that was the input


def _fail(message: str) -> WorkflowError:
    return WorkflowError([Problem("invalid_workflow", message)])


def detect_format(data: Any) -> Literal["ui", "api"]:
    """``"ui"`` for a saved workflow, ``"api"`` for a prompt; raises ``WorkflowError`` otherwise.

    A ``{"prompt": {...}}`` wrapper (a ``/prompt`` request body) counts as API format.
    """
    if isinstance(data, Mapping):
        if isinstance(data.get("nodes"), list):
            return "ui"
        if data and all(isinstance(v, Mapping) and "class_type" in v for v in data.values()):
            return "api"
        if isinstance(data.get("prompt"), Mapping) and detect_format(data["prompt"]) == "api":
            return "api"
    raise _fail("this is neither a ComfyUI workflow (with 'nodes' and 'links') nor an API prompt "
                "({id: {'class_type', 'inputs'}}); export it from ComfyUI with Save or Export (API).")


def _unwrap_api(data: Mapping) -> dict:
    if all(isinstance(v, Mapping) and "class_type" in v for v in data.values()):
        return dict(data)
    return dict(data["prompt"])


def load_workflow(path: str | os.PathLike) -> LoadedWorkflow:
    """Read a workflow from a ``.json`` file, or from the metadata of a PNG that ComfyUI saved.

    Raises:
        WorkflowError: missing or unreadable file, too large, not JSON, or neither format.
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}") from None
    if size > MAX_WORKFLOW_BYTES:
        raise _fail(f"{path} is {size} bytes; workflow files over {MAX_WORKFLOW_BYTES} bytes are refused.")
    if path.lower().endswith(".png"):
        text = _png_workflow_text(path)
    else:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise _fail(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).") from None
    except (ValueError, RecursionError) as exc:  # a number of 4300+ digits, or absurdly deep nesting
        raise _fail(f"{path} cannot be read as a workflow ({type(exc).__name__}: {str(exc)[:100]}).") from None
    kind = detect_format(data)
    return LoadedWorkflow(kind, data if kind == "ui" else _unwrap_api(data), path)


def _png_workflow_text(path: str) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            info = dict(getattr(img, "text", {}) or img.info)
    except (OSError, UnidentifiedImageError) as exc:
        raise _fail(f"cannot read {path} as a PNG: {exc}") from None
    for key in ("workflow", "prompt"):
        if isinstance(info.get(key), str):
            return info[key]
    raise _fail(f"{path} holds no ComfyUI workflow: it has no 'workflow' or 'prompt' text chunk.")


# ---------------------------------------------------------------------------------------------
# UI -> API
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Link:
    id: Any
    origin_id: Any
    origin_slot: int
    target_id: Any
    target_slot: int
    type: Any


def _parse_links(raw: Any, problems: list[Problem]) -> dict[Any, _Link]:
    links: dict[Any, _Link] = {}
    if raw is None:
        return links
    if not isinstance(raw, list):
        problems.append(Problem("invalid_workflow", "'links' must be a list."))
        return links
    for entry in raw:
        try:
            if isinstance(entry, Mapping):
                link = _Link(entry["id"], entry["origin_id"], int(entry["origin_slot"]),
                             entry["target_id"], int(entry["target_slot"]), entry.get("type"))
            else:
                link = _Link(entry[0], entry[1], int(entry[2]), entry[3], int(entry[4]),
                             entry[5] if len(entry) > 5 else None)
        except (KeyError, IndexError, TypeError, ValueError, OverflowError):
            problems.append(Problem("invalid_workflow", f"malformed link entry {json.dumps(entry)[:80]}."))
            continue
        links[_key(link.id)] = link
    return links


def _mapping(value: Any) -> Mapping:
    """`value` if it is an object, else an empty one: optional parts of a file may be anything."""
    return value if isinstance(value, Mapping) else {}


def _slots(node: Mapping) -> list[Mapping]:
    """A UI node's input slots that are objects (a malformed 'inputs' counts as none)."""
    slots = node.get("inputs")
    return [s for s in slots if isinstance(s, Mapping)] if isinstance(slots, list) else []


def _key(node_or_link_id: Any) -> str:
    """Ids are ints in files but strings in API prompts; compare them as strings."""
    return str(node_or_link_id)


def _sort_key(node_id: str) -> tuple:
    # isdecimal, not isdigit: int() reads every decimal digit ("٣") but no superscript ("²"); short: no 4300-digit int
    return (0, int(node_id), "") if node_id.isdecimal() and len(node_id) < 100 else (1, 0, node_id)


def _wrap(value: Any) -> Any:
    """A list widget value is sent as ``{"__value__": [...]}`` so it is not read as a link."""
    return {"__value__": value} if isinstance(value, list) else value


def convert_workflow(workflow: Mapping, node_defs: Mapping[str, NodeDef]) -> Conversion:
    """Convert a UI-format workflow to an API prompt, collecting problems instead of raising.

    Args:
        workflow: the parsed UI workflow (``{"nodes": [...], "links": [...]}``).
        node_defs: node definitions by type id (from a ``NodeRegistry`` or a server's ``/object_info``);
            they give the widget order, which the file does not store.

    Returns:
        A ``Conversion``; ``prompt`` holds every node that could be converted.
    """
    problems: list[Problem] = []
    warnings: list[Problem] = []
    raw_nodes = workflow.get("nodes")
    if not isinstance(raw_nodes, list):
        return Conversion({}, [Problem("invalid_workflow", "'nodes' must be a list.")], [], dict(workflow))
    if len(raw_nodes) > MAX_NODES:
        return Conversion({}, [Problem("graph_too_large", f"the workflow has {len(raw_nodes)} nodes; "
                                       f"at most {MAX_NODES} are accepted.")], [], dict(workflow))
    raw_links = workflow.get("links") or []
    if isinstance(raw_links, list) and len(raw_links) > MAX_LINKS:
        return Conversion({}, [Problem("graph_too_large", f"the workflow has {len(raw_links)} links; "
                                       f"at most {MAX_LINKS} are accepted.")], [], dict(workflow))
    links = _parse_links(raw_links, problems)

    nodes: dict[str, Mapping] = {}
    for node in raw_nodes:
        if not isinstance(node, Mapping) or "id" not in node or not isinstance(node.get("type"), str):
            problems.append(Problem("invalid_workflow", f"malformed node entry {json.dumps(node)[:80]}."))
            continue
        nid = _key(node["id"])
        if nid in nodes:
            problems.append(Problem("invalid_workflow", "two nodes have this id.",
                                    nid, node.get("title"), node["type"]))
            continue
        nodes[nid] = node

    definitions, extra = _mapping(workflow.get("definitions")), _mapping(workflow.get("extra"))
    subgraphs = definitions.get("subgraphs")
    subgraph_ids = {_key(s.get("id")) for s in (subgraphs if isinstance(subgraphs, list) else [])
                    if isinstance(s, Mapping)}
    group_nodes = {_key(k) for k in _mapping(extra.get("groupNodes"))}

    def title_of(nid: str) -> str:
        node = nodes[nid]
        d = node_defs.get(node["type"])
        return node.get("title") or (d.display_name if d else node["type"])

    prompt: dict[str, dict] = {}
    muted: set[str] = set()
    for nid in sorted(nodes, key=_sort_key):
        node = nodes[nid]
        node_type = node["type"]
        mode = node.get("mode", 0)
        if mode in (MODE_MUTED, MODE_BYPASS):
            muted.add(nid)
            continue
        if node_type in VIRTUAL_NODE_TYPES:
            continue
        title = title_of(nid)

        # Called only within this iteration (and through the lambda below, which _resolve_link calls before it
        # returns); the node's id, title and type are bound as keyword-only defaults all the same.
        def problem(kind: str, message: str, into: list[Problem] = problems, *,
                    nid: str = nid, title: str = title, node_type: str = node_type) -> None:
            into.append(Problem(kind, message, nid, title, node_type))

        d = node_defs.get(node_type)
        if d is None:
            if node_type in subgraph_ids:
                problem("unsupported", "subgraph nodes are not supported headless; "
                        "in ComfyUI, right-click the subgraph and choose 'Unpack Subgraph', then save again.")
            elif node_type.startswith("workflow>") or node_type.startswith("workflow/") or node_type in group_nodes:
                problem("unsupported", "legacy group nodes are not supported headless; "
                        "in ComfyUI, right-click the group node and choose 'Convert to nodes', then save again.")
            else:
                problem("unknown_node_type", f"node type {node_type!r} is not installed; "
                        "load the pack that provides it (--pack DIR) or remove the node.")
            continue

        inputs: dict[str, Any] = {}
        values = node.get("widgets_values")
        if isinstance(values, Mapping):
            for name in d.widget_inputs():
                if name in values:
                    inputs[name] = _wrap(values[name])
        elif isinstance(values, list):
            layout = widget_layout(d)
            # The frontend restores by position and leaves widgets past the list's end at their defaults, so a file
            # saved before optional inputs were added at the end is read right: no warning for that.
            saved_before_optional = (len(values) < len(layout)
                                     and all(entry.input in d.optional for entry in layout[len(values):]))
            if len(layout) != len(values) and not saved_before_optional:
                problem("widget_count_mismatch",
                        f"has {len(values)} widget values but {d.name} expects {len(layout)}; values were "
                        "assigned in order and may be misplaced (was the workflow saved with another "
                        "version of the node?).", warnings)
            for entry, value in zip(layout, values):
                if entry.kind == "value":
                    inputs[entry.input] = _wrap(value)
        elif values is not None:
            problem("invalid_workflow", "'widgets_values' must be a list or an object.")

        for slot in _slots(node):
            if slot.get("link") is None:
                continue
            name = _mapping(slot.get("widget")).get("name") or slot.get("name")
            if not isinstance(name, str):
                problem("invalid_workflow", "an input slot has no name.")
                continue
            resolved = _resolve_link(slot["link"], slot.get("type"), name, nodes, links, lambda k, m: problem(k, m))
            if resolved is None:  # nothing at the other end: a widget keeps its own value
                continue
            if resolved[0] == "value":
                inputs[name] = _wrap(resolved[1])
            else:
                inputs[name] = [resolved[1], resolved[2]]

        prompt[nid] = {"inputs": inputs, "class_type": node_type, "_meta": {"title": title}}

    # As the frontend does: drop inputs that point at nodes which did not make it into the prompt.
    for nid, entry in prompt.items():
        for name, value in list(entry["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and _key(value[0]) not in prompt:
                del entry["inputs"][name]
                origin = _key(value[0])
                if origin in muted:
                    warnings.append(Problem("link_from_muted_node",
                                            f"input {name!r} comes from node {origin} ({title_of(origin)}), which "
                                            "is muted or bypassed without a matching input; the link is dropped.",
                                            nid, entry["_meta"]["title"], entry["class_type"]))
    return Conversion(prompt, problems, warnings, dict(workflow))


def _resolve_link(link_id: Any, want_type: Any, input_name: str, nodes: Mapping[str, Mapping],
                  links: Mapping[str, _Link], problem) -> tuple | None:
    """Follow a link through reroutes and bypassed nodes to a real output or a primitive's value.

    Returns ``("link", origin_id, slot)``, ``("value", v)`` or None (nothing connected in the end).
    """
    seen: set[str] = set()
    while True:
        key = _key(link_id)
        if key in seen:
            problem("cycle", f"input {input_name!r} is wired through a loop of reroute/bypassed nodes.")
            return None
        seen.add(key)
        link = links.get(key)
        if link is None:
            problem("dangling_link", f"input {input_name!r} uses link {link_id}, which is not in the workflow's "
                    "links; reconnect the input in ComfyUI and save again.")
            return None
        origin = nodes.get(_key(link.origin_id))
        if origin is None:
            problem("link_to_missing_node", f"input {input_name!r} is linked to node {link.origin_id}, which is "
                    "not in the workflow.")
            return None
        origin_inputs = _slots(origin)
        if origin.get("mode", 0) == MODE_BYPASS:
            candidates = [link.origin_slot] + list(range(len(origin_inputs)))
            index = next((i for i in candidates if 0 <= i < len(origin_inputs)
                          and origin_inputs[i].get("type") == want_type), None)
            if index is None or origin_inputs[index].get("link") is None:
                return None
            link_id = origin_inputs[index]["link"]
            continue
        if origin.get("type") == "PrimitiveNode":
            values = origin.get("widgets_values")
            return ("value", values[0]) if isinstance(values, list) and values else None
        if origin.get("type") in VIRTUAL_NODE_TYPES:
            slot = link.origin_slot
            if 0 <= slot < len(origin_inputs) and origin_inputs[slot].get("link") is not None:
                link_id = origin_inputs[slot]["link"]
                continue
            return None
        return ("link", _key(origin["id"]), link.origin_slot)


def ui_to_api(workflow: Mapping, node_defs: Mapping[str, NodeDef]) -> dict:
    """Convert a UI-format workflow to an API prompt.

    Args:
        workflow: the parsed UI workflow (``{"nodes": [...], "links": [...]}``).
        node_defs: node definitions by type id, e.g. ``build_registry([pack]).node_defs()``.

    Returns:
        ``{node_id: {"inputs": {...}, "class_type": str, "_meta": {"title": str}}}``.

    Raises:
        WorkflowError: a node type is unknown, a link is broken, or the file is malformed.
    """
    result = convert_workflow(workflow, node_defs)
    if result.problems:
        raise WorkflowError(result.problems)
    return result.prompt


def to_api_prompt(loaded: LoadedWorkflow | Mapping, node_defs: Mapping[str, NodeDef]) -> Conversion:
    """A ``Conversion`` for a workflow in either format (an API prompt is copied as is)."""
    if not isinstance(loaded, LoadedWorkflow):
        kind = detect_format(loaded)
        loaded = LoadedWorkflow(kind, dict(loaded) if kind == "ui" else _unwrap_api(loaded))
    if loaded.kind == "ui":
        return convert_workflow(loaded.data, node_defs)
    return Conversion(json.loads(json.dumps(loaded.data)), [], [], None)
