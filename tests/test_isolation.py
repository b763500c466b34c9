import pkgutil
import subprocess
import sys
from pathlib import Path

import meta_core

ROOT = Path(__file__).resolve().parents[1]
COMFY_MODULES = {"comfy", "folder_paths", "nodes", "comfy_api", "comfy_extras", "comfy_execution", "server"}


def test_importing_meta_core_imports_no_comfyui_module():
    modules = [f"meta_core.{m.name}" for m in pkgutil.iter_modules(meta_core.__path__) if m.name != "__main__"]
    code = ("import sys, importlib\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {COMFY_MODULES!r})\n"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(modules) >= 10


def test_importing_meta_core_starts_no_threads_and_writes_nothing(tmp_path):
    code = ("import threading, os, sys; before = threading.active_count(); sys.path.insert(0, sys.argv[1]); "
            "import meta_core; assert threading.active_count() == before, threading.enumerate(); "
            "assert os.listdir('.') == [], os.listdir('.')")
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stderr
