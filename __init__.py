"""comfyui-metagan: ComfyUI entry point. Only assembles the node registry.

Importing it has no side effect beyond registering the nodes (and the ``meta_gan`` model folder). Outside
ComfyUI, put the vendored interface stubs in place first (``comfy_env.ensure_comfy_interface()``, as
``run_workflow.py`` does, or ``comfy_env.load_pack(folder)``); without them the import raises
``comfy_env.ComfyInterfaceMissingError``, which says so.
"""
from . import comfy_env

comfy_env.require_comfy_interface()  # checks only: never edits sys.path or sys.modules

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, register_model_folder  # noqa: E402

register_model_folder()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
