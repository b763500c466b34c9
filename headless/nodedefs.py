"""Node definitions in one shape, whether read from node classes or from a server's ``/object_info``.

Conversion and validation need only what ComfyUI's ``/object_info`` tells about a node (inputs,
outputs, output node or not); execution also needs the class. ``NodeDef`` holds both, so the
same validation runs on local classes and on a remote server's definitions.
"""
from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import NodeDefinitionError

log = logging.getLogger(__name__)

# Input types that the ComfyUI frontend shows as widgets (plus COMBO, given as a list of options).
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
# Input options that make the frontend add an "upload" button widget after the required inputs.
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload", "audio_upload")


def _spec(name: str, value: Any, node: str) -> tuple[Any, dict]:
    """Normalise one INPUT_TYPES entry, ``(type,)`` or ``(type, options)``, to ``(type, options)``."""
    if isinstance(value, str):  # hidden inputs are bare strings; tolerate them elsewhere too
        return value, {}
    if not isinstance(value, (tuple, list)) or not value:
        raise NodeDefinitionError(f"{node}: input {name!r} must be (type,) or (type, options), got {value!r}")
    input_type = value[0]
    if isinstance(input_type, tuple):
        input_type = list(input_type)
    options = value[1] if len(value) > 1 and isinstance(value[1], Mapping) else {}
    return input_type, dict(options)


@dataclass(frozen=True)
class NodeDef:
    """What a node takes and gives, as ComfyUI's ``/object_info`` describes it."""

    name: str                                   # the node id saved in workflows
    display_name: str                           # default title in the UI
    required: Mapping[str, tuple[Any, dict]]    # input name -> (type or combo list, options)
    optional: Mapping[str, tuple[Any, dict]]
    hidden: Mapping[str, str]                   # input name -> "PROMPT" / "EXTRA_PNGINFO" / "UNIQUE_ID" ...
    outputs: tuple[Any, ...]                    # RETURN_TYPES
    output_is_list: tuple[bool, ...]
    output_names: tuple[str, ...]
    output_node: bool
    category: str = ""
    input_is_list: bool = False
    validate_args: frozenset[str] | None = None  # VALIDATE_INPUTS parameter names; None without one
    validate_has_kwargs: bool = False
    cls: type | None = field(default=None, compare=False)  # None for definitions read from a server

    def input_spec(self, name: str) -> tuple[str | None, Any, dict]:
        """``(category, type, options)`` of input ``name``; category is None if the node has no such input."""
        if name in self.required:
            return ("required",) + self.required[name]
        if name in self.optional:
            return ("optional",) + self.optional[name]
        if name in self.hidden:
            return "hidden", self.hidden[name], {}
        return None, None, {}

    def widget_inputs(self) -> list[str]:
        """Names of the inputs the frontend shows as widgets, in its order (required, then optional)."""
        names = []
        for section in (self.required, self.optional):
            for name, (input_type, options) in section.items():
                if is_widget_input(input_type, options):
                    names.append(name)
        return names


def is_widget_input(input_type: Any, options: Mapping) -> bool:
    """Whether the frontend creates a widget (and a ``widgets_values`` entry) for this input."""
    if options.get("forceInput"):
        return False
    return isinstance(input_type, list) or input_type in WIDGET_TYPES


# Values a ``control_after_generate`` widget may hold (COMBO targets also allow "increment-wrap").
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
COMBO_CONTROL_VALUES = CONTROL_VALUES + ("increment-wrap",)


def control_widgets(name: str, input_type: Any, options: Mapping) -> tuple[str, ...]:
    """The extra widgets the frontend adds right after the widget of this input, in order.

    ``()`` for most inputs; ``("control",)`` (a ``control_after_generate`` combo) for an INT with a
    truthy ``control_after_generate`` option or, when the option is absent, an INT named ``seed`` or
    ``noise_seed``, and for a FLOAT with a truthy option; ``("control", "filter")`` (that combo plus
    the ``control_filter_list`` text) for a COMBO with a truthy option. As ComfyUI_frontend writes
    them (``useIntWidget`` / ``useFloatWidget`` / ``useComboWidget`` calling ``addValueControlWidget(s)``
    in ``src/scripts/widgets.ts``): these widgets are left out of the prompt (``options.serialize``
    is false) but ``LGraphNode.serialize`` still stores their values in ``widgets_values``.
    """
    if not is_widget_input(input_type, options):
        return ()
    control = options.get("control_after_generate")
    if isinstance(input_type, list) or input_type == "COMBO":
        return ("control", "filter") if control else ()
    if input_type == "INT":
        if control is None:
            control = name in ("seed", "noise_seed")
        return ("control",) if control else ()
    if input_type == "FLOAT":
        return ("control",) if control else ()
    return ()


@dataclass(frozen=True)
class WidgetSlot:
    """One entry of a node's UI-format ``widgets_values``."""

    kind: str           # "value" (the input's own widget), "control", "filter" or "upload"
    input: str          # the input the entry belongs to (for "upload": the media input it uploads to)
    type: Any           # that input's type (a list of options for a COMBO)
    options: Mapping    # that input's options


def widget_layout(d: NodeDef) -> tuple[WidgetSlot, ...]:
    """The entries of ``widgets_values`` for node ``d``, in the order the frontend writes and reads them.

    The widget inputs of ``required`` then ``optional`` (in definition order), each followed by its
    ``control_widgets``; after the required inputs, one upload button (value ``"image"``) when a
    required input asks for one (``image_upload`` and the like; the frontend's ``Comfy.UploadImage``
    extension appends an ``upload`` input to ``required`` for the first such input). The frontend
    restores ``widgets_values`` strictly by position, so a file saved with another layout is misread.
    """
    layout: list[WidgetSlot] = []
    for section in (d.required, d.optional):
        for name, (input_type, options) in section.items():
            if not is_widget_input(input_type, options):
                continue
            layout.append(WidgetSlot("value", name, input_type, options))
            layout.extend(WidgetSlot(kind, name, input_type, options)
                          for kind in control_widgets(name, input_type, options))
        if section is d.required:
            media = next((name for name, (_t, opts) in d.required.items()
                          if any(opts.get(o) for o in UPLOAD_OPTIONS)), None)
            if media is not None:
                input_type, options = d.required[media]
                layout.append(WidgetSlot("upload", media, input_type, options))
    return tuple(layout)


def node_def_from_class(name: str, cls: type, display_name: str | None = None) -> NodeDef:
    """Describe a classic (``NODE_CLASS_MAPPINGS``) node class the way ComfyUI's server does.

    Raises:
        NodeDefinitionError: the class lacks ``INPUT_TYPES``/``RETURN_TYPES``/``FUNCTION`` or they
        have the wrong shape.
    """
    for attr in ("INPUT_TYPES", "RETURN_TYPES", "FUNCTION"):
        if not hasattr(cls, attr):
            raise NodeDefinitionError(f"{name}: node class {cls.__name__} has no {attr}.")
    try:
        input_types = cls.INPUT_TYPES()
    except Exception as exc:
        raise NodeDefinitionError(f"{name}: INPUT_TYPES() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(input_types, Mapping):
        raise NodeDefinitionError(f"{name}: INPUT_TYPES() must return a dict, got {type(input_types).__name__}.")
    return_types = tuple(cls.RETURN_TYPES)
    output_is_list = tuple(bool(x) for x in getattr(cls, "OUTPUT_IS_LIST", (False,) * len(return_types)))
    if len(output_is_list) != len(return_types):
        raise NodeDefinitionError(f"{name}: OUTPUT_IS_LIST has {len(output_is_list)} entries for "
                                  f"{len(return_types)} RETURN_TYPES.")
    validate_fn = getattr(cls, "VALIDATE_INPUTS", None)
    validate_args = None
    has_kwargs = False
    if validate_fn is not None:
        spec = inspect.getfullargspec(validate_fn)
        validate_args = frozenset(spec.args)
        has_kwargs = spec.varkw is not None
    return NodeDef(
        name=name,
        display_name=display_name or name,
        required=MappingProxyType({k: _spec(k, v, name) for k, v in (input_types.get("required") or {}).items()}),
        optional=MappingProxyType({k: _spec(k, v, name) for k, v in (input_types.get("optional") or {}).items()}),
        hidden=MappingProxyType({k: (v if isinstance(v, str) else _spec(k, v, name)[0])
                                 for k, v in (input_types.get("hidden") or {}).items()}),
        outputs=return_types,
        output_is_list=output_is_list,
        output_names=tuple(getattr(cls, "RETURN_NAMES", None) or (str(t) for t in return_types)),
        output_node=getattr(cls, "OUTPUT_NODE", False) is True,
        category=getattr(cls, "CATEGORY", "sd"),
        input_is_list=bool(getattr(cls, "INPUT_IS_LIST", False)),
        validate_args=validate_args,
        validate_has_kwargs=has_kwargs,
        cls=cls,
    )


def node_def_to_object_info(d: NodeDef) -> dict:
    """The ``/object_info`` entry ComfyUI's server would publish for ``d`` (JSON-ready)."""
    def section(entries):
        return {k: [t, dict(o)] if o else [t] for k, (t, o) in entries.items()}
    inputs = {"required": section(d.required)}
    if d.optional:
        inputs["optional"] = section(d.optional)
    if d.hidden:
        inputs["hidden"] = dict(d.hidden)
    return {
        "input": inputs,
        "input_order": {k: list(v) for k, v in inputs.items()},
        "output": list(d.outputs),
        "output_is_list": list(d.output_is_list),
        "output_name": list(d.output_names),
        "name": d.name,
        "display_name": d.display_name,
        "description": getattr(d.cls, "DESCRIPTION", "") if d.cls is not None else "",
        "python_module": _python_module(d.cls),
        "category": d.category,
        "output_node": d.output_node,
    }


def _python_module(cls: type | None) -> str:
    """ComfyUI's ``python_module``: ``nodes``, ``comfy_extras.<x>`` or ``custom_nodes.<pack>``."""
    if cls is None:
        return ""
    if getattr(cls, "RELATIVE_PYTHON_MODULE", None):
        return cls.RELATIVE_PYTHON_MODULE
    module = getattr(cls, "__module__", "") or ""
    if module == "nodes" or module.startswith("comfy_extras."):
        return module
    return "custom_nodes." + module.split(".")[0]


def node_defs_from_object_info(object_info: Mapping[str, Any]) -> dict[str, NodeDef]:
    """Read a server's ``/object_info`` answer into ``NodeDef``s (without classes).

    Raises:
        NodeDefinitionError: an entry lacks ``input`` or ``output``.
    """
    defs = {}
    for name, info in object_info.items():
        if not isinstance(info, Mapping) or "input" not in info or "output" not in info:
            raise NodeDefinitionError(f"/object_info entry {name!r} lacks 'input' or 'output'.")
        inputs = info["input"] or {}
        outputs = tuple(info["output"])
        defs[name] = NodeDef(
            name=name,
            display_name=info.get("display_name") or name,
            required=MappingProxyType({k: _spec(k, v, name) for k, v in (inputs.get("required") or {}).items()}),
            optional=MappingProxyType({k: _spec(k, v, name) for k, v in (inputs.get("optional") or {}).items()}),
            hidden=MappingProxyType({k: (v if isinstance(v, str) else _spec(k, v, name)[0])
                                     for k, v in (inputs.get("hidden") or {}).items()}),
            outputs=outputs,
            output_is_list=tuple(bool(x) for x in (info.get("output_is_list") or (False,) * len(outputs))),
            output_names=tuple(info.get("output_name") or (str(t) for t in outputs)),
            output_node=bool(info.get("output_node", False)),
            category=info.get("category", ""),
        )
    return defs


class NodeRegistry:
    """The node classes available to a local run: ComfyUI's core stubs plus the loaded packs.

    As in ComfyUI, a pack cannot replace a core node (the core one is kept, with a warning); a later
    pack replaces an earlier pack's node of the same id (with a warning).
    """

    def __init__(self, classes: Mapping[str, type] | None = None, display_names: Mapping[str, str] | None = None):
        self.classes: dict[str, type] = dict(classes or {})
        self.display_names: dict[str, str] = dict(display_names or {})
        self._core: set[str] = set(self.classes)
        self.packs: list[Any] = []

    def add_pack(self, module: Any) -> None:
        """Register the nodes of a loaded pack module (one with ``NODE_CLASS_MAPPINGS``)."""
        mappings = getattr(module, "NODE_CLASS_MAPPINGS", None) or {}
        names = getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {}
        for node_id, cls in mappings.items():
            if node_id in self._core:
                log.warning("pack %s defines node %r, which is a core node; keeping the core one (as ComfyUI does).",
                            getattr(module, "__name__", module), node_id)
                continue
            if node_id in self.classes:
                log.warning("pack %s replaces node %r of an earlier pack.",
                            getattr(module, "__name__", module), node_id)
            self.classes[node_id] = cls
            if node_id in names:
                self.display_names[node_id] = names[node_id]
        self.packs.append(module)

    def node_defs(self) -> dict[str, NodeDef]:
        """Fresh definitions of every node (``INPUT_TYPES`` can change, e.g. LoadImage's file list)."""
        return {name: node_def_from_class(name, cls, self.display_names.get(name))
                for name, cls in self.classes.items()}

    def object_info(self) -> dict[str, dict]:
        """What ComfyUI's ``/object_info`` would answer for these nodes."""
        return {name: node_def_to_object_info(d) for name, d in self.node_defs().items()}


def core_registry() -> NodeRegistry:
    """A registry holding ComfyUI's core nodes (``nodes`` and ``comfy_extras.nodes_images``).

    Calls ``comfy_env.ensure_comfy_interface()`` first, so these are the stubs unless a real ComfyUI
    is importable.
    """
    import importlib

    import comfy_env

    comfy_env.ensure_comfy_interface()
    core = importlib.import_module("nodes")
    registry = NodeRegistry(core.NODE_CLASS_MAPPINGS, getattr(core, "NODE_DISPLAY_NAME_MAPPINGS", {}))
    try:
        extras = importlib.import_module("comfy_extras.nodes_images")
    except Exception as exc:  # real ComfyUI's module needs its server; say so and go on without it
        log.warning("comfy_extras.nodes_images could not be imported (%s: %s); SaveAnimatedWEBP is unavailable.",
                    type(exc).__name__, exc)
    else:
        for node_id, cls in extras.NODE_CLASS_MAPPINGS.items():
            registry.classes.setdefault(node_id, cls)
            registry._core.add(node_id)
    return registry


def build_registry(packs: Iterable[str | os.PathLike] = ()) -> NodeRegistry:
    """Core nodes plus the packs in the given folders, each loaded with ``comfy_env.load_pack``."""
    import comfy_env

    registry = core_registry()
    for root in packs:
        registry.add_pack(comfy_env.load_pack(root))
    return registry
