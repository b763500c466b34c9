#!/usr/bin/env python3
"""Run a ComfyUI workflow without ComfyUI, or on a running ComfyUI server.

    python run_workflow.py WORKFLOW.json [--output DIR] [--server URL] [--pack DIR ...]

WORKFLOW is a workflow saved by ComfyUI (UI format), an API-format prompt, or a PNG that ComfyUI
saved. The logic lives in the ``headless`` package; ``--help`` lists every option.
"""
import sys

import comfy_env
from headless.cli import main

if __name__ == "__main__":
    # Runs node packs outside ComfyUI: put the vendored interface stubs in place (a no-op when a real
    # ComfyUI is importable). The packs themselves never do this at import.
    comfy_env.ensure_comfy_interface()
    sys.exit(main())
