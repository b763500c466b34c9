"""Stand-in for ComfyUI's ``comfy_extras`` package: only ``nodes_images`` (``SaveAnimatedWEBP``).

As with ``comfy``, the real folder has no ``__init__.py``; the stub is a regular package on purpose.
"""
