"""Stand-in for ``comfy.cli_args``: an ``args`` namespace holding ComfyUI's defaults.

Real ComfyUI parses its command line into ``args``; here nothing is parsed. Only the options that
the stubs (or a node pack) read are present, with ComfyUI's default values. The headless runner
sets ``args.cpu`` for ``--cpu`` and ``args.disable_metadata`` for ``--disable-metadata``.
"""
from __future__ import annotations

from types import SimpleNamespace

args = SimpleNamespace(
    cpu=False,                # --cpu: use the CPU for everything
    gpu_only=False,           # --gpu-only: keep intermediates on the GPU
    highvram=False,           # --highvram: keep models on the GPU between runs
    disable_metadata=False,   # --disable-metadata: do not write prompt/workflow into saved files
    base_directory=None,      # --base-directory (the stubs use METAGAN_COMFY_BASE instead)
    output_directory=None,
    input_directory=None,
    temp_directory=None,
    user_directory=None,
)
