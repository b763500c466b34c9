"""The shipped workflows: in sync with the node definitions, valid, and the main one runs headless."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headless import build_registry, convert_workflow, ui_to_api, validate_prompt

ROOT = Path(__file__).resolve().parents[1]
UI_FILES = sorted((ROOT / "example_workflows").glob("*.json"))
API_FILES = sorted((ROOT / "example_workflows" / "api").glob("*.json"))
BUNDLED = ROOT / "checkpoints" / "metagan_64.safetensors"


def _make_workflows():
    spec = importlib.util.spec_from_file_location("make_workflows", ROOT / "tools" / "make_workflows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def defs():
    return build_registry([str(ROOT)]).node_defs()


def test_every_ui_workflow_has_an_api_twin():
    assert len(UI_FILES) >= 3
    assert [p.name for p in UI_FILES] == [p.name for p in API_FILES]


def test_files_are_what_the_generator_writes():
    proc = subprocess.run([sys.executable, "tools/make_workflows.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_ui_workflow_converts_to_its_api_file(path, defs):
    converted = ui_to_api(json.loads(path.read_text()), defs)
    assert converted == json.loads((ROOT / "example_workflows" / "api" / path.name).read_text())


def test_workflow_saved_before_the_anchor_widget_still_converts_cleanly(defs):
    # anchor_weight was added as the adapt node's last, optional widget: a file saved without it keeps its values
    # in place and runs with the checkpoint's default, with no "misplaced values" warning.
    ui = json.loads((ROOT / "example_workflows" / "metagan_fewshot_main.json").read_text())
    (adapt,) = [n for n in ui["nodes"] if n["type"] == "MetaGANFewShotAdapt"]
    assert adapt["widgets_values"][-1] == -1.0
    adapt["widgets_values"] = adapt["widgets_values"][:-1]
    conversion = convert_workflow(ui, defs)
    assert not conversion.problems and not conversion.warnings, [str(p) for p in conversion.warnings]
    inputs = conversion.prompt[str(adapt["id"])]["inputs"]
    assert "anchor_weight" not in inputs and inputs["seed"] == 0 and inputs["augment"] == "checkpoint default"
    adapt["widgets_values"] = adapt["widgets_values"][:-1]  # one value short of the required ones: warned
    assert [w.kind for w in convert_workflow(ui, defs).warnings] == ["widget_count_mismatch"]


@pytest.mark.parametrize("path", API_FILES, ids=lambda p: p.name)
def test_api_workflow_is_valid(path, defs):
    prompt = json.loads(path.read_text())
    report = validate_prompt(prompt, defs, strict=True)
    assert not report.problems, [str(p) for p in report.problems]
    assert all(entry["class_type"] in defs for entry in prompt.values())
    assert any(defs[e["class_type"]].output_node for e in prompt.values())


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_ui_workflow_fits_a_normal_window_at_a_readable_zoom(path):
    # Fitted to 1600 x 1000 the frontend must zoom to at least ~70 % (it draws titles and widgets from 60 %).
    wf = json.loads(path.read_text())
    assert _make_workflows().fit_zoom(wf, (1600, 1000)) >= 0.70
    boxes = [(n["pos"][0], n["pos"][1] - 30, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
             for n in wf["nodes"]]
    for i, a in enumerate(boxes):  # and no two nodes (title bars included) overlap
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)


def test_fit_zoom_matches_what_comfyui_showed():
    # Measured in ComfyUI 0.3.64 at 1600 x 1000: the old row of 6 nodes (x 40..2160) fitted at 54 %, of 5 at 65 %.
    row = lambda n: {"nodes": [{"pos": [40 + 360 * i, 80], "size": [320, 130]} for i in range(n)]}  # noqa: E731
    assert _make_workflows().fit_zoom(row(6)) == pytest.approx(0.54, abs=0.01)
    assert _make_workflows().fit_zoom(row(5)) == pytest.approx(0.65, abs=0.01)


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_ui_links_are_consistent(path):
    wf = json.loads(path.read_text())
    nodes = {n["id"]: n for n in wf["nodes"]}
    for link_id, src, src_slot, dst, dst_slot, link_type in wf["links"]:
        assert link_id in (nodes[src]["outputs"][src_slot]["links"] or [])
        assert nodes[dst]["inputs"][dst_slot]["link"] == link_id
        assert nodes[src]["outputs"][src_slot]["type"] == link_type == nodes[dst]["inputs"][dst_slot]["type"]


def test_main_workflow_runs_headless_on_the_bundled_checkpoint(tmp_path):
    assert BUNDLED.exists(), "the bundled checkpoint is missing"
    proc = subprocess.run([sys.executable, "run_workflow.py", "example_workflows/metagan_fewshot_main.json", "--output",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    samples = sorted((tmp_path / "metagan").glob("samples_*.png"))
    assert len(samples) == 16
    for p in samples + sorted((tmp_path / "metagan").glob("preview_*.png")):
        arr = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32)
        assert arr.shape[:2] in {(64, 64)} or p.name.startswith("preview")
        assert arr.std() > 2.0, f"{p.name} is blank"
