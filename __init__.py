"""comfyui-metagan: ComfyUI entry point. Only assembles the node registry."""
from . import comfy_env

comfy_env.ensure_comfy_interface()  # inside ComfyUI a no-op; elsewhere the vendored stubs stand in for it

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, register_model_folder  # noqa: E402

register_model_folder()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
