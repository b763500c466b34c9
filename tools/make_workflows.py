"""Write the shipped workflows: UI format in example_workflows/ (drag into ComfyUI; listed as the pack's
templates) and API format in example_workflows/api/ (for /prompt and `run_workflow.py`).

Each workflow is described once below as nodes and links; widget order comes from the node
definitions themselves, so the files stay in step with the nodes. `--check` exits non-zero when the
committed files differ from what this script writes (a test runs it).

    python tools/make_workflows.py          # rewrite the files
    python tools/make_workflows.py --check  # verify them
"""
from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from headless import build_registry, ui_to_api, widget_layout  # noqa: E402

BUNDLED = "metagan_64.safetensors"
BUNDLED_128 = "metagan_128.safetensors"
# ComfyUI serves a pack's templates from example_workflows/ (app/custom_node_manager.py; the other names it
# accepts log a hint to rename). Only top-level .json files are listed, so api/ beside them is not.
WORKFLOW_DIR = "example_workflows"


def adapted(folder: str, ckpt: str = BUNDLED, loader_title: str = "Load MetaGAN") -> list:
    """Nodes 1-3 of every template: load a bundled checkpoint, the references in examples/<folder>, and adapt at the
    checkpoint's stored default."""
    return [
        (1, "MetaGANLoader", loader_title, {"ckpt_name": ckpt}, {}),
        (2, "MetaGANLoadReferences", "Reference images", {"folder": f"examples/{folder}", "size": 128,
                                                          "background": "#FFFFFF"}, {}),
        (3, "MetaGANFewShotAdapt", "Few-Shot Adapt", {"steps": 0, "learning_rate": 0.0,
                                                      "strategy": "checkpoint default",
                                                      "augment": "checkpoint default", "seed": 0},
         {"meta_gan": (1, 0), "references": (2, 0)}),
    ]


# name -> (title, description, nodes); a node is (id, type, title, widgets by name, {input: (src id, src slot)})
WORKFLOWS = {
    "metagan_fewshot_main": (
        "MetaGAN: few-shot adapt to a character, then 16 samples",
        [
            *adapted("micah"),
            (4, "MetaGANSample", "Sample 16", {"seed": 42, "count": 16, "truncation": 1.0}, {"meta_gan": (3, 0)}),
            (5, "SaveImage", "Save samples", {"filename_prefix": "metagan/samples"}, {"images": (4, 0)}),
            (6, "SaveImage", "Save preview grid", {"filename_prefix": "metagan/preview"}, {"images": (3, 1)}),
        ],
    ),
    # lorelei: the held-out style piece 2 of the 128 px prior drew best (benchmarks/quality_128/dcgan_sn/heldout/)
    "metagan_fewshot_128": (
        "MetaGAN 128 px: few-shot adapt to a character, then 16 samples (1.5-3.5 minutes on a 2-core CPU)",
        [
            *adapted("lorelei", BUNDLED_128, "Load MetaGAN 128 px"),
            (4, "MetaGANSample", "Sample 16", {"seed": 42, "count": 16, "truncation": 1.0}, {"meta_gan": (3, 0)}),
            (5, "SaveImage", "Save samples", {"filename_prefix": "metagan128/samples"}, {"images": (4, 0)}),
            (6, "SaveImage", "Save preview grid", {"filename_prefix": "metagan128/preview"}, {"images": (3, 1)}),
        ],
    ),
    "metagan_interpolation": (
        "MetaGAN: adapt, then an interpolation animation between two seeds",
        [
            *adapted("pixel-art"),
            # seeds 2 and 6: the pair of seeds 1-16 whose first images (truncation 0.9) differ most by pixel MSE
            # after the bundled checkpoint's default adaptation here (a near-twin pair is a still picture, not an
            # animation); chosen again whenever the default changes
            (4, "MetaGANInterpolate", "Interpolate", {"seed_a": 2, "seed_b": 6, "frames": 24, "truncation": 0.9,
                                                      "space": "w"}, {"meta_gan": (3, 0)}),
            (5, "SaveAnimatedWEBP", "Save animation", {"filename_prefix": "metagan/morph", "fps": 12.0,
                                                       "lossless": False, "quality": 90, "method": "default"},
             {"images": (4, 0)}),
        ],
    ),
    "metagan_adapt_and_save": (
        "MetaGAN: adapt to a character and save it as a model",
        [
            # the checkpoint's default strategy: 'modulation' (gains and biases only, saved as a small delta)
            # barely moves the bundled 64 px DCGAN prior off its training styles (checked on these references)
            *adapted("pixel-art"),
            (4, "MetaGANSaveAdapted", "Save character", {"filename_prefix": "metagan/pixel_character",
                                                         "format": "full"}, {"meta_gan": (3, 0)}),
            (5, "PreviewImage", "Preview", {}, {"images": (3, 1)}),
        ],
    ),
}


# -- layout -------------------------------------------------------------------------------------
# LiteGraph measures (ComfyUI_frontend): a node's title bar sits above its pos; slots are 20 units
# high, a widget row 20 + 4. Nodes that show images get room for them below their widgets.
TITLE_H, SLOT_H, WIDGET_H = 30, 20, 24
NODE_W, COL_GAP, ROW_GAP = 320, 50, 60
IMAGE_ROOM = {"SaveImage": 300, "PreviewImage": 260, "SaveAnimatedWEBP": 300, "MetaGANFewShotAdapt": 170}
IMAGE_NODE_W = 360
# Fitting a loaded workflow, the frontend zooms to about 0.715 of the window-to-graph ratio (measured in
# ComfyUI 0.3.64: 2,120 units wide -> 54 % in a 1600 x 1000 window, 1,760 -> 65 %); below about 60 %
# it draws nodes as blank boxes. The window's height loses the menu bar and a margin.
WINDOW = (1600, 1000)
FIT_RATIO, WINDOW_CHROME_H = 0.715, 80


def node_size(d, linked_inputs: int) -> list[int]:
    """Width and height (without the title bar) of node ``d`` as drawn, with room for its images."""
    slots = max(linked_inputs, len(d.outputs))
    height = slots * SLOT_H + len(widget_layout(d)) * WIDGET_H + 10 + IMAGE_ROOM.get(d.name, 0)
    return [IMAGE_NODE_W if d.name in IMAGE_ROOM and d.name != "MetaGANFewShotAdapt" else NODE_W, height]


def layout(nodes, sizes: dict[int, list[int]]) -> dict[int, list[int]]:
    """Positions: columns by distance from the sources (data flows left to right), stacked in a column."""
    depth: dict[int, int] = {}
    for nid, *_, inputs in nodes:  # nodes are listed after the nodes they take inputs from
        depth[nid] = max((depth[src] + 1 for src, _slot in inputs.values()), default=0)
    positions, x = {}, 0
    for column in range(max(depth.values()) + 1):
        members = [nid for nid, *_ in nodes if depth[nid] == column]
        y = TITLE_H
        for nid in members:
            positions[nid] = [x, y]
            y += sizes[nid][1] + TITLE_H + ROW_GAP
        x += max(sizes[nid][0] for nid in members) + COL_GAP
    return positions


def fit_zoom(ui: dict, window: tuple[int, int] = WINDOW) -> float:
    """The zoom at which the frontend shows the whole workflow ``ui`` when it fits it into ``window``."""
    x0 = min(n["pos"][0] for n in ui["nodes"])
    y0 = min(n["pos"][1] - TITLE_H for n in ui["nodes"])
    x1 = max(n["pos"][0] + n["size"][0] for n in ui["nodes"])
    y1 = max(n["pos"][1] + n["size"][1] for n in ui["nodes"])
    return FIT_RATIO * min(window[0] / (x1 - x0), (window[1] - WINDOW_CHROME_H) / (y1 - y0))


def ui_workflow(name: str, title: str, nodes, defs) -> dict:
    links, ui_nodes = [], []
    outgoing: dict[tuple[int, int], list[int]] = {}
    incoming: dict[tuple[int, str], int] = {}
    for nid, _ntype, _, _, inputs in nodes:
        for input_name, (src, slot) in inputs.items():
            link_id = len(links) + 1
            src_type = defs[next(n[1] for n in nodes if n[0] == src)].outputs[slot]
            links.append([link_id, src, slot, nid, None, src_type])
            outgoing.setdefault((src, slot), []).append(link_id)
            incoming[(nid, input_name)] = link_id
    sizes = {nid: node_size(defs[ntype], len(inputs)) for nid, ntype, _, _, inputs in nodes}
    positions = layout(nodes, sizes)
    for order, (nid, ntype, node_title, widgets, inputs) in enumerate(nodes):
        d = defs[ntype]
        link_inputs = [n for n in (*d.required, *d.optional) if n in inputs]
        ui_inputs = []
        for slot, input_name in enumerate(link_inputs):
            link_id = incoming[(nid, input_name)]
            links[link_id - 1][4] = slot
            ui_inputs.append({"name": input_name, "type": d.input_spec(input_name)[1], "link": link_id})
        values = []
        for entry in widget_layout(d):
            if entry.kind == "value":
                values.append(widgets.get(entry.input, entry.options.get("default")))
            elif entry.kind == "control":
                values.append("fixed")  # control_after_generate: keep the seed so reruns reproduce
            elif entry.kind == "filter":
                values.append("")  # control_filter_list: no filter
            else:
                values.append("image")  # the upload button
        ui_nodes.append({
            "id": nid, "type": ntype, "pos": positions[nid], "size": sizes[nid],
            "flags": {}, "order": order, "mode": 0, "inputs": ui_inputs,
            "outputs": [{"name": out_name, "type": out_type, "links": outgoing.get((nid, slot)) or None,
                         "slot_index": slot}
                        for slot, (out_type, out_name) in enumerate(zip(d.outputs, d.output_names))],
            "title": node_title, "properties": {"Node name for S&R": ntype}, "widgets_values": values,
        })
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-metagan/{name}")), "revision": 0,
        "last_node_id": max(n[0] for n in nodes), "last_link_id": len(links), "nodes": ui_nodes, "links": links,
        "groups": [], "config": {}, "extra": {"info": {"title": title}},  # no "ds": the frontend then fits the view
        "version": 0.4,
    }


def render() -> dict[Path, str]:
    defs = build_registry([str(ROOT)]).node_defs()
    files = {}
    for name, (title, nodes) in WORKFLOWS.items():
        ui = ui_workflow(name, title, nodes, defs)
        files[ROOT / WORKFLOW_DIR / f"{name}.json"] = json.dumps(ui, indent=2) + "\n"
        files[ROOT / WORKFLOW_DIR / "api" / f"{name}.json"] = json.dumps(ui_to_api(ui, defs), indent=2) + "\n"
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the committed files instead of writing them")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run python tools/make_workflows.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
