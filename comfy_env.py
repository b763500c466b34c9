"""Make ComfyUI's module interface importable, and load a node pack the way ComfyUI does.

Node packs import ComfyUI's top-level modules by absolute name: ``folder_paths``, ``nodes``,
``comfy.utils``, ``comfy.model_management``, ``comfy_extras.nodes_images``. Inside ComfyUI those
are ComfyUI's own. Outside it (headless runs, tests) this module puts the vendored stubs in
``comfy_stubs/`` first on ``sys.path``, unless a real ComfyUI is importable.

The ``nodes`` name clash
------------------------
This pack has its own ``nodes/`` package at the repository root, and ComfyUI's core module is
also called ``nodes``. When the repository root is on ``sys.path`` (pytest's ``pythonpath = "."``,
or ``python run_workflow.py`` which puts the script's folder first), a plain ``import nodes``
would find the pack's package. So:

- ``ensure_comfy_interface()`` keeps ``comfy_stubs/`` at ``sys.path[0]``, ahead of the repository
  root, and evicts a ``nodes`` module already imported from anywhere else (with a warning);
- the pack's own node modules are only ever imported relatively, through the pack package that
  ``load_pack`` creates (``<pack>.nodes``), never as top-level ``nodes``.

Importing the pack never calls ``ensure_comfy_interface()`` itself: its ``__init__`` only checks, with
``require_comfy_interface()``, that an interface is there, and raises ``ComfyInterfaceMissingError``
(saying what to do) when it is not. The entry points that run the pack outside ComfyUI put the stubs
in place: ``run_workflow.py`` and ``headless``, ``load_pack``, the tests' fixtures.

Example::

    import comfy_env
    comfy_env.ensure_comfy_interface()        # False: the stubs are in use
    pack = comfy_env.load_pack("/path/to/comfyui-metagan")
    pack.NODE_CLASS_MAPPINGS["MetaGANLoader"]
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import re
import sys
from types import ModuleType

__all__ = ["STUBS_DIR", "PackLoadError", "ComfyInterfaceMissingError", "ensure_comfy_interface",
           "require_comfy_interface", "find_real_comfyui", "using_stubs", "pack_module_name", "load_pack"]

log = logging.getLogger(__name__)

#: Absolute path of the vendored ComfyUI interface stubs.
STUBS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "comfy_stubs")

# Top-level module names the stubs provide; ComfyUI's real ones have the same names.
_INTERFACE_MODULES = ("folder_paths", "nodes", "comfy", "comfy_extras")


class PackLoadError(ImportError):
    """A node pack folder cannot be imported as ComfyUI would import it."""


class ComfyInterfaceMissingError(PackLoadError):
    """The pack was imported where neither ComfyUI nor the vendored stubs provide ``folder_paths``."""


def _same_path(a: str, b: str) -> bool:
    try:
        return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))
    except (OSError, ValueError):
        return False


def _under(path: str | None, root: str) -> bool:
    if not path:
        return False
    path, root = os.path.normcase(os.path.realpath(path)), os.path.normcase(os.path.realpath(root))
    try:
        return os.path.commonpath((path, root)) == root
    except ValueError:
        return False


def _module_file(module: ModuleType) -> str | None:
    path = getattr(module, "__file__", None)
    if path:
        return path
    locations = getattr(module, "__path__", None)
    return next(iter(locations), None) if locations else None


def _is_stub(module: ModuleType) -> bool:
    return _under(_module_file(module), STUBS_DIR)


def _looks_like_comfyui_root(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "nodes.py")) and os.path.isdir(os.path.join(folder, "comfy"))


def find_real_comfyui() -> str | None:
    """The folder of a real ComfyUI that is already imported or importable, else None.

    A ComfyUI is recognised by its ``folder_paths.py`` with ``nodes.py`` and ``comfy/`` beside it.
    The stubs folder never counts, wherever it sits on ``sys.path``.
    """
    loaded = sys.modules.get("folder_paths")
    if loaded is not None and not _is_stub(loaded):
        origin = _module_file(loaded)
        return os.path.dirname(os.path.abspath(origin)) if origin else ""
    search = [p for p in sys.path if not _same_path(p or os.getcwd(), STUBS_DIR)]
    try:
        spec = importlib.machinery.PathFinder.find_spec("folder_paths", search)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        return None
    folder = os.path.dirname(os.path.abspath(spec.origin))
    return folder if _looks_like_comfyui_root(folder) else None


def using_stubs() -> bool:
    """Whether ``folder_paths`` resolves (or would resolve) to the stubs."""
    return find_real_comfyui() is None and any(_same_path(p or os.getcwd(), STUBS_DIR) for p in sys.path)


def _evict_foreign_interface_modules() -> None:
    """Drop top-level interface modules (and their submodules) imported from outside the stubs.

    The usual case is the pack's own ``nodes/`` package imported as top-level ``nodes`` because the
    repository root came first on ``sys.path``.
    """
    for name in _INTERFACE_MODULES:
        module = sys.modules.get(name)
        if module is None or _is_stub(module):
            continue
        log.warning("comfy_env: module %r was imported from %s, not from the ComfyUI stubs; "
                    "dropping it so that `import %s` gives ComfyUI's interface.", name, _module_file(module), name)
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def ensure_comfy_interface() -> bool:
    """Make ``folder_paths``, ``nodes``, ``comfy.*`` and ``comfy_extras.*`` importable.

    Returns:
        True if a real ComfyUI is importable (then nothing is changed, and a stubs folder that an
        earlier call put on ``sys.path`` is taken off again); False if the stubs are used. In that
        case ``comfy_stubs/`` is at ``sys.path[0]`` afterwards, exactly once, and an interface module
        already imported from elsewhere (e.g. the pack's own ``nodes`` package) has been evicted
        from ``sys.modules``. Calling it again changes nothing further.
    """
    if find_real_comfyui() is not None:
        stale = [p for p in sys.path if _same_path(p or os.getcwd(), STUBS_DIR)]
        for p in stale:
            sys.path.remove(p)
        if stale:
            log.warning("comfy_env: a real ComfyUI is importable; removed the stubs folder from sys.path.")
        return True
    if not (sys.path and _same_path(sys.path[0], STUBS_DIR)):
        sys.path[:] = [p for p in sys.path if not _same_path(p or os.getcwd(), STUBS_DIR)]
        sys.path.insert(0, STUBS_DIR)
        importlib.invalidate_caches()
    _evict_foreign_interface_modules()
    return False


def require_comfy_interface(pack: str = "comfyui-metagan") -> None:
    """Check, changing nothing, that ComfyUI's module interface is importable; the pack's ``__init__`` calls it.

    Inside ComfyUI, or after ``ensure_comfy_interface()`` put the stubs in place, ``folder_paths`` is
    already imported or importable and this returns. It never edits ``sys.path`` or ``sys.modules``:
    putting the stubs in place is the job of the entry points that run the pack outside ComfyUI
    (``run_workflow.py`` and ``headless``, ``load_pack``, the tests' fixtures).

    Raises:
        ComfyInterfaceMissingError: ``folder_paths`` cannot be found; the message says what to do.
    """
    if "folder_paths" in sys.modules:
        return
    try:
        found = importlib.util.find_spec("folder_paths") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ComfyInterfaceMissingError(
            f"{pack} is a ComfyUI node pack and needs ComfyUI's module interface (folder_paths, comfy.*), which "
            "is not importable here. Import it inside ComfyUI (clone it into ComfyUI/custom_nodes/), or call "
            "comfy_env.ensure_comfy_interface() first to use the vendored stubs in comfy_stubs/, as "
            "run_workflow.py does (comfy_env.load_pack(folder) does both).")


def pack_module_name(root: str | os.PathLike) -> str:
    """The ``sys.modules`` name ``load_pack`` gives the pack in ``root``: its folder name made a
    valid identifier (``comfyui-metagan`` -> ``comfyui_metagan``)."""
    name = re.sub(r"\W", "_", os.path.basename(os.path.normpath(os.fspath(root))))
    if not name or name[0].isdigit():
        name = "_" + name
    return name


def load_pack(root: str | os.PathLike) -> ModuleType:
    """Import the node pack in folder ``root`` as ComfyUI imports a custom node folder.

    The pack's ``__init__.py`` is loaded from an importlib spec with ``root`` as its package search
    location, so the pack's relative imports (``from .nodes import loaders``) work and never touch
    top-level ``nodes``. ``ensure_comfy_interface()`` is called first. Loading the same folder again
    returns the module already loaded.

    Returns:
        The pack module; it has ``NODE_CLASS_MAPPINGS`` (and usually ``NODE_DISPLAY_NAME_MAPPINGS``).

    Raises:
        PackLoadError: ``root`` has no ``__init__.py``, or the pack defines no ``NODE_CLASS_MAPPINGS``.
        Exception: whatever the pack's own import raises, unchanged.
    """
    ensure_comfy_interface()
    root = os.path.abspath(os.fspath(root))
    init = os.path.join(root, "__init__.py")
    if not os.path.isfile(init):
        raise PackLoadError(f"{root} is not a node pack: it has no __init__.py. "
                            "Pass the folder that holds the pack's __init__.py.")
    name = pack_module_name(root)
    existing = sys.modules.get(name)
    if existing is not None:
        if _same_path(getattr(existing, "__file__", "") or "", init):
            return existing
        # Another module already uses that name: make ours unique, as ComfyUI's path-based names are.
        name = f"{name}_x_{hashlib.sha1(root.encode()).hexdigest()[:8]}"
        existing = sys.modules.get(name)
        if existing is not None:
            return existing
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[root])
    if spec is None or spec.loader is None:
        raise PackLoadError(f"cannot build an import spec for {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
        raise
    if getattr(module, "NODE_CLASS_MAPPINGS", None) is None:
        del sys.modules[name]
        raise PackLoadError(f"{root}: the pack's __init__.py defines no NODE_CLASS_MAPPINGS.")
    return module
