"""Command line of ``run_workflow.py``: run a ComfyUI workflow file without ComfyUI, or on a server.

Exit status: 0 success; 1 a node failed, a pack could not load or the server failed; 2 the
workflow or the command line is invalid (nothing ran); 130 interrupted.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import traceback
from typing import TextIO

from tqdm import tqdm

from .client import ComfyClient, run_on_server
from .convert import load_workflow, to_api_prompt
from .errors import ExecutionInterrupted, HeadlessError, NodeExecutionError, Problem, ServerError, WorkflowError
from .execute import run_prompt
from .nodedefs import build_registry, node_defs_from_object_info
from .validate import node_title, validate_prompt

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_workflow.py",
        description="Run a ComfyUI workflow (UI or API format JSON, or a PNG saved by ComfyUI) without "
                    "ComfyUI, or on a running ComfyUI with --server.")
    parser.add_argument("workflow", metavar="WORKFLOW", help="workflow .json (UI or API format) or a ComfyUI PNG")
    parser.add_argument("--output", metavar="DIR", default="output",
                        help="folder for saved images (default: ./output)")
    parser.add_argument("--input", metavar="DIR", default=None,
                        help="folder LoadImage reads from (default: the stubs' input folder, comfy_home/input)")
    parser.add_argument("--server", metavar="URL", default=None,
                        help="run on this ComfyUI server (e.g. http://127.0.0.1:8188) and download the results")
    parser.add_argument("--pack", metavar="DIR", action="append", default=[],
                        help="also load the node pack in DIR (repeatable)")
    parser.add_argument("--no-default-pack", action="store_true",
                        help=f"do not load the pack this runner belongs to ({REPO_ROOT})")
    parser.add_argument("--check", action="store_true", help="validate only; run nothing")
    parser.add_argument("--strict", action="store_true",
                        help="also fail on problems in nodes that feed no output")
    parser.add_argument("--cpu", action="store_true", help="compute on the CPU even if a GPU is available")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=None,
                        help="with --server: give up waiting after this long")
    parser.add_argument("--debug", action="store_true", help="print tracebacks of failures")
    return parser


class ProgressPrinter:
    """Prints run events to a stream: one line per node, and the progress of long steps.

    On a terminal a step's progress is a tqdm bar (what ComfyUI itself uses); elsewhere (a log
    file, a pipe, CI) it is a plain line at every quarter and at the end, in tqdm's counter format
    (``  progress 3/12 [00:01<00:03, 2.95it/s]``), so logs carry no carriage-return frames.
    """

    def __init__(self, stream: TextIO = sys.stderr, titles: dict[str, str] | None = None):
        self.stream = stream
        self.titles = dict(titles or {})  # node id -> title, for events that carry only the id
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.total = 0
        self._bar: tqdm | None = None            # the open terminal bar
        self._bar_node: str | None = None
        self._started: dict[str, float] = {}     # node -> when its progress began (plain lines)
        self._last_quarter: dict[str, int] = {}

    def _end_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._bar_node = None

    def _progress(self, node: str, value: int, total: int) -> None:
        if self.tty:
            bar = self._bar
            if bar is None or self._bar_node != node or bar.total != total or value < bar.n:
                self._end_bar()
                bar = self._bar = tqdm(total=total, file=self.stream, desc="  progress", unit="step",
                                       leave=True, dynamic_ncols=True, mininterval=0.1)
                self._bar_node = node
            bar.update(value - bar.n)
            if value >= total:
                self._end_bar()
            return
        now = time.monotonic()
        started = self._started.setdefault(node, now)
        quarter = int(4 * value / total)
        if quarter > self._last_quarter.get(node, 0) or value >= total:
            self._last_quarter[node] = quarter
            counter = tqdm.format_meter(value, total, now - started, unit="step",
                                        bar_format="{n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]")
            print(f"  progress {counter}", file=self.stream, flush=True)
            if value >= total:
                self._last_quarter.pop(node, None)
                self._started.pop(node, None)

    def __call__(self, event: str, data: dict) -> None:
        if event == "execution_start":
            self.total = len(data.get("nodes") or [])
        elif event == "queued":
            print(f"queued as prompt {data['prompt_id']}", file=self.stream, flush=True)
        elif event == "executing":
            self._end_bar()
            index = data.get("index")
            count = f"[{index + 1}/{data['total']}] " if index is not None else ""
            label = data.get("title") or self.titles.get(str(data.get("node")), "")
            print(f"{count}node {data['node']} {label}".rstrip(), file=self.stream, flush=True)
        elif event == "progress":
            total = data.get("max", 0) or 1
            self._progress(str(data.get("node")), min(int(data.get("value") or 0), total), total)
        elif event == "execution_cached":
            nodes = data.get("nodes") or []
            if nodes:
                print(f"cached on the server: {', '.join(map(str, nodes))}", file=self.stream, flush=True)
        elif event in ("execution_success", "execution_error", "execution_interrupted"):
            self._end_bar()


def _print_problems(problems: list[Problem], stream: TextIO) -> None:
    for p in problems:
        print(str(p), file=stream)


def _sigint_interrupts():
    """First Ctrl-C asks the run to stop (``interrupt_current_processing``); a second one aborts."""
    import comfy.model_management as mm

    presses = {"n": 0}

    def handler(signum, frame):
        presses["n"] += 1
        if presses["n"] > 1:
            raise KeyboardInterrupt
        print("\ninterrupt requested: stopping at the next check (Ctrl-C again to abort)", file=sys.stderr, flush=True)
        mm.interrupt_current_processing(True)

    try:
        return signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (e.g. called from a test runner thread)
        return None


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Entry point of ``run_workflow.py``; returns the exit status."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = build_parser().parse_args(argv)
    # Our own loggers print to `err` for this call only (basicConfig would stick to the first stream).
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in ("headless", "comfy_env")]
    saved_levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG if args.debug else logging.INFO)
    try:
        return _main(args, out, err)
    finally:
        for lg, level in zip(loggers, saved_levels):
            lg.removeHandler(handler)
            lg.setLevel(level)


# The shipped workflows moved from workflows/ to example_workflows/ (the folder ComfyUI lists a pack's
# templates from); their old paths keep working.
MOVED_FOLDERS = {"workflows": "example_workflows"}


def resolve_moved_path(path: str, err: TextIO | None = None) -> str:
    """``path``, or -- when it does not exist and names a shipped workflow by its old folder -- its new path.

    Only paths under this pack's own old folder are redirected (``workflows/x.json`` from the pack
    folder, or any path that resolves into ``<pack>/workflows/``); a note on ``err`` says so.
    """
    if os.path.exists(path):
        return path
    full = os.path.abspath(path)
    for old, new in MOVED_FOLDERS.items():
        old_dir = os.path.join(REPO_ROOT, old) + os.sep
        if full.startswith(old_dir):
            candidate = os.path.join(REPO_ROOT, new, full[len(old_dir):])
            if os.path.exists(candidate):
                if err is not None:
                    print(f"note: {old}/ is now {new}/; reading {os.path.relpath(candidate)}", file=err)
                return candidate
    return path


def _main(args, out: TextIO, err: TextIO) -> int:
    args.workflow = resolve_moved_path(args.workflow, err)
    try:
        if args.server:
            return _run_remote(args, out, err)
        return _run_local(args, out, err)
    except WorkflowError as exc:
        _print_problems(exc.problems, err)
        print(f"{len(exc.problems)} problem(s) in {args.workflow}; nothing was run.", file=err)
        return EXIT_INVALID
    except ExecutionInterrupted as exc:
        print(str(exc), file=err)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("aborted", file=err)
        return EXIT_INTERRUPTED
    except (NodeExecutionError, ServerError, HeadlessError) as exc:
        hint = ""
        if args.debug and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=err)
        elif isinstance(exc, NodeExecutionError):
            hint = "  (--debug shows the traceback)"
        print(f"{exc}{hint}", file=err)
        return EXIT_FAILED


def _warn(warnings: list[Problem], err: TextIO) -> None:
    for w in warnings:
        print(f"warning: {w}", file=err)


def _convert_and_validate(loaded, node_defs, err: TextIO, *, strict: bool, check_values: bool = True):
    """The API prompt of a loaded workflow and its validation; WorkflowError on any problem, warnings to err."""
    conversion = to_api_prompt(loaded, node_defs)
    _warn(conversion.warnings, err)
    if conversion.problems:
        raise WorkflowError(conversion.problems)
    validation = validate_prompt(conversion.prompt, node_defs, check_values=check_values, strict=strict)
    _warn(validation.warnings, err)
    if validation.problems:
        raise WorkflowError(validation.problems)
    return conversion, validation


def _pack_dirs(args) -> list[str]:
    packs = []
    if not args.no_default_pack and os.path.isfile(os.path.join(REPO_ROOT, "__init__.py")):
        packs.append(REPO_ROOT)
    packs.extend(os.path.abspath(p) for p in args.pack)
    return packs


def _run_local(args, out: TextIO, err: TextIO) -> int:
    import comfy_env

    comfy_env.ensure_comfy_interface()
    loaded = load_workflow(args.workflow)

    import importlib

    folder_paths = importlib.import_module("folder_paths")
    cli_args = importlib.import_module("comfy.cli_args").args
    if args.cpu:
        cli_args.cpu = True
    if args.input:
        folder_paths.set_input_directory(os.path.abspath(args.input))
    output_dir = os.path.abspath(args.output)
    folder_paths.set_output_directory(output_dir)


    packs = _pack_dirs(args)
    try:
        registry = build_registry(packs)
    except Exception as exc:
        if isinstance(exc, HeadlessError):
            raise
        if args.debug:
            traceback.print_exc(file=err)
        raise HeadlessError(f"cannot load node packs {packs}: {type(exc).__name__}: {exc}") from exc
    node_defs = registry.node_defs()


    conversion, validation = _convert_and_validate(loaded, node_defs, err, strict=args.strict)
    if args.check:
        print(f"{args.workflow}: valid ({len(validation.prompt)} nodes, {len(validation.needed)} would run).", file=out)
        return EXIT_OK

    import tempfile


    extra_data = {"extra_pnginfo": {"workflow": conversion.ui_workflow}} if conversion.ui_workflow is not None else {}
    previous_temp = folder_paths.get_temp_directory()
    previous_handler = _sigint_interrupts()
    try:
        with tempfile.TemporaryDirectory(prefix="metagan-preview-") as temp_dir:
            folder_paths.set_temp_directory(temp_dir)  # previews are thrown away, as ComfyUI cleans its temp folder
            result = run_prompt(conversion.prompt, node_defs, extra_data=extra_data, on_event=ProgressPrinter(err),
                                strict=args.strict)
    finally:
        folder_paths.set_temp_directory(previous_temp)
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)

    _print_summary(result, output_dir, out)
    return EXIT_OK


def _print_summary(result, output_dir: str, out: TextIO) -> None:
    print(f"ran {len(result.timings)} node(s) in {result.seconds:.2f} s", file=out)
    width_type = max([len("type")] + [len(t.class_type) for t in result.timings])
    width_title = max([len("title")] + [len(t.title) for t in result.timings])
    print(f"  {'node':>6}  {'type':<{width_type}}  {'title':<{width_title}}  {'seconds':>8}", file=out)
    for t in result.timings:
        print(f"  {t.node_id:>6}  {t.class_type:<{width_type}}  {t.title:<{width_title}}  {t.seconds:8.3f}", file=out)
    saved = result.saved("output")
    previews = result.saved("temp")
    if saved:
        print(f"saved {len(saved)} file(s) in {output_dir}:", file=out)
        for f in saved:
            print(f"  {os.path.relpath(f.path, output_dir)}", file=out)
    else:
        print("saved no files", file=out)
    if previews:
        print(f"({len(previews)} preview image(s) were not kept)", file=out)


def _run_remote(args, out: TextIO, err: TextIO) -> int:

    loaded = load_workflow(args.workflow)
    client = ComfyClient(args.server)
    node_defs = node_defs_from_object_info(client.object_info())
    # Values (file lists, ranges, custom checks) are left to the server, which knows its own files.
    conversion, validation = _convert_and_validate(loaded, node_defs, err, strict=args.strict, check_values=False)
    if args.check:
        print(f"{args.workflow}: valid for {client.base_url} ({len(validation.prompt)} nodes).", file=out)
        return EXIT_OK
    output_dir = os.path.abspath(args.output)
    extra_data = {"extra_pnginfo": {"workflow": conversion.ui_workflow}} if conversion.ui_workflow is not None else {}
    titles = {nid: node_title(conversion.prompt, nid, node_defs) for nid in conversion.prompt}
    t0 = time.perf_counter()
    # Send the prompt as converted, not validation's copy: that one has {"__value__": [...]} unwrapped,
    # which the server would read as a link.
    result = run_on_server(client, conversion.prompt, output_dir=output_dir, extra_data=extra_data,
                           timeout=args.timeout, on_event=ProgressPrinter(err, titles))
    print(f"prompt {result.prompt_id} finished on {client.base_url} in {time.perf_counter() - t0:.2f} s", file=out)
    if result.files:
        print(f"downloaded {len(result.files)} file(s) to {output_dir}:", file=out)
        for path in result.files:
            print(f"  {os.path.relpath(path, output_dir)}", file=out)
    else:
        print("the server saved no files", file=out)
    return EXIT_OK
