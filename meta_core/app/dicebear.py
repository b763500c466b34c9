"""Reproducible character-style task data rendered from the DiceBear avatar library.

Each DiceBear style (npm ``@dicebear/collection``, pinned in ``tools/dicebear/package.json``)
becomes one task folder of PNGs. Styles in `HELD_OUT_STYLES` are written under ``OUT/heldout/``
and must never be used for meta-training; every other style goes under ``OUT/train/``::

    OUT/train/<style>/00000.png ...
    OUT/heldout/<style>/00000.png ...
    OUT/ATTRIBUTION.json, OUT/ATTRIBUTION.md   # title, creator, source, license per style

Rendering runs in Node.js (``tools/dicebear/render.mjs``: DiceBear draws SVG, resvg rasterises it);
this module validates the arguments, installs the pinned npm packages on first use and calls it.
Image ``i`` of style ``s`` uses the DiceBear seed ``"<seed>-<s>-<i>"``, so the same arguments
give byte-identical PNGs, and a smaller count gives a prefix of a larger one.

Example:
    >>> manifest = build_dicebear_tasks("data/dicebear64", count_per_style=500, resolution=64)
    >>> manifest["heldout_styles"]
    ['bottts', 'bottts-neutral', 'lorelei', 'lorelei-neutral', 'micah', 'pixel-art', 'pixel-art-neutral', 'thumbs']

Command line: ``python -m meta_core.dicebear --out DIR --count 200 --resolution 64``.
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from collections.abc import Callable, Iterable, Sequence

from ..errors import DataError

__all__ = [
    "ABSTRACT_STYLES",
    "DataBuildError",
    "HELD_OUT_STYLES",
    "TEXT_STYLES",
    "TOOL_DIR",
    "build_dicebear_tasks",
    "list_styles",
    "main",
]

log = logging.getLogger(__name__)

# Never used for meta-training: kept apart to measure few-shot adaptation to unseen styles.
HELD_OUT_STYLES: tuple[str, ...] = (
    "micah",
    "lorelei",
    "lorelei-neutral",
    "pixel-art",
    "pixel-art-neutral",
    "bottts",
    "bottts-neutral",
    "thumbs",
)

# Styles that are patterns or icons rather than characters; rendered by default (they add task
# variety), listed so that callers who want characters only can leave them out.
ABSTRACT_STYLES: tuple[str, ...] = ("glass", "icons", "identicon", "rings", "shapes")

# Text styles depend on the machine's fonts, so render.mjs skips them unless named in `styles`.
TEXT_STYLES: tuple[str, ...] = ("initials",)

TOOL_DIR: Path = Path(__file__).resolve().parents[2] / "tools" / "dicebear"
_RENDER_SCRIPT = TOOL_DIR / "render.mjs"

_NODE_HINT = (
    "Install Node.js 18 or newer together with npm (https://nodejs.org; on Debian/Ubuntu "
    "`apt-get install nodejs npm`; on macOS `brew install node`), or pass node=/path/to/node "
    "(--node on the command line)."
)


class DataBuildError(DataError):
    """Task data cannot be built; the message says which input or tool is at fault and what to do."""


def _normalise_background(background: str) -> str:
    if not isinstance(background, str):
        raise DataBuildError(f"background must be a colour string like '#ffffff', got {background!r}.")
    if background.strip().lower() == "random":
        return "random"
    m = re.fullmatch(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})", background.strip())
    if m is None:
        raise DataBuildError(
            f"background {background!r} is not a hex colour; use '#rrggbb' or '#rgb', e.g. '#ffffff', or 'random'."
        )
    hex_ = m.group(1).lower()
    if len(hex_) == 3:
        hex_ = "".join(c * 2 for c in hex_)
    return "#" + hex_


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    # bool is an int subclass; True as a count is always a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataBuildError(f"{name} must be an integer, got {value!r}.")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise DataBuildError(f"{name} must be {bound}, got {value}.")
    return value


def _check_styles(styles: Iterable[str] | None) -> list[str] | None:
    if styles is None:
        return None
    if isinstance(styles, str):
        raise DataBuildError(f"styles must be a list of style names, got the string {styles!r}; write [{styles!r}].")
    names = list(styles)
    bad = [s for s in names if not isinstance(s, str) or not s]
    if bad or not names:
        raise DataBuildError("styles must be a non-empty list of style names (e.g. ['adventurer', 'micah']), "
                             f"got {names!r}.")
    return names


def _find_node(node: str) -> str:
    path = shutil.which(node)
    if path is None:
        raise DataBuildError(f"Node.js not found: {node!r} is not an executable on PATH. {_NODE_HINT}")
    return path


def _find_npm(node_path: str) -> str:
    # npm ships beside node; prefer that one so a node= override gets its own npm.
    for candidate in (Path(node_path).parent / "npm", Path(node_path).parent / "npm.cmd"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    npm = shutil.which("npm")
    if npm is None:
        raise DataBuildError(
            f"npm not found (next to {node_path} or on PATH); it is needed once to install the pinned "
            f"DiceBear packages in {TOOL_DIR}. {_NODE_HINT}"
        )
    return npm


def _node_modules_ok() -> bool:
    """True when every dependency pinned in package.json is installed at exactly that version."""
    try:
        wanted = json.loads((TOOL_DIR / "package.json").read_text(encoding="utf-8"))["dependencies"]
    except (OSError, ValueError, KeyError) as e:
        raise DataBuildError(f"{TOOL_DIR / 'package.json'} is missing or unreadable ({e}); "
                             "restore it from the repository.") from e
    for pkg, version in wanted.items():
        manifest = TOOL_DIR / "node_modules" / Path(*pkg.split("/")) / "package.json"
        try:
            if json.loads(manifest.read_text(encoding="utf-8")).get("version") != version:
                return False
        except (OSError, ValueError):
            return False
    return True


def _ensure_node_modules(node_path: str) -> None:
    if _node_modules_ok():
        return
    npm = _find_npm(node_path)
    log.info("Installing the pinned DiceBear packages: npm ci in %s (first use only).", TOOL_DIR)
    # npm looks up `node` on PATH; put the chosen node first so a node= override is honoured.
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(node_path).parent), os.environ.get("PATH", "")]))
    try:
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=TOOL_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.TimeoutExpired as e:
        raise DataBuildError(
            f"npm ci in {TOOL_DIR} did not finish in 15 minutes; check access to the npm registry, "
            "then run `npm ci` there by hand."
        ) from e
    if proc.returncode != 0 or not _node_modules_ok():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise DataBuildError(
            f"npm ci in {TOOL_DIR} failed (exit {proc.returncode}); check access to the npm registry and "
            f"run `npm ci` there by hand to see the full log. Last lines:\n{tail}"
        )


def _run_render(node_path: str, args: list[str], on_event: Callable[[dict], None]) -> dict:
    """Runs render.mjs, forwarding its stderr to the log; returns its final 'done' event."""
    if not _RENDER_SCRIPT.is_file():
        raise DataBuildError(f"{_RENDER_SCRIPT} is missing; restore tools/dicebear from the repository.")
    proc = subprocess.Popen(
        [node_path, str(_RENDER_SCRIPT), *args],
        cwd=TOOL_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    stderr_tail: collections.deque[str] = collections.deque(maxlen=20)

    # A reader thread drains stderr so that neither pipe can fill up and stall node.
    def pump_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip("\n")
            stderr_tail.append(line)
            log.info("%s", line)

    reader = threading.Thread(target=pump_stderr, daemon=True)
    reader.start()
    done: dict | None = None
    error: dict | None = None
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not ours (e.g. a warning printed by a dependency)
            if event.get("event") == "done":
                done = event
            elif event.get("event") == "error":
                error = event
            else:
                on_event(event)
    finally:
        rc = proc.wait()
        reader.join(timeout=10)
    if error is not None and error.get("kind") == "arguments":
        raise DataBuildError(f"render.mjs refused the arguments: {error['message']}")
    if rc != 0 or done is None:
        detail = error["message"] if error else "\n".join(stderr_tail)
        raise DataBuildError(
            f"render.mjs failed (exit {rc}); if node_modules is damaged, delete {TOOL_DIR / 'node_modules'} "
            f"and rerun. Details:\n{detail}"
        )
    return done


def list_styles(*, node: str = "node") -> dict[str, dict]:
    """Every style in the pinned DiceBear collection, mapped to its ``meta`` (title, creator, license...)."""
    node_path = _find_node(node)
    _ensure_node_modules(node_path)
    events: list[dict] = []
    try:
        proc = subprocess.run(
            [node_path, str(_RENDER_SCRIPT), "--list"], cwd=TOOL_DIR, capture_output=True, text=True,
            encoding="utf-8", timeout=120,
        )
    except subprocess.TimeoutExpired as e:
        raise DataBuildError("render.mjs --list did not answer in 2 minutes; run it by hand in tools/dicebear.") from e
    for line in proc.stdout.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    found = [e for e in events if e.get("event") == "styles"]
    if proc.returncode != 0 or not found:
        raise DataBuildError(f"render.mjs --list failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return found[0]["styles"]


def build_dicebear_tasks(
    out_dir: str | os.PathLike[str],
    *,
    count_per_style: int = 200,
    resolution: int = 64,
    seed: int = 0,
    background: str = "#ffffff",
    styles: Sequence[str] | None = None,
    include_heldout: bool = True,
    node: str = "node",
    on_step: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Renders DiceBear styles into ``out_dir/{train,heldout}/<style>/<index:05d>.png``.

    Args:
        out_dir: output root; created if missing. Earlier ``NNNNN.png`` files past ``count_per_style``
            in the style folders written are removed; other files and folders are left alone.
        count_per_style: images per style.
        resolution: square image size in px (8..4096).
        seed: base seed; image ``i`` of style ``s`` uses the DiceBear seed ``"<seed>-<s>-<i>"``.
        background: ``'#rrggbb'`` (or ``'#rgb'``) filling what the avatar leaves transparent. Styles
            whose design has its own background (the ``*-neutral`` faces, fun-emoji, glass, shapes...)
            keep it, since there the background is the face or the picture. ``'random'``: a colour drawn per
            image from its seed (white for about a third), so that a prior sees flat coloured backgrounds too.
        styles: kebab-case DiceBear style names; None = every style of the collection except
            `TEXT_STYLES`.
        include_heldout: also render `HELD_OUT_STYLES` (under ``heldout/``). With False, naming a
            held-out style in ``styles`` is an error rather than a silent skip.
        node: the Node.js executable (name on PATH or path).
        on_step: called as ``on_step(images_done, images_total, {"style": ..., "size": ...})`` after
            each style.

    Returns:
        A manifest: ``out_dir``, ``resolution``, ``count_per_style``, ``seed``, ``background``,
        ``dicebear_version``, ``styles`` (style -> split, count, dir, license), ``train_styles``,
        ``heldout_styles``, ``images``, ``attribution`` / ``attribution_md`` (paths), ``seconds``
        (whole call) and ``render_seconds``.

    Raises:
        DataBuildError: invalid arguments, Node.js/npm missing, npm ci or rendering failed.
    """
    t0 = time.perf_counter()
    count_per_style = _check_int("count_per_style", count_per_style, 1)
    resolution = _check_int("resolution", resolution, 8, 4096)
    seed = _check_int("seed", seed, 0, 2**53 - 1)  # JSON numbers are exact only up to 2**53
    background = _normalise_background(background)
    names = _check_styles(styles)
    if names is not None and not include_heldout:
        clash = sorted(set(names) & set(HELD_OUT_STYLES))
        if clash:
            raise DataBuildError(
                f"styles {clash} are held out (HELD_OUT_STYLES) but include_heldout=False; "
                "remove them from styles or pass include_heldout=True."
            )
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise DataBuildError(f"out_dir {out} exists and is not a folder; choose another path.")

    node_path = _find_node(node)
    _ensure_node_modules(node_path)

    request = {
        "out_dir": str(out),
        "styles": names,
        "exclude": [] if include_heldout else list(HELD_OUT_STYLES),
        "heldout": list(HELD_OUT_STYLES),
        "count": count_per_style,
        "sizes": [resolution],
        "seed": seed,
        "background": background,
    }

    def on_event(event: dict) -> None:
        if event.get("event") == "progress" and on_step is not None:
            on_step(int(event["done"]), int(event["total"]), {"style": event["style"], "size": event["size"]})

    done = _run_render(node_path, [json.dumps(request)], on_event)
    (output,) = done["outputs"]
    attribution_path = Path(output["attribution"])
    attribution = json.loads(attribution_path.read_text(encoding="utf-8"))
    per_style = {
        style: {
            "split": info["split"],
            "count": info["count"],
            "dir": info["dir"],
            "license": attribution["styles"][style]["license"]["name"],
        }
        for style, info in output["styles"].items()
    }
    return {
        "out_dir": str(out),
        "resolution": resolution,
        "count_per_style": count_per_style,
        "seed": seed,
        "background": background,
        "dicebear_version": attribution["dicebear_version"],
        "styles": per_style,
        "train_styles": sorted(s for s, i in per_style.items() if i["split"] == "train"),
        "heldout_styles": sorted(s for s, i in per_style.items() if i["split"] == "heldout"),
        "images": int(done["images"]),
        "attribution": str(attribution_path),
        "attribution_md": str(attribution_path.with_suffix(".md")),
        "seconds": time.perf_counter() - t0,
        "render_seconds": float(done["seconds"]),
    }


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m meta_core.dicebear --out DIR [--count N] [--resolution PX] ...``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m meta_core.dicebear",
        description="Render DiceBear avatar styles into OUT/train/<style>/ and OUT/heldout/<style>/ PNG task folders.",
    )
    parser.add_argument("--out", help="output folder (required unless --list-styles)")
    parser.add_argument("--count", type=int, default=200, help="images per style (default 200)")
    parser.add_argument("--resolution", type=int, default=64, help="square image size in px (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--background", default="#ffffff",
                        help="background colour #rrggbb (default #ffffff), or 'random' (a colour per image, white "
                             "for about a third)")
    parser.add_argument("--styles", help="comma-separated style names (default: every style except text styles)")
    parser.add_argument("--no-heldout", action="store_true", help="skip the held-out styles")
    parser.add_argument("--node", default="node", help="Node.js executable (default: node on PATH)")
    parser.add_argument("--list-styles", action="store_true", help="print the styles of the pinned collection and exit")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if ns.list_styles:
            for style, meta in list_styles(node=ns.node).items():
                split = "heldout" if style in HELD_OUT_STYLES else "opt-in" if style in TEXT_STYLES else "train"
                license_name = meta.get("license", {}).get("name", "?")
                print(f"{style:20s} {split:8s} {license_name:38s} {meta.get('creator', '?')}")
            return 0
        if not ns.out:
            parser.error("--out is required")
        styles = [s.strip() for s in ns.styles.split(",") if s.strip()] if ns.styles else None
        m = build_dicebear_tasks(
            ns.out,
            count_per_style=ns.count,
            resolution=ns.resolution,
            seed=ns.seed,
            background=ns.background,
            styles=styles,
            include_heldout=not ns.no_heldout,
            node=ns.node,
        )
    except DataBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for style, info in m["styles"].items():
        print(f"{style:20s} {info['split']:8s} {info['count']:6d}  {info['license']}")
    size_mb = _dir_size(Path(m["out_dir"])) / 2**20
    print(
        f"{m['images']} images ({len(m['train_styles'])} train + {len(m['heldout_styles'])} held-out styles) "
        f"at {m['resolution']} px in {m['seconds']:.1f} s, {size_mb:.1f} MiB -> {m['out_dir']} "
        f"(DiceBear {m['dicebear_version']}; see ATTRIBUTION.md)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
