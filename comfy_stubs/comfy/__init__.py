"""Stand-in for ComfyUI's ``comfy`` package (ComfyUI v0.3.64; see ``comfy_stubs/README.md``).

Only the modules a node pack like ours touches exist here: ``cli_args``, ``model_management`` and
``utils``. In real ComfyUI ``comfy`` has no ``__init__.py`` (it is a namespace package); the stub
is a regular package so that nothing else named ``comfy`` on ``sys.path`` can merge into it.
"""
