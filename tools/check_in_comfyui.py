#!/usr/bin/env python3
"""Check this node pack inside a real ComfyUI server, end to end, without touching the user's ComfyUI data.

    python tools/check_in_comfyui.py --comfyui ~/ComfyUI --python ~/ComfyUI/venv/bin/python

What it does:

1. makes a throw-away base directory (models/, custom_nodes/, input/, output/, temp/, user/) and
   links this repository into its ``custom_nodes/comfyui-metagan`` (ComfyUI's ``--base-directory``
   makes the server look for custom nodes there, not in ``DIR/custom_nodes``). With a ComfyUI too
   old for ``--base-directory`` the link goes into ``DIR/custom_nodes`` instead, and the
   ``--output/--input/--temp/--user-directory`` flags point into the throw-away folder. A tiny probe
   node (``metagan_check_probe.py``) is put beside the link; it only adds a read-only route
   ``/metagan_check/probe`` that reports which ``nodes``/``folder_paths`` modules the server uses;
2. starts ``main.py --cpu --listen 127.0.0.1 --port P`` with only this pack and the probe
   whitelisted (``--disable-all-custom-nodes --whitelist-custom-nodes``) and waits for it;
3. checks: the server log (import failures, tracebacks naming the pack); that the pack's
   ``comfy_env.ensure_comfy_interface()`` left ComfyUI's own modules in place (probe); ``/object_info``
   (every node id, its description, a tooltip on every input, OUTPUT_TOOLTIPS); ``/workflow_templates``
   and ``/api/workflow_templates/comfyui-metagan/<name>.json``; the UI workflows (``example_workflows/*.json``)
   against the frontend's workflow schema and the node definitions (links, ``widgets_values``
   lengths incl. ``control_after_generate``, values), and that each converts to its API twin;
4. runs every ``example_workflows/api/*.json`` through ``/prompt`` with ``run_workflow.py --server`` and checks
   the files it made (PNG for SaveImage, animated WEBP for SaveAnimatedWEBP, a ``.safetensors`` in
   ``models/meta_gan`` for MetaGANSaveAdapted);
5. prints a summary table; exit status 0 when every check passed, 1 otherwise, 2 on bad arguments.

The server is always stopped and the link and probe removed, also on Ctrl-C. The throw-away folder
(with ``server.log`` and the runner logs) is deleted after a clean pass and kept after a failure
(or with ``--keep``). Only ``http://127.0.0.1:<port>`` is ever contacted; proxy variables are
dropped from the environments of the server and the runner. Standard library only; POSIX (a symlink
and a process group for the server).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# The one copy of the frontend's widgets_values layout rule (standard library only, like this script).
from headless.convert import to_api_prompt  # noqa: E402
from headless.errors import HeadlessError  # noqa: E402
from headless.nodedefs import (COMBO_CONTROL_VALUES, CONTROL_VALUES, node_defs_from_object_info,  # noqa: E402
                               widget_layout)

PACK_NAME = "comfyui-metagan"
WORKFLOW_DIR = "example_workflows"  # where ComfyUI looks for a pack's templates first
PROBE_NAME = "metagan_check_probe.py"
PROBE_ROUTE = "/metagan_check/probe"
NODE_IDS = ("MetaGANLoader", "MetaGANLoadReferences", "MetaGANFewShotAdapt", "MetaGANSample",
            "MetaGANInterpolate", "MetaGANSaveAdapted")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "ws_proxy", "wss_proxy")

PROBE_SOURCE = r'''
"""Read-only probe written by comfyui-metagan's tools/check_in_comfyui.py (deleted after the check)."""
import os
import sys

from aiohttp import web
from server import PromptServer

NODE_CLASS_MAPPINGS = {}
_REPO = os.path.realpath(%(repo)r)
_STUBS = os.path.join(_REPO, "comfy_stubs")


def _file(module):
    path = getattr(module, "__file__", None)
    if not path:
        locations = list(getattr(module, "__path__", None) or [])
        path = locations[0] if locations else None
    return os.path.realpath(path) if path else None


def _under(path, root):
    return bool(path) and (path == root or path.startswith(root + os.sep))


@PromptServer.instance.routes.get(%(route)r)
async def _metagan_probe(request):
    mods = dict(sys.modules)
    nodes_mod = mods.get("nodes")
    server_mod = mods.get("server")
    pack_key = next((k for k, m in mods.items() if "." not in k and k.rstrip("/").endswith(%(pack)r)), None)
    comfy_env = mods.get(pack_key + ".comfy_env") if pack_key else None
    info = {
        "modules": {name: _file(mods[name]) if name in mods else None
                    for name in ("nodes", "folder_paths", "comfy", "comfy_extras", "server", "execution")},
        "server_nodes_is_sys_nodes": bool(server_mod is not None
                                          and getattr(server_mod, "nodes", None) is nodes_mod),
        "pack_nodes_in_registry": sorted(k for k in getattr(nodes_mod, "NODE_CLASS_MAPPINGS", {})
                                         if k.startswith("MetaGAN")),
        "stubs_on_sys_path": [p for p in sys.path if os.path.realpath(p or os.getcwd()) == _STUBS],
        "stub_modules_loaded": sorted(k for k, m in mods.items() if _under(_file(m), _STUBS)),
        "pack_module": pack_key,
        "repo_modules_outside_pack": sorted(k for k, m in mods.items()
                                            if _under(_file(m), _REPO)
                                            and not (pack_key and (k == pack_key or k.startswith(pack_key + ".")))),
        "find_real_comfyui": comfy_env.find_real_comfyui() if comfy_env else None,
        "using_stubs": comfy_env.using_stubs() if comfy_env else None,
        "meta_gan_paths": None,
        "python": sys.executable,
    }
    fp = mods.get("folder_paths")
    if fp is not None and "meta_gan" in getattr(fp, "folder_names_and_paths", {}):
        paths, exts = fp.folder_names_and_paths["meta_gan"]
        info["meta_gan_paths"] = [list(paths), sorted(exts)]
    return web.json_response(info)
'''


# --- results ----------------------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    ok: bool | None          # None: information / warning only
    detail: str = ""
    seconds: float | None = None
    excerpt: list[str] = field(default_factory=list)


class Report:
    def __init__(self):
        self.results: list[Result] = []

    def add(self, name, ok, detail="", seconds=None, excerpt=None) -> Result:
        r = Result(name, ok, detail, seconds, list(excerpt or []))
        self.results.append(r)
        mark = {True: "PASS", False: "FAIL", None: "WARN"}[ok]
        print(f"[{mark}] {name}: {detail}" + (f" ({seconds:.1f} s)" if seconds is not None else ""), flush=True)
        for line in r.excerpt:
            print(f"       | {line}", flush=True)
        return r

    @property
    def failed(self) -> bool:
        return any(r.ok is False for r in self.results)

    def table(self) -> str:
        rows = [(r.name, {True: "PASS", False: "FAIL", None: "WARN"}[r.ok],
                 "" if r.seconds is None else f"{r.seconds:.1f}", r.detail) for r in self.results]
        w = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
             for i, h in enumerate(("check", "result", "seconds"))]
        lines = [f"{'check':<{w[0]}}  {'result':<{w[1]}}  {'seconds':>{w[2]}}  detail",
                 f"{'-' * w[0]}  {'-' * w[1]}  {'-' * w[2]}  {'-' * 6}"]
        for name, res, sec, detail in rows:
            lines.append(f"{name:<{w[0]}}  {res:<{w[1]}}  {sec:>{w[2]}}  {detail}")
        return "\n".join(lines)


# --- HTTP (127.0.0.1 only) --------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} refused", headers, fp)


class Local:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())

    def get(self, path: str, timeout: float = 60.0) -> tuple[int, bytes]:
        try:
            with self._opener.open(self.base + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read() if exc.fp else b""

    def json(self, path: str, timeout: float = 120.0):
        status, body = self.get(path, timeout)
        if status != 200:
            raise RuntimeError(f"GET {path} answered HTTP {status}: {body[:200]!r}")
        return json.loads(body)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in PROXY_VARS and k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- server -----------------------------------------------------------------------------------------

class Server:
    """ComfyUI's main.py in its own process group, its stdout+stderr going to a log file."""

    def __init__(self, cmd: list[str], cwd: Path, log_path: Path):
        self.cmd, self.cwd, self.log_path = cmd, cwd, log_path
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=clean_env(), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)  # the group this script created for the server
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._log:
            self._log.close()
        return self.proc.returncode


def wait_ready(server: Server, http: Local, timeout: float) -> tuple[bool, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            return False, f"the server exited with status {server.proc.returncode} before it listened"
        try:
            status, _ = http.get("/system_stats", timeout=5)
            if status == 200:
                return True, ""
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(1.0)
    return False, f"the server did not answer /system_stats within {timeout:.0f} s"


# --- checks -----------------------------------------------------------------------------------------

def tail(text: str, n: int = 25) -> list[str]:
    return text.rstrip("\n").splitlines()[-n:]


def check_log(report: Report, log: str, pack_paths: list[str]):
    lines = log.splitlines()
    marks = [p for p in pack_paths if p]
    import_line = next((ln for ln in lines
                        if re.search(r"seconds.*:\s", ln) and ln.rstrip().endswith(tuple(marks))), None)
    failed_lines = [ln for ln in lines if "IMPORT FAILED" in ln and any(m in ln for m in marks)]
    cannot = [ln for ln in lines if ln.startswith("Cannot import") and any(m in ln for m in marks)]
    # tracebacks naming the pack (its link or the repository)
    tb_excerpts = []
    for i, ln in enumerate(lines):
        if ln.startswith("Traceback (most recent call last)"):
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
                j += 1
            block = lines[i:j + 1]
            if any(m in b or PACK_NAME in b for b in block for m in marks):
                tb_excerpts.append(block)
    if failed_lines or cannot or tb_excerpts or import_line is None:
        excerpt = failed_lines + cannot + [x for b in tb_excerpts for x in b][:60]
        if import_line is None and not excerpt:
            excerpt = ["no 'Import times for custom nodes' line names the pack"] + tail(log, 20)
        report.add("server log: pack import", False, "the pack failed to import (or was not loaded)", excerpt=excerpt)
    else:
        report.add("server log: pack import", True, import_line.strip())
    warnings = [ln for ln in lines if ("comfy_env" in ln or "pyproject" in ln or PACK_NAME in ln)
                and re.search(r"warn|error|unable|cannot", ln, re.I) and "IMPORT FAILED" not in ln]
    if warnings:
        report.add("server log: pack warnings", None, f"{len(warnings)} line(s)", excerpt=warnings[:15])


def check_probe(report: Report, probe: dict, comfy_dir: Path, base: Path):
    problems = []
    want = {"nodes": comfy_dir / "nodes.py", "folder_paths": comfy_dir / "folder_paths.py",
            "comfy": comfy_dir / "comfy" / "__init__.py", "server": comfy_dir / "server.py"}
    for name, path in want.items():
        got = probe["modules"].get(name)
        if got is None or os.path.realpath(got) not in (os.path.realpath(path), os.path.realpath(path.parent)):
            problems.append(f"sys.modules[{name!r}] is {got}, not ComfyUI's {path}")
    if not probe.get("server_nodes_is_sys_nodes"):
        problems.append("server.nodes is not sys.modules['nodes']")
    if sorted(probe.get("pack_nodes_in_registry") or []) != sorted(NODE_IDS):
        problems.append(f"ComfyUI's nodes.NODE_CLASS_MAPPINGS has MetaGAN ids {probe.get('pack_nodes_in_registry')}")
    if probe.get("stubs_on_sys_path"):
        problems.append(f"the stubs folder is on sys.path: {probe['stubs_on_sys_path']}")
    if probe.get("stub_modules_loaded"):
        problems.append(f"stub modules were imported: {probe['stub_modules_loaded'][:8]}")
    if probe.get("repo_modules_outside_pack"):
        problems.append("repository modules imported outside the pack package: "
                        f"{probe['repo_modules_outside_pack'][:8]}")
    if probe.get("using_stubs") is not False:
        problems.append(f"comfy_env.using_stubs() is {probe.get('using_stubs')!r}")
    real = probe.get("find_real_comfyui")
    if not real or os.path.realpath(real) != os.path.realpath(comfy_dir):
        problems.append(f"comfy_env.find_real_comfyui() is {real!r}")
    detail = (f"nodes={probe['modules'].get('nodes')}; stubs on sys.path: {len(probe.get('stubs_on_sys_path') or [])}; "
              f"stub modules: {len(probe.get('stub_modules_loaded') or [])}; find_real_comfyui={real}")
    report.add("comfy_env is a no-op in ComfyUI", not problems, detail if not problems else "; ".join(problems))
    paths = (probe.get("meta_gan_paths") or [[None]])[0]
    expected = str(base / "models" / "meta_gan")
    ok = bool(paths) and paths[0] is not None and os.path.realpath(paths[0]) == os.path.realpath(expected)
    report.add("meta_gan model folder", ok, f"{paths} (saving goes to the first; expected {expected})")


def check_object_info(report: Report, info: dict):
    for node_id in NODE_IDS:
        d = info.get(node_id)
        if d is None:
            report.add(f"/object_info {node_id}", False, "not listed")
            continue
        problems = []
        if not str(d.get("description") or "").strip():
            problems.append("no description")
        n_inputs = 0
        for section in ("required", "optional"):
            for name, spec in ((d.get("input") or {}).get(section) or {}).items():
                n_inputs += 1
                opts = (spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict)
                        else {})
                if not str(opts.get("tooltip") or "").strip():
                    problems.append(f"input {name!r} has no tooltip")
        outs = d.get("output") or []
        tips = d.get("output_tooltips")
        if tips is None:
            problems.append("no OUTPUT_TOOLTIPS")
        elif len(tips) != len(outs) or not all(str(t or "").strip() for t in tips):
            problems.append(f"OUTPUT_TOOLTIPS {tips!r} do not cover the {len(outs)} output(s)")
        if d.get("python_module") != f"custom_nodes.{PACK_NAME}":
            problems.append(f"python_module is {d.get('python_module')!r}")
        report.add(f"/object_info {node_id}", not problems,
                   "; ".join(problems) if problems else
                   f"'{d.get('display_name')}', {n_inputs} input(s) with tooltips, {len(outs)} output tooltip(s), "
                   f"category {d.get('category')}")


def check_templates(report: Report, http: Local):
    names = sorted(p.stem for p in (REPO / WORKFLOW_DIR).glob("*.json"))
    try:
        listing = http.json("/workflow_templates")
    except Exception as exc:  # noqa: BLE001 - report whatever went wrong
        report.add("/workflow_templates", False, str(exc))
        return
    listed = sorted(listing.get(PACK_NAME) or [])
    report.add("/workflow_templates", listed == names,
               f"{PACK_NAME}: {listed}" + ("" if listed == names else f" (expected {names})"))
    for name in names:
        status, body = http.get(f"/api/workflow_templates/{PACK_NAME}/{name}.json")
        try:
            same = status == 200 and json.loads(body) == json.loads((REPO / WORKFLOW_DIR / f"{name}.json").read_text())
        except ValueError:
            same = False
        report.add(f"template {name}.json served", same,
                   f"HTTP {status}, {len(body)} bytes" + ("" if same else ", differs from the file"))
    thumbs = [n for n in names if not any((REPO / WORKFLOW_DIR / f"{n}.{ext}").exists() for ext in ("jpg",))]
    if thumbs:
        report.add("template thumbnails", None,
                   f"no {WORKFLOW_DIR}/<name>.jpg for {thumbs}: the template browser "
                   "requests /api/workflow_templates/<pack>/<name>.jpg and shows a blank card")


# -- UI workflows vs the frontend's schema (ComfyUI_frontend 1.2x: zComfyWorkflow for version 0.4) --

def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _vec2(v) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_num(x) for x in v) or (
        isinstance(v, dict) and _is_num(v.get("0")) and _is_num(v.get("1")))


def _node_id(v) -> bool:
    return _is_int(v) or isinstance(v, str)


def _dtype(v) -> bool:
    return isinstance(v, str) or _is_num(v) or (isinstance(v, list) and all(isinstance(x, str) for x in v))


def _check_value(kind, typ, opts, value) -> str | None:
    if kind == "control":
        allowed = COMBO_CONTROL_VALUES if isinstance(typ, list) or typ == "COMBO" else CONTROL_VALUES
        return None if value in allowed else f"control_after_generate value {value!r} not in {sorted(allowed)}"
    if kind in ("filter", "upload"):
        return None
    options = typ if isinstance(typ, list) else opts.get("options") if typ == "COMBO" else None
    if options is not None:
        return None if value in options else f"{value!r} is not one of the {len(options)} choices {options[:6]}"
    if typ == "INT":
        if not _is_int(value):
            return f"{value!r} is not an integer"
    elif typ == "FLOAT":
        if not _is_num(value):
            return f"{value!r} is not a number"
    elif typ == "BOOLEAN":
        return None if isinstance(value, bool) else f"{value!r} is not a boolean"
    elif typ == "STRING":
        return None if isinstance(value, str) else f"{value!r} is not a string"
    if typ in ("INT", "FLOAT"):
        lo, hi = opts.get("min"), opts.get("max")
        if lo is not None and value < lo or hi is not None and value > hi:
            return f"{value!r} is outside [{lo}, {hi}]"
    return None


def check_ui_workflow(path: Path, info: dict) -> tuple[list[str], list[str], dict]:
    """Problems, notes, and the API prompt the frontend would build from the file (graphToPrompt)."""
    problems, notes = [], []
    try:
        wf = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"unreadable: {exc}"], notes, {}
    if not isinstance(wf, dict) or not _is_num(wf.get("version")):
        return ["no numeric 'version' (the frontend refuses the file)"], notes, {}
    if wf["version"] == 1:
        return ["schema version 1 (links as objects): not checked by this script"], notes, {}
    # zComfyWorkflow (0.4)
    if "id" in wf and not (isinstance(wf["id"], str) and UUID_RE.match(wf["id"])):
        problems.append(f"id {wf['id']!r} is not a UUID")
    for key, test in (("last_node_id", _node_id), ("last_link_id", _is_num)):
        if not test(wf.get(key)):
            problems.append(f"{key} missing or of the wrong type")
    if "revision" in wf and not _is_num(wf["revision"]):
        problems.append("revision is not a number")
    for key in ("config", "extra"):
        if wf.get(key) is not None and not isinstance(wf[key], dict):
            problems.append(f"{key} is not an object")
    ds = (wf.get("extra") or {}).get("ds")
    if ds is not None and not (isinstance(ds, dict) and _is_num(ds.get("scale")) and _vec2(ds.get("offset"))):
        problems.append("extra.ds needs scale (number) and offset ([x, y])")
    if "groups" in wf and not isinstance(wf["groups"], list):
        problems.append("groups is not a list")
    nodes = wf.get("nodes")
    links = wf.get("links")
    if not isinstance(nodes, list) or not isinstance(links, list):
        return problems + ["nodes and links must be lists"], notes, {}
    by_id = {}
    for n in nodes:
        where = f"node {n.get('id')!r}" if isinstance(n, dict) else "a node"
        if not isinstance(n, dict):
            problems.append(f"{where} is not an object")
            continue
        for key, test in (("id", _node_id), ("type", lambda v: isinstance(v, str)), ("pos", _vec2), ("size", _vec2),
                          ("flags", lambda v: isinstance(v, dict)), ("order", _is_num), ("mode", _is_num),
                          ("properties", lambda v: isinstance(v, dict))):
            if not test(n.get(key)):
                problems.append(f"{where}: '{key}' missing or of the wrong type")
        for key in ("collapsed", "pinned", "allow_interaction", "horizontal", "skip_repeated_outputs"):
            if key in (n.get("flags") or {}) and not isinstance(n["flags"][key], bool):
                problems.append(f"{where}: flags.{key} is not a boolean")
        for slot in n.get("inputs") or []:
            if not (isinstance(slot, dict) and isinstance(slot.get("name"), str) and _dtype(slot.get("type"))
                    and (slot.get("link") is None or _is_num(slot.get("link")))):
                problems.append(f"{where}: malformed input slot {slot!r}")
        for slot in n.get("outputs") or []:
            if not (isinstance(slot, dict) and isinstance(slot.get("name"), str) and _dtype(slot.get("type"))
                    and (slot.get("links") is None
                         or (isinstance(slot["links"], list) and all(_is_num(x) for x in slot["links"])))):
                problems.append(f"{where}: malformed output slot {slot!r}")
        if "widgets_values" in n and not isinstance(n["widgets_values"], (list, dict)):
            problems.append(f"{where}: widgets_values is neither a list nor an object")
        if n.get("id") in by_id:
            problems.append(f"node id {n.get('id')!r} used twice")
        by_id[n.get("id")] = n
    numeric_ids = [i for i in by_id if _is_int(i)]
    if numeric_ids and _is_int(wf.get("last_node_id")) and wf["last_node_id"] < max(numeric_ids):
        problems.append(f"last_node_id {wf['last_node_id']} < largest node id {max(numeric_ids)}")
    link_by_id = {}
    for link in links:
        if not (isinstance(link, list) and len(link) == 6 and _is_num(link[0]) and _node_id(link[1])
                and _is_int(link[2]) and _node_id(link[3]) and _is_int(link[4]) and _dtype(link[5])):
            problems.append(f"link {link!r} is not [id, origin_id, origin_slot, target_id, target_slot, type]")
            continue
        if link[0] in link_by_id:
            problems.append(f"link id {link[0]} used twice")
        link_by_id[link[0]] = link
        lid, oid, oslot, tid, tslot, ltype = link
        src, dst = by_id.get(oid), by_id.get(tid)
        if src is None or dst is None:
            problems.append(f"link {lid} joins a missing node ({oid} -> {tid})")
            continue
        outs, ins = src.get("outputs") or [], dst.get("inputs") or []
        if oslot >= len(outs) or lid not in (outs[oslot].get("links") or []):
            problems.append(f"link {lid}: node {oid} output {oslot} does not list it")
        elif outs[oslot].get("type") not in (ltype, "*"):
            problems.append(f"link {lid}: type {ltype!r} but node {oid} output {oslot} is {outs[oslot].get('type')!r}")
        if tslot >= len(ins) or ins[tslot].get("link") != lid:
            problems.append(f"link {lid}: node {tid} input {tslot} does not point back at it")
        elif ins[tslot].get("type") not in (ltype, "*"):
            problems.append(f"link {lid}: type {ltype!r} but node {tid} input {tslot} is {ins[tslot].get('type')!r}")
    if link_by_id and _is_num(wf.get("last_link_id")) and wf["last_link_id"] < max(link_by_id):
        problems.append(f"last_link_id {wf['last_link_id']} < largest link id {max(link_by_id)}")
    for n in by_id.values():
        for slot in n.get("inputs") or []:
            if slot.get("link") is not None and slot["link"] not in link_by_id:
                problems.append(f"node {n['id']} input {slot.get('name')!r} points at missing link {slot['link']}")
        for slot in n.get("outputs") or []:
            for lid in slot.get("links") or []:
                if lid not in link_by_id:
                    problems.append(f"node {n['id']} output {slot.get('name')!r} lists missing link {lid}")
    # against the node definitions the server gave
    prompt = {}
    for n in sorted(by_id.values(), key=lambda n: (str(type(n.get("id"))), n.get("id"))):
        nid, ntype = n.get("id"), n.get("type")
        d = info.get(ntype)
        if d is None:
            problems.append(f"node {nid}: type {ntype!r} is not known to the server (the frontend shows it as missing)")
            continue
        props = n.get("properties") or {}
        if props.get("Node name for S&R") not in (None, ntype):
            notes.append(f"node {nid}: 'Node name for S&R' is {props.get('Node name for S&R')!r}")
        try:
            layout = widget_layout(node_defs_from_object_info({ntype: d})[ntype])
        except HeadlessError as exc:
            problems.append(f"node {nid}: the server's definition of {ntype!r} is unreadable: {exc}")
            continue
        values = n.get("widgets_values")
        if isinstance(values, dict):
            notes.append(f"node {nid}: widgets_values is an object (only custom widgets do that)")
            values = []
        values = values or []
        if len(values) != len(layout):
            problems.append(f"node {nid} ({ntype}): {len(values)} widgets_values "
                            f"but the frontend creates {len(layout)} "
                            f"widget(s) {[w.input if w.kind == 'value' else f'{w.kind}({w.input})' for w in layout]}")
        api_inputs = {}
        for w, value in zip(layout, values):
            err = _check_value(w.kind, w.type, w.options, value)
            if err:
                problems.append(f"node {nid} ({ntype}) widget {w.input!r}"
                                f"{'' if w.kind == 'value' else ' ' + w.kind}: {err}")
            if w.kind == "value":
                api_inputs[w.input] = value
        all_inputs = {**((d.get("input") or {}).get("required") or {}),
                      **((d.get("input") or {}).get("optional") or {})}
        required = (d.get("input") or {}).get("required") or {}
        linked = set()
        for slot in n.get("inputs") or []:
            name = slot.get("name")
            spec = all_inputs.get(name)
            if spec is None:
                problems.append(f"node {nid} ({ntype}): input slot {name!r} is not an input of {ntype}")
                continue
            want = spec[0] if isinstance(spec, (list, tuple)) else spec
            want = "COMBO" if isinstance(want, list) else want
            if slot.get("type") not in (want, "*") and not (want == "COMBO" and isinstance(slot.get("type"), list)):
                problems.append(f"node {nid} ({ntype}): input {name!r} has type {slot.get('type')!r}, "
                                f"the node says {want!r}")
            if slot.get("link") is not None and slot["link"] in link_by_id:
                link = link_by_id[slot["link"]]
                api_inputs[name] = [str(link[1]), link[2]]
                linked.add(name)
        widget_names = {w.input for w in layout if w.kind == "value"}
        for name in required:
            if name not in widget_names and name not in linked:
                problems.append(f"node {nid} ({ntype}): required input {name!r} is not connected")
        outs = n.get("outputs") or []
        want_outs = list(d.get("output") or [])
        if [o.get("type") for o in outs] != want_outs:
            problems.append(f"node {nid} ({ntype}): outputs {[o.get('type') for o in outs]} "
                            f"but the node has {want_outs}")
        if n.get("mode", 0) == 0:
            prompt[str(nid)] = {"class_type": ntype, "inputs": api_inputs}
    return problems, notes, prompt


def _same_value(a, b) -> bool:
    if _is_num(a) and _is_num(b):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return a == b


def compare_prompts(a: dict, b: dict) -> list[str]:
    diffs = []
    for nid in sorted(set(a) | set(b), key=str):
        if nid not in a or nid not in b:
            diffs.append(f"node {nid} only in {'the conversion' if nid in a else 'the API file'}")
            continue
        if a[nid].get("class_type") != b[nid].get("class_type"):
            diffs.append(f"node {nid}: class {a[nid].get('class_type')} vs {b[nid].get('class_type')}")
        ia, ib = a[nid].get("inputs") or {}, b[nid].get("inputs") or {}
        for k in sorted(set(ia) | set(ib)):
            if not _same_value(ia.get(k), ib.get(k)):
                diffs.append(f"node {nid}.{k}: {ia.get(k)!r} vs {ib.get(k)!r}")
    return diffs


def check_ui_workflows(report: Report, info: dict):
    try:
        node_defs = node_defs_from_object_info(info)
    except HeadlessError as exc:
        node_defs = None
        report.add("runner conversion available", None, f"the server's /object_info is unreadable: {exc}")
    for path in sorted((REPO / WORKFLOW_DIR).glob("*.json")):
        problems, notes, frontend_prompt = check_ui_workflow(path, info)
        report.add(f"UI {path.name}: frontend schema", not problems,
                   "; ".join(problems[:6]) if problems else
                   f"version 0.4, {len(frontend_prompt)} nodes; "
                   "links, slots, widgets_values (count and values) consistent"
                   + (f" (notes: {'; '.join(notes)})" if notes else ""))
        twin = REPO / WORKFLOW_DIR / "api" / path.name
        if not twin.exists():
            report.add(f"UI {path.name}: API twin", None,
                       f"no {WORKFLOW_DIR}/api/{path.name}: its conversion is not run")
            continue
        api = json.loads(twin.read_text())
        diffs = compare_prompts(frontend_prompt, api) if frontend_prompt else ["not converted"]
        if node_defs is not None:
            conv = to_api_prompt(json.loads(path.read_text()), node_defs)
            if conv.problems:
                diffs.append(f"run_workflow.py conversion problems: {[str(p) for p in conv.problems]}")
            else:
                diffs += [f"run_workflow.py: {d}" for d in compare_prompts(conv.prompt, api)]
        report.add(f"UI {path.name}: converts to api/{path.name}", not diffs,
                   "; ".join(diffs[:6]) if diffs else "frontend-rule conversion and run_workflow.py conversion both "
                                                      "equal the API file (which is POSTed below)")


# -- running the API workflows -----------------------------------------------------------------------

def _png_size(data: bytes):
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _png_text_keys(data: bytes) -> list[str]:
    keys, pos = [], 8
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        if ctype == b"tEXt":
            keys.append(data[pos + 8:pos + 8 + length].split(b"\0", 1)[0].decode("latin-1"))
        pos += 12 + length
        if ctype == b"IEND":
            break
    return keys


def _webp_frames(data: bytes):
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    frames, pos = 0, 12
    while pos + 8 <= len(data):
        ctype, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if ctype == b"ANMF":
            frames += 1
        pos += 8 + size + (size & 1)
    return frames or 1


def _safetensors_meta(path: Path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        if n > 100_000_000:
            raise ValueError("header too large")
        header = json.loads(f.read(n))
    return header.get("__metadata__") or {}, len([k for k in header if k != "__metadata__"])


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def expected_outputs(prompt: dict) -> list[tuple[str, str, str, int | None]]:
    """(node id, kind, filename prefix, expected count) for each saving node of an API prompt."""
    out = []
    for nid, node in prompt.items():
        ct, inputs = node.get("class_type"), node.get("inputs") or {}
        count = None
        src = inputs.get("images")
        if isinstance(src, list) and len(src) == 2:
            up = prompt.get(str(src[0])) or {}
            if up.get("class_type") == "MetaGANSample" and _is_int((up.get("inputs") or {}).get("count")):
                count = up["inputs"]["count"]
            elif up.get("class_type") == "MetaGANFewShotAdapt" and src[1] == 1:
                count = 1  # the preview grid
            elif up.get("class_type") == "MetaGANInterpolate":
                count = (up.get("inputs") or {}).get("frames")
        if ct == "SaveImage":
            out.append((nid, "png", inputs.get("filename_prefix", "ComfyUI"), count))
        elif ct == "SaveAnimatedWEBP":
            out.append((nid, "webp", inputs.get("filename_prefix", "ComfyUI"), count))
        elif ct == "MetaGANSaveAdapted":
            out.append((nid, "safetensors", inputs.get("filename_prefix", ""), 1))
        elif ct == "PreviewImage":
            out.append((nid, "preview", "", count))
    return out


def run_api_workflow(report: Report, wf: Path, url: str, base: Path, runner_python: str, timeout: float,
                     server: Server, saved_models: list[str] | None = None, label: str | None = None) -> bool:
    """Run one API workflow with run_workflow.py --server and check the files it made; True if it ran."""
    saved_models = [] if saved_models is None else saved_models
    name = wf.stem
    out_dir = base / "runner-output" / name
    log_path = base / f"runner-{name}.log"
    prompt = json.loads(wf.read_text())
    before_models = _files(base / "models" / "meta_gan")
    before_output = _files(base / "output")
    before_temp = _files(base / "temp")
    log_offset = len(server.log_text())
    cmd = [runner_python, str(REPO / "run_workflow.py"), str(wf), "--server", url, "--output", str(out_dir),
           "--timeout", str(int(timeout))]
    print(f"$ {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, cwd=base, env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        lines: list[str] = []

        def pump():
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                log.write(line)
                print(f"    | {line.rstrip()}", flush=True)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        reader.join(10)
    seconds = time.perf_counter() - t0
    server_part = server.log_text()[log_offset:]
    if rc != 0:
        server_errors = [ln for ln in server_part.splitlines() if ln.strip()][-30:]
        report.add(label or f"run {wf.name}", False, f"run_workflow.py exited {rc}", seconds,
                   excerpt=lines[-15:] + ["-- server log --"] + server_errors)
        return False
    executed = re.findall(r"Prompt executed in ([0-9.:]+)", server_part)
    report.add(label or f"run {wf.name}", True,
               "run_workflow.py exit 0" + (f"; server: 'Prompt executed in {executed[-1]}'" if executed else ""),
               seconds)
    # files
    new_output = _files(base / "output") - before_output
    new_models = _files(base / "models" / "meta_gan") - before_models
    new_temp = _files(base / "temp") - before_temp
    downloaded = _files(out_dir)
    for nid, kind, prefix, count in expected_outputs(prompt):
        sub, stem = os.path.split(prefix)
        label = f"  {name}: node {nid} {prompt[nid]['class_type']}"
        if kind == "preview":
            pngs = [p for p in new_temp if p.suffix == ".png"]
            report.add(label, bool(pngs), f"{len(pngs)} preview PNG(s) in the server's temp folder (not downloaded)")
            continue
        pool = new_models if kind == "safetensors" else new_output
        mine = sorted(p for p in pool if p.suffix == f".{kind}" and str(p.parent) == (sub or ".")
                      and p.name.startswith(stem))
        problems, facts = [], []
        if not mine:
            problems.append(f"no new .{kind} with prefix {prefix!r}")
        if kind == "png":
            if count is not None and len(mine) != count:
                problems.append(f"{len(mine)} PNG(s), expected {count}")
            sizes = set()
            for p in mine:
                data = (base / "output" / p).read_bytes()
                size = _png_size(data)
                if size is None:
                    problems.append(f"{p} is not a PNG")
                sizes.add(size)
                if p not in downloaded or (out_dir / p).read_bytes() != data:
                    problems.append(f"{p} was not downloaded intact by the runner")
            keys = _png_text_keys((base / "output" / mine[0]).read_bytes()) if mine else []
            facts.append(f"{len(mine)} PNG(s) {sorted(f'{w}x{h}' for w, h in sizes if w)} in output/{sub}, "
                         f"downloaded; metadata {keys}")
        elif kind == "webp":
            for p in mine:
                data = (base / "output" / p).read_bytes()
                frames = _webp_frames(data)
                if frames is None:
                    problems.append(f"{p} is not a WEBP")
                elif count is not None and frames != count:
                    problems.append(f"{p} has {frames} frame(s), expected {count}")
                if p not in downloaded or (out_dir / p).read_bytes() != data:
                    problems.append(f"{p} was not downloaded intact by the runner")
                facts.append(f"{p} ({len(data)} bytes, {frames} frame(s)), downloaded")
        elif kind == "safetensors":
            saved_models.extend(str(p).replace(os.sep, "/") for p in mine)
            for p in mine:
                try:
                    meta, tensors = _safetensors_meta(base / "models" / "meta_gan" / p)
                    facts.append(f"models/meta_gan/{p} ({(base / 'models' / 'meta_gan' / p).stat().st_size} bytes, "
                                 f"{tensors} tensors, model_kind={meta.get('model_kind')!r})")
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"{p} is not a readable .safetensors: {exc}")
        report.add(label, not problems, "; ".join(problems + facts))
    return True


def check_saved_model_loads(report: Report, http: Local, name: str, url: str, base: Path, runner_python: str,
                            timeout: float, server: Server):
    """The saved model is listed by Load MetaGAN and loads (a delta finds its base) and samples."""
    try:
        choices = http.json("/object_info/MetaGANLoader")["MetaGANLoader"]["input"]["required"]["ckpt_name"][0]
    except Exception as exc:  # noqa: BLE001
        report.add(f"saved {name} listed by Load MetaGAN", False, str(exc))
        return
    report.add(f"saved {name} listed by Load MetaGAN", name in choices, f"ckpt_name choices: {choices}")
    if name not in choices:
        return
    prompt = {"1": {"class_type": "MetaGANLoader", "inputs": {"ckpt_name": name}},
              "2": {"class_type": "MetaGANSample",
                    "inputs": {"meta_gan": ["1", 0], "seed": 7, "count": 4, "truncation": 1.0}},
              "3": {"class_type": "SaveImage",
                    "inputs": {"images": ["2", 0], "filename_prefix": "metagan_check/reloaded"}}}
    wf = base / "reload_saved_model.json"
    wf.write_text(json.dumps(prompt, indent=1), encoding="utf-8")
    run_api_workflow(report, wf, url, base, runner_python, timeout, server, label=f"run: load {name} and sample 4")


# --- main -------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tools/check_in_comfyui.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--comfyui", required=True, metavar="DIR", help="a ComfyUI checkout (the folder with main.py)")
    p.add_argument("--python", required=True, metavar="PATH",
                   help="the Python of ComfyUI's environment (venv/bin/python)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--runner-python", default=sys.executable, metavar="PATH",
                   help="Python that runs run_workflow.py (default: this one; with websocket-client it follows "
                        "progress over the websocket, else it polls)")
    p.add_argument("--startup-timeout", type=float, default=600, metavar="S",
                   help="seconds to wait for the server (600)")
    p.add_argument("--workflow-timeout", type=float, default=1800, metavar="S", help="seconds per API workflow (1800)")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="run only this API workflow (file stem; repeatable)")
    p.add_argument("--skip-run", action="store_true", help="do everything except running the API workflows")
    p.add_argument("--keep", action="store_true",
                   help="keep the throw-away base folder (logs, outputs) even after a pass")
    p.add_argument("--legacy-dirs", action="store_true",
                   help="do not use --base-directory even if ComfyUI has it (tests the path for older ComfyUI)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    comfy = Path(args.comfyui).expanduser().resolve()
    if not (comfy / "main.py").is_file() or not (comfy / "nodes.py").is_file() or not (comfy / "comfy").is_dir():
        print(f"error: {comfy} is not a ComfyUI checkout (no main.py, nodes.py, comfy/)", file=sys.stderr)
        return 2
    python = shutil.which(args.python) or args.python
    if not os.access(python, os.X_OK):
        print(f"error: {args.python} is not an executable Python", file=sys.stderr)
        return 2
    cli_args = (comfy / "comfy" / "cli_args.py").read_text(encoding="utf-8", errors="replace")
    has = {flag: f'"{flag}"' in cli_args
           for flag in ("--base-directory", "--whitelist-custom-nodes", "--database-url",
                        "--disable-api-nodes", "--user-directory", "--disable-auto-launch")}
    use_base = has["--base-directory"] and not args.legacy_dirs
    version = re.search(r'__version__\s*=\s*"([^"]+)"', (comfy / "comfyui_version.py").read_text()) \
        if (comfy / "comfyui_version.py").exists() else None

    report = Report()
    t_start = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix="metagan-comfy-check-")).resolve()
    for sub in ("custom_nodes", "input", "output", "temp", "user", "models/meta_gan"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    nodes_dir = base / "custom_nodes" if use_base else comfy / "custom_nodes"
    link = nodes_dir / PACK_NAME
    probe = nodes_dir / PROBE_NAME
    created: list[Path] = []
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    http = Local(port)
    server = None
    log_path = base / "server.log"

    def on_term(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    print(f"ComfyUI {version.group(1) if version else '?'} at {comfy}; python {python}; pack {REPO}")
    print(f"throw-away base folder {base}; server {url}")
    try:
        for path in (link, probe):
            if os.path.lexists(path):
                report.add("setup", False, f"{path} already exists; remove it or use another ComfyUI")
                return 1
        os.symlink(REPO, link, target_is_directory=True)
        created.append(link)
        probe.write_text(PROBE_SOURCE % {"repo": str(REPO), "route": PROBE_ROUTE, "pack": PACK_NAME}, encoding="utf-8")
        created.append(probe)
        cmd = [python, str(comfy / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(port)]
        if has["--disable-auto-launch"]:
            cmd.append("--disable-auto-launch")
        if use_base:
            cmd += ["--base-directory", str(base)]
        else:
            cmd += ["--output-directory", str(base / "output"), "--input-directory", str(base / "input"),
                    "--temp-directory", str(base)]  # ComfyUI appends /temp
            if has["--user-directory"]:
                cmd += ["--user-directory", str(base / "user")]
        # meta_gan must save into the throw-away folder: say so explicitly when models_dir is the user's
        # (no --base-directory) or when the user's extra_model_paths.yaml might register a meta_gan folder.
        if not use_base or (comfy / "extra_model_paths.yaml").exists():
            yaml = base / "extra_model_paths.yaml"
            yaml.write_text(f"metagan_check:\n  base_path: {json.dumps(str(base))}\n  is_default: true\n"
                            f"  meta_gan: models/meta_gan\n", encoding="utf-8")
            cmd += ["--extra-model-paths-config", str(yaml)]
        if has["--whitelist-custom-nodes"]:
            cmd += ["--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_NAME, PROBE_NAME]
        if has["--database-url"]:
            cmd += ["--database-url", f"sqlite:///{base / 'user' / 'comfyui.db'}"]
        if has["--disable-api-nodes"]:
            cmd.append("--disable-api-nodes")
        print("$ " + " ".join(cmd), flush=True)
        server = Server(cmd, base, log_path)
        t0 = time.perf_counter()
        server.start()
        ok, why = wait_ready(server, http, args.startup_timeout)
        report.add("server start", ok, why or f"listening on {url}", time.perf_counter() - t0,
                   excerpt=[] if ok else tail(server.log_text(), 40))
        if not ok:
            check_log(report, server.log_text(), [str(link), str(REPO)])
            return 1
        check_log(report, server.log_text(), [str(link), str(REPO)])
        try:
            check_probe(report, http.json(PROBE_ROUTE), comfy, base)
        except Exception as exc:  # noqa: BLE001
            report.add("comfy_env is a no-op in ComfyUI", False, f"probe failed: {exc}")
        t0 = time.perf_counter()
        info = http.json("/object_info", timeout=300)
        report.add("/object_info", True, f"{len(info)} node types", time.perf_counter() - t0)
        check_object_info(report, info)
        errors = [ln for ln in server.log_text().splitlines()
                  if "[ERROR] An error occurred while retrieving information" in ln]
        if errors:
            report.add("/object_info errors in log", False, f"{len(errors)}", excerpt=errors[:10])
        check_templates(report, http)
        check_ui_workflows(report, info)
        if not args.skip_run:
            workflows = sorted((REPO / WORKFLOW_DIR / "api").glob("*.json"))
            if args.only:
                workflows = [w for w in workflows if w.stem in args.only]
            if not workflows:
                report.add("API workflows", False, f"none found/selected in {WORKFLOW_DIR}/api")
            for wf in workflows:
                if not server.alive():
                    report.add(f"run {wf.name}", False, "the server is no longer running",
                               excerpt=tail(server.log_text()))
                    continue
                saved: list[str] = []
                if run_api_workflow(report, wf, url, base, args.runner_python, args.workflow_timeout, server, saved):
                    for name in saved:
                        check_saved_model_loads(report, http, name, url, base, args.runner_python,
                                                args.workflow_timeout, server)
        exceptions = server.log_text().count("!!! Exception during processing !!!")
        if exceptions:
            report.add("server log: execution", False, f"{exceptions} exception(s) during processing",
                       excerpt=[ln for ln in server.log_text().splitlines() if "Error" in ln or "error" in ln][:15])
    except KeyboardInterrupt:
        report.add("interrupted", False, "stopped by a signal")
    except Exception as exc:  # noqa: BLE001 - report, then clean up
        import traceback
        report.add("checker error", False, f"{type(exc).__name__}: {exc}",
                   excerpt=traceback.format_exc().splitlines()[-12:])
    finally:
        if server is not None:
            rc = server.stop()
            print(f"server stopped (exit status {rc})", flush=True)
        for path in reversed(created):
            try:
                if path.is_symlink() or path.is_file():
                    path.unlink()
            except OSError as exc:
                print(f"warning: could not remove {path}: {exc}", file=sys.stderr)
        signal.signal(signal.SIGTERM, previous)
    total = time.perf_counter() - t_start
    print()
    print(report.table())
    print(f"\ntotal {total:.0f} s; {'FAILED' if report.failed else 'all checks passed'}")
    if report.failed or args.keep:
        print(f"logs and outputs kept in {base} (server.log, runner-*.log, runner-output/)")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
