import json
import os
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


# The pack's import outside ComfyUI: no stubs put in place by the pack itself, a typed error that says what to do
# without them, and nothing but the node registry (and its model folder) changed with them.
IMPORT_PACK = r"""
import importlib.util, json, os, sys
root = sys.argv[1]
def import_pack():
    spec = importlib.util.spec_from_file_location("comfyui_metagan", os.path.join(root, "__init__.py"),
                                                  submodule_search_locations=[root])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
"""


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(tmp_path),
           "METAGAN_COMFY_BASE": str(tmp_path / "comfy")}
    return subprocess.run([sys.executable, "-c", IMPORT_PACK + code, str(ROOT)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_importing_the_pack_without_comfyui_or_the_stubs_fails_with_a_typed_error_and_changes_no_import_path(
        tmp_path):
    code = r"""
path, interface = list(sys.path), [m for m in sys.modules if m.split(".")[0] in ("folder_paths", "comfy", "nodes")]
try:
    import_pack()
except ImportError as exc:
    print(json.dumps({"type": type(exc).__name__, "message": str(exc), "path_unchanged": sys.path == path,
                      "interface": [m for m in sys.modules if m.split(".")[0] in ("folder_paths", "comfy", "nodes")]}))
else:
    print(json.dumps({"type": None}))
"""
    proc = _run(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["type"] == "ComfyInterfaceMissingError", report
    assert "inside ComfyUI" in report["message"] and "comfy_env.ensure_comfy_interface()" in report["message"]
    assert "run_workflow.py" in report["message"]
    assert report["path_unchanged"] and report["interface"] == []


def test_importing_the_pack_with_the_stubs_in_place_changes_nothing_but_the_node_registry(tmp_path):
    code = r"""
import logging, random, warnings
import numpy as np, torch
sys.path.insert(0, root)
import comfy_env
sys.path.remove(root)                  # the pack is then importable only through its spec, as ComfyUI imports it
assert comfy_env.ensure_comfy_interface() is False
import folder_paths
def loggers():
    named = {n: lg for n, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    return {n: repr((lg.level, lg.handlers, lg.propagate, lg.disabled))
            for n, lg in {"": logging.root, **named}.items()}
def state():
    return {"path": list(sys.path), "meta_path": list(map(repr, sys.meta_path)),
            "path_hooks": list(map(repr, sys.path_hooks)),
            "environ": dict(os.environ), "cwd": os.getcwd(), "warnings": repr(warnings.filters),
            "logging": loggers(),
            "torch": [torch.get_num_threads(), str(torch.get_default_dtype()), torch.is_grad_enabled(),
                      torch.get_rng_state().tolist() == RNG, torch.are_deterministic_algorithms_enabled(),
                      torch.backends.cudnn.benchmark],
            "random": random.getstate() == PY_RNG, "numpy": str(np.random.get_state()[1][:4]),
            "folders": {k: [list(p), sorted(e)] for k, (p, e) in folder_paths.folder_names_and_paths.items()}}
RNG, PY_RNG = torch.get_rng_state().tolist(), random.getstate()
before, modules = state(), dict(sys.modules)
pack = import_pack()
after = state()
# New loggers (logging.getLogger(__name__)) are fine; handlers or levels on them, or on existing ones, are not.
new_loggers = {n: v for n, v in after["logging"].items() if n not in before["logging"]}
after["logging"] = {n: v for n, v in after["logging"].items() if n in before["logging"]}
configured = sorted(n for n, v in new_loggers.items() if v != repr((logging.NOTSET, [], True, False)))
changed = sorted(k for k in before if before[k] != after[k]) + [f"logger {n}" for n in configured]
folders = sorted(set(after["folders"]) - set(before["folders"]))
replaced = sorted(m for m, mod in modules.items() if sys.modules.get(m) is not mod)
foreign = sorted(m for m in set(sys.modules) - set(modules) if not m.startswith("comfyui_metagan")
                 and m.split(".")[0] in ("meta_core", "nodes", "headless", "comfy_env", "tests"))
print(json.dumps({"changed": changed, "new_folders": folders, "replaced_modules": replaced, "foreign": foreign,
                  "nodes": sorted(pack.NODE_CLASS_MAPPINGS)}))
"""
    proc = _run(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # The registry and its model folder are the only changes: folder_paths gains "meta_gan", nothing else moves.
    assert report["changed"] in ([], ["folders"]) and report["new_folders"] == ["meta_gan"], report
    assert report["replaced_modules"] == [] and report["foreign"] == [], report
    assert len(report["nodes"]) == 6 and all(n.startswith("MetaGAN") for n in report["nodes"])
    assert os.listdir(tmp_path) == []
