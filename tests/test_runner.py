"""The headless workflow runtime (headless/) and run_workflow.py, on a tiny fake node pack."""
from __future__ import annotations

import copy
import io
import json
import signal
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import comfy_env
import headless
from headless import Problem, WorkflowError
from headless.cli import main

REPO = Path(__file__).resolve().parents[1]
FAKE_PACK = REPO / "tests" / "fixtures" / "fake_pack"
FIXTURE_UI = REPO / "tests" / "fixtures" / "workflows" / "fake_ui.json"

comfy_env.ensure_comfy_interface()

import comfy.model_management as mm  # noqa: E402
import folder_paths  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture
def home(comfy_stubs_home):
    return comfy_stubs_home


@pytest.fixture(scope="module")
def registry():
    return headless.build_registry([FAKE_PACK])


@pytest.fixture
def defs(registry, home):
    return registry.node_defs()


def fixture_workflow() -> dict:
    return json.loads(FIXTURE_UI.read_text())


# -- building UI workflows ----------------------------------------------------------------------

def ui_node(nid, type_, widgets=None, inputs=(), outputs=(), mode=0, title=None):
    """A node as ComfyUI saves it; inputs are (name, type, link) or (name, type, link, is_widget)."""
    node = {"id": nid, "type": type_, "pos": [0, 0], "size": [200, 100], "flags": {}, "order": 0, "mode": mode,
            "inputs": [], "outputs": [{"name": n, "type": t, "links": ls} for n, t, ls in outputs], "properties": {}}
    for name, typ, link, *widget in inputs:
        slot = {"name": name, "type": typ, "link": link}
        if widget and widget[0]:
            slot["widget"] = {"name": name}
        node["inputs"].append(slot)
    if widgets is not None:
        node["widgets_values"] = widgets
    if title:
        node["title"] = title
    return node


def ui_workflow(nodes, links):
    return {"last_node_id": max(n["id"] for n in nodes), "last_link_id": max([lk[0] for lk in links] or [0]),
            "nodes": nodes, "links": links, "groups": [], "config": {}, "extra": {}, "version": 0.4}


SEED = ("FakeSeedImage", [42, "randomize", 8, 6, 2, 0.0])


def seed_node(nid=1, links=(1,), **kw):
    return ui_node(nid, SEED[0], list(SEED[1]), outputs=[("IMAGE", "IMAGE", list(links))], **kw)


def save_node(nid, link, prefix="t"):
    return ui_node(nid, "SaveImage", [prefix], inputs=[("images", "IMAGE", link)])


# ---------------------------------------------------------------------------------------------
# UI -> API conversion
# ---------------------------------------------------------------------------------------------

def test_fixture_workflow_converts_like_the_frontend(defs):
    prompt = headless.ui_to_api(fixture_workflow(), defs)
    assert prompt == {
        "1": {"inputs": {"seed": 42, "width": 8, "height": 6, "steps": 3, "tint": 0.0}, "class_type": "FakeSeedImage",
              "_meta": {"title": "Seed image"}},
        "2": {"inputs": {"channel": "green", "strength": 0.5, "image": ["1", 0]}, "class_type": "FakeColorize",
              "_meta": {"title": "Fake Colorize"}},
        "3": {"inputs": {"image1": ["2", 0], "image2": ["1", 0]}, "class_type": "ImageBatch",
              "_meta": {"title": "Batch Images"}},
        "4": {"inputs": {"filename_prefix": "fake_test", "images": ["3", 0]}, "class_type": "SaveImage",
              "_meta": {"title": "Save Image"}},
        "5": {"inputs": {"images": ["3", 0]}, "class_type": "FakeSplit", "_meta": {"title": "FakeSplit"}},
        "6": {"inputs": {"images": ["5", 0]}, "class_type": "FakeStack", "_meta": {"title": "FakeStack"}},
        "7": {"inputs": {"label": "stacked", "extra": 0, "images": ["6", 0]}, "class_type": "FakeInspect",
              "_meta": {"title": "Inspect stack"}},
        # the reroute (8) is followed back to node 1; the note (10) is dropped
        "9": {"inputs": {"filename_prefix": "fake_anim", "fps": 6.0, "lossless": True, "quality": 80,
                         "method": "default", "images": ["1", 0]},
              "class_type": "SaveAnimatedWEBP", "_meta": {"title": "SaveAnimatedWEBP"}},
    }


def test_control_after_generate_values_are_skipped(defs):
    # INT: value, control; COMBO: value, control, filter list (ComfyUI_frontend's addValueControlWidgets)
    wf = ui_workflow([ui_node(1, "FakeNumber", [5, "fixed", "b", "increment", "", 3], outputs=[("number", "INT", [])]),
                      ui_node(2, "FakeSeedImage", [7, "increment", 4, 4, 1, 0.5])], [])
    prompt = headless.ui_to_api(wf, defs)
    assert prompt["1"]["inputs"] == {"variant": 5, "pick": "b", "offset": 3}  # explicit option on INT and COMBO
    assert prompt["2"]["inputs"] == {"seed": 7, "width": 4, "height": 4, "steps": 1, "tint": 0.5}  # legacy 'seed' name


def _layout(required, optional=None):
    d = headless.node_defs_from_object_info({"N": {"input": {"required": required, "optional": optional or {}},
                                                    "output": []}})["N"]
    return [(w.kind, w.input) for w in headless.widget_layout(d)]


@pytest.mark.parametrize("required, expected", [
    # INT: a control widget when the option is truthy, or -- option absent -- for the legacy names seed/noise_seed
    ({"n": ["INT", {"control_after_generate": True}]}, [("value", "n"), ("control", "n")]),
    ({"n": ["INT", {"control_after_generate": "fixed"}]}, [("value", "n"), ("control", "n")]),
    ({"n": ["INT", {}]}, [("value", "n")]),
    ({"seed": ["INT", {}]}, [("value", "seed"), ("control", "seed")]),
    ({"noise_seed": ["INT"]}, [("value", "noise_seed"), ("control", "noise_seed")]),
    ({"seed": ["INT", {"control_after_generate": False}]}, [("value", "seed")]),
    # FLOAT: only with the option
    ({"f": ["FLOAT", {"control_after_generate": True}]}, [("value", "f"), ("control", "f")]),
    ({"seed": ["FLOAT", {}]}, [("value", "seed")]),
    # COMBO: the control combo and the control_filter_list text, both stored in widgets_values
    ({"c": [["a", "b"], {"control_after_generate": True}]}, [("value", "c"), ("control", "c"), ("filter", "c")]),
    ({"c": ["COMBO", {"options": ["a"], "control_after_generate": True}]},
     [("value", "c"), ("control", "c"), ("filter", "c")]),
    ({"seed": [["a", "b"], {}]}, [("value", "seed")]),
    # forceInput and link types make no widget; STRING and BOOLEAN never get a control
    ({"i": ["INT", {"forceInput": True, "control_after_generate": True}], "img": ["IMAGE"], "s": ["STRING", {}],
      "b": ["BOOLEAN", {}]}, [("value", "s"), ("value", "b")]),
    # the upload button comes after all required inputs (Comfy.UploadImage appends it to 'required')
    ({"image": [["x.png"], {"image_upload": True}], "n": ["INT", {}]},
     [("value", "image"), ("value", "n"), ("upload", "image")]),
])
def test_widget_layout_follows_the_frontend(required, expected):
    assert _layout(required) == expected


def test_widget_layout_puts_optional_after_required_and_upload():
    assert _layout({"image": [["x.png"], {"image_upload": True}]}, {"seed": ["INT", {}]}) == [
        ("value", "image"), ("upload", "image"), ("value", "seed"), ("control", "seed")]


def test_widget_value_count_mismatch_is_a_warning_and_values_go_in_order(defs):
    # Saved by a node version without the control widget: restored in order, as the frontend does.
    conversion = headless.convert_workflow(ui_workflow([ui_node(1, "FakeNumber", [5, "b", 3])], []), defs)
    assert conversion.prompt["1"]["inputs"] == {"variant": 5, "pick": 3}
    (warning,) = conversion.warnings
    assert warning.kind == "widget_count_mismatch" and "has 3 widget values but FakeNumber expects 6" in warning.message
    # An upload button value may be absent (it is the last value): nothing is misplaced.
    conversion = headless.convert_workflow(ui_workflow([ui_node(1, "LoadImage", ["cat.png"])], []), defs)
    assert conversion.prompt["1"]["inputs"] == {"image": "cat.png"}


def test_widget_converted_to_input_takes_the_link(defs):
    wf = ui_workflow([
        ui_node(1, "FakeNumber", [5, "fixed", "a", "fixed", "", 0], outputs=[("number", "INT", [1])]),
        ui_node(2, SEED[0], list(SEED[1]), inputs=[("seed", "INT", 1, True), ("width", "INT", None, True)],
                outputs=[("IMAGE", "IMAGE", [2])]),
        save_node(3, 2),
    ], [[1, 1, 0, 2, 0, "INT"], [2, 2, 0, 3, 0, "IMAGE"]])
    inputs = headless.ui_to_api(wf, defs)["2"]["inputs"]
    assert inputs["seed"] == ["1", 0] and inputs["width"] == 8  # unlinked widget input keeps its value


def test_primitive_node_gives_its_value(defs):
    wf = ui_workflow([
        ui_node(5, "PrimitiveNode", [777, "fixed"], outputs=[("INT", "INT", [1])]),
        ui_node(2, SEED[0], [1, "fixed", 8, 8, 2, 0.0], inputs=[("seed", "INT", 1, True)],
                outputs=[("IMAGE", "IMAGE", [2])]),
        save_node(3, 2),
    ], [[1, 5, 0, 2, 0, "INT"], [2, 2, 0, 3, 0, "IMAGE"]])
    prompt = headless.ui_to_api(wf, defs)
    assert prompt["2"]["inputs"]["seed"] == 777 and "5" not in prompt


def test_reroute_chains_are_followed(defs):
    wf = ui_workflow([
        seed_node(1, links=(1,)),
        ui_node(2, "Reroute", inputs=[("", "*", 1)], outputs=[("", "IMAGE", [2])]),
        ui_node(3, "Reroute", inputs=[("", "*", 2)], outputs=[("", "IMAGE", [3])]),
        save_node(4, 3),
    ], [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "*"], [3, 3, 0, 4, 0, "IMAGE"]])
    prompt = headless.ui_to_api(wf, defs)
    assert set(prompt) == {"1", "4"} and prompt["4"]["inputs"]["images"] == ["1", 0]


def test_bypassed_node_passes_its_matching_input_through(defs):
    wf = ui_workflow([
        seed_node(1),
        ui_node(2, "FakeColorize", ["red", 1.0], mode=4, inputs=[("image", "IMAGE", 1), ("mask", "MASK", None)],
                outputs=[("IMAGE", "IMAGE", [2])]),
        save_node(3, 2),
    ], [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]])
    prompt = headless.ui_to_api(wf, defs)
    assert set(prompt) == {"1", "3"} and prompt["3"]["inputs"]["images"] == ["1", 0]


def test_muted_node_is_left_out_and_its_links_dropped(defs):
    wf = ui_workflow([
        seed_node(1),
        ui_node(2, "FakeColorize", ["red", 1.0], mode=2, inputs=[("image", "IMAGE", 1)],
                outputs=[("IMAGE", "IMAGE", [2])], title="Muted colour"),
        save_node(3, 2),
    ], [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]])
    conversion = headless.convert_workflow(wf, defs)
    assert set(conversion.prompt) == {"1", "3"} and "images" not in conversion.prompt["3"]["inputs"]
    (warning,) = conversion.warnings
    assert warning.kind == "link_from_muted_node" and "node 2 (Muted colour)" in warning.message
    report = headless.validate_prompt(conversion.prompt, defs)
    assert [(p.node_id, p.kind) for p in report.problems] == [("3", "required_input_missing")]


def test_upload_button_value_dict_values_and_link_objects(defs):
    wf = ui_workflow([
        ui_node(1, "LoadImage", ["cat.png", "image"], outputs=[("IMAGE", "IMAGE", [1]), ("MASK", "MASK", [])]),
        ui_node(2, "FakeColorize", {"channel": "blue", "strength": 0.2}, inputs=[("image", "IMAGE", 1)],
                outputs=[("IMAGE", "IMAGE", [2])]),
        ui_node(3, "FakeInspect", [["a", "b"], 1], inputs=[("images", "IMAGE", 2)]),
    ], [])
    wf["links"] = [{"id": 1, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "IMAGE"},
                   {"id": 2, "origin_id": 2, "origin_slot": 0, "target_id": 3, "target_slot": 0, "type": "IMAGE"}]
    prompt = headless.ui_to_api(wf, defs)
    assert prompt["1"]["inputs"] == {"image": "cat.png"}
    assert prompt["2"]["inputs"] == {"channel": "blue", "strength": 0.2, "image": ["1", 0]}
    assert prompt["3"]["inputs"]["label"] == {"__value__": ["a", "b"]}  # a list value is not a link


def test_conversion_problems_name_the_node(defs):
    wf = ui_workflow([
        ui_node(1, "NoSuchNode", [], title="Mystery"),
        ui_node(2, "0b1c5c7e-1111-4aaa-8bbb-222233334444", []),
        ui_node(3, "FakeColorize", ["red", 1.0], inputs=[("image", "IMAGE", 99)]),
        ui_node(4, "FakeColorize", ["red", 1.0], inputs=[("image", "IMAGE", 5)]),
    ], [[5, 42, 0, 4, 0, "IMAGE"]])
    wf["definitions"] = {"subgraphs": [{"id": "0b1c5c7e-1111-4aaa-8bbb-222233334444"}]}
    with pytest.raises(WorkflowError) as info:
        headless.ui_to_api(wf, defs)
    assert [str(p) for p in info.value.problems] == [
        "node 1 (Mystery): node type 'NoSuchNode' is not installed; load the pack that provides it (--pack DIR) "
        "or remove the node.",
        "node 2 (0b1c5c7e-1111-4aaa-8bbb-222233334444): subgraph nodes are not supported headless; in ComfyUI, "
        "right-click the subgraph and choose 'Unpack Subgraph', then save again.",
        "node 3 (Fake Colorize): input 'image' uses link 99, which is not in the workflow's links; reconnect the input "
        "in ComfyUI and save again.",
        "node 4 (Fake Colorize): input 'image' is linked to node 42, which is not in the workflow.",
    ]


def test_detect_format_and_load_errors(tmp_path):
    assert headless.detect_format({"nodes": [], "links": []}) == "ui"
    assert headless.detect_format({"3": {"class_type": "X", "inputs": {}}}) == "api"
    assert headless.detect_format({"prompt": {"3": {"class_type": "X", "inputs": {}}}}) == "api"
    with pytest.raises(WorkflowError, match="neither a ComfyUI workflow"):
        headless.detect_format([1, 2])
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(WorkflowError, match=r"is not valid JSON \(line 1, column 2"):
        headless.load_workflow(bad)
    with pytest.raises(WorkflowError, match="cannot read"):
        headless.load_workflow(tmp_path / "missing.json")
    huge = headless.convert_workflow({"nodes": [{"id": i, "type": "X"} for i in range(headless.MAX_NODES + 1)],
                                      "links": []}, {})
    assert [p.kind for p in huge.problems] == ["graph_too_large"] and not huge.prompt


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

def api_prompt() -> dict:
    return {
        "1": {"class_type": "FakeSeedImage", "inputs": {"seed": 3, "width": 8, "height": 6, "steps": 2},
              "_meta": {"title": "Seed"}},
        "2": {"class_type": "FakeColorize", "inputs": {"image": ["1", 0], "channel": "red", "strength": 0.5}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "t"}},
    }


CASES = [
    ("unknown_node_type", lambda p: p["2"].update(class_type="Nope"), "2", "node type 'Nope' is not installed"),
    ("required_input_missing", lambda p: p["2"]["inputs"].pop("channel"), "2", "required input 'channel' is missing"),
    ("link_to_missing_node", lambda p: p["2"]["inputs"].update(image=["9", 0]), "2",
     "linked to node 9, which is not in the workflow"),
    ("link_to_missing_output", lambda p: p["2"]["inputs"].update(image=["1", 3]), "2",
     "linked to output 3 of node 1 (Seed), which has 1 output(s)"),
    ("bad_linked_input", lambda p: p["2"]["inputs"].update(image=["1"]), "2", "is a malformed link"),
    ("return_type_mismatch",
     lambda p: p.update({"4": {"class_type": "FakeNumber", "inputs": {"variant": 1, "pick": "a", "offset": 0}}})
     or p["3"]["inputs"].update(images=["4", 0]), "3",
     "takes IMAGE but is linked to output 0 of node 4 (FakeNumber), which gives INT"),
    ("value_smaller_than_min", lambda p: p["1"]["inputs"].update(width=0), "1",
     "input 'width': 0 is smaller than the minimum 1"),
    ("value_bigger_than_max", lambda p: p["2"]["inputs"].update(strength=1.5), "2",
     "input 'strength': 1.5 is bigger than the maximum 1.0"),
    ("value_not_in_list", lambda p: p["2"]["inputs"].update(channel="purple"), "2",
     "input 'channel': 'purple' is not one of [\"red\", \"green\", \"blue\"]"),
    ("invalid_input_type", lambda p: p["1"]["inputs"].update(steps="many"), "1", "cannot use 'many' as INT"),
    ("cycle", lambda p: p.update(
        {"5": {"class_type": "FakeColorize", "inputs": {"image": ["6", 0], "channel": "red", "strength": 1.0}},
         "6": {"class_type": "FakeColorize", "inputs": {"image": ["5", 0], "channel": "red", "strength": 1.0}},
         "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "c"}}}), "5",
     "is part of a dependency cycle 5 -> 6 -> 5"),
    ("prompt_no_outputs", lambda p: p.pop("3"), None, "the workflow has no output node"),
    ("graph_too_large",
     lambda p: p.update({str(i): {"class_type": "FakeFail", "inputs": {}} for i in range(10, 10_010)}),
     None, "at most 10000 are accepted"),
]


@pytest.mark.parametrize("kind, change, node_id, text", CASES, ids=[c[0] for c in CASES])
def test_each_validation_problem_is_reported(defs, kind, change, node_id, text):
    prompt = api_prompt()
    change(prompt)
    report = headless.validate_prompt(prompt, defs)
    matching = [p for p in report.problems if p.kind == kind]
    assert matching, report.problems
    assert matching[0].node_id == node_id and text in matching[0].message
    assert (node_id is None) == str(matching[0]).startswith("workflow: ")


def test_custom_validation_and_its_precedence_over_the_combo_list(defs, home):
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "missing.png"}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    (problem,) = headless.validate_prompt(prompt, defs).problems
    assert (problem.kind, problem.message) == ("custom_validation_failed",
                                               "LoadImage rejected its inputs: Invalid image file: missing.png")
    # A file in another folder is valid through VALIDATE_INPUTS though it is not in the combo list.
    Path(folder_paths.get_output_directory()).mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(Path(folder_paths.get_output_directory(), "prev.png"))
    prompt["1"]["inputs"]["image"] = "prev.png [output]"
    assert not headless.validate_prompt(prompt, defs).problems


def test_all_problems_are_collected_and_values_converted(defs):
    prompt = api_prompt()
    prompt["1"]["inputs"].update(width="4", height=999)
    prompt["2"]["inputs"]["channel"] = "pink"
    report = headless.validate_prompt(prompt, defs)
    assert [(p.node_id, p.kind) for p in report.problems] == [("1", "value_bigger_than_max"),
                                                              ("2", "value_not_in_list")]
    assert report.prompt["1"]["inputs"]["width"] == 4 and prompt["1"]["inputs"]["width"] == "4"  # converted copy


def test_problems_in_nodes_feeding_no_output_are_warnings_unless_strict(defs):
    prompt = api_prompt()
    prompt["9"] = {"class_type": "FakeColorize", "inputs": {"channel": "red", "strength": 2.0},
                   "_meta": {"title": "Loose end"}}
    report = headless.validate_prompt(prompt, defs)
    assert not report.problems \
        and {w.kind for w in report.warnings} == {"required_input_missing", "value_bigger_than_max"}
    assert all("feeds no output" in w.message for w in report.warnings if w.node_id == "9")
    strict = headless.validate_prompt(prompt, defs, strict=True)
    assert {p.kind for p in strict.problems} == {"required_input_missing", "value_bigger_than_max"}


def test_check_values_off_keeps_structural_checks(defs):
    prompt = api_prompt()
    prompt["2"]["inputs"]["channel"] = "purple"
    prompt["3"]["inputs"]["images"] = ["1", 4]
    report = headless.validate_prompt(prompt, defs, check_values=False)
    assert [p.kind for p in report.problems] == ["link_to_missing_output"]


def test_type_matching_follows_comfyui():
    assert headless.types_compatible("IMAGE", "IMAGE")
    assert headless.types_compatible("IMAGE,MASK", "MASK")
    assert not headless.types_compatible("INT", "IMAGE")
    assert not headless.types_compatible("*", "IMAGE")  # the backend has no wildcard
    assert headless.types_compatible(["a", "b"], ["a", "b"]) and not headless.types_compatible("STRING", ["a"])

    class AnyType(str):
        def __ne__(self, other):
            return False

    assert headless.types_compatible(AnyType("*"), "IMAGE")


# ---------------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------------

def test_execution_order_is_dependency_first_outputs_early_and_deterministic(defs):
    prompt = {
        "10": {"class_type": "FakeSeedImage", "inputs": {"seed": 1, "width": 4, "height": 4, "steps": 1}},
        "2": {"class_type": "FakeColorize", "inputs": {"image": ["10", 0], "channel": "red", "strength": 1.0}},
        "3": {"class_type": "FakeColorize", "inputs": {"image": ["10", 0], "channel": "blue", "strength": 1.0}},
        "4": {"class_type": "ImageBatch", "inputs": {"image1": ["2", 0], "image2": ["3", 0]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "a"}},
        "1": {"class_type": "PreviewImage", "inputs": {"images": ["10", 0]}},
        # unused
        "7": {"class_type": "FakeColorize", "inputs": {"image": ["10", 0], "channel": "red", "strength": 1.0}},
    }
    assert headless.execution_order(prompt, defs) == ["10", "1", "2", "3", "4", "5"]


def test_run_prompt_list_semantics_hidden_inputs_and_events(defs, home):
    prompt = headless.ui_to_api(fixture_workflow(), defs)
    events = []
    result = headless.run_prompt(prompt, defs, extra_data={"extra_pnginfo": {"workflow": fixture_workflow()}},
                                 on_event=lambda name, data: events.append((name, data.get("node"))))
    (seen,) = result.ui["7"]["seen"]
    # batch of 2 -> FakeSplit (OUTPUT_IS_LIST) -> FakeStack (INPUT_IS_LIST) -> one batch of 2 again
    assert seen == {"shape": [2, 6, 8, 3], "label": "stacked", "extra": 0, "unique_id": "7", "has_prompt": True,
                    "has_workflow": True, "grad_enabled": False}
    assert len(result.outputs["5"][0]) == 2 and result.outputs["5"][1] == [2]
    assert [t.node_id for t in result.timings] == result.order and all(t.seconds >= 0 for t in result.timings)
    assert ("progress", "1") in events and events[0][0] == "execution_start" and events[-1][0] == "execution_success"
    assert sorted(f.filename for f in result.saved()) == ["fake_anim_00001_.webp", "fake_test_00001_.png",
                                                          "fake_test_00002_.png"]


def test_list_outputs_feed_a_node_once_per_item(defs, home):
    prompt = {
        "1": {"class_type": "FakeSeedImage", "inputs": {"seed": 1, "width": 4, "height": 4, "steps": 1}},
        "2": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["1", 0]}},
        "3": {"class_type": "ImageBatch", "inputs": {"image1": ["2", 0], "image2": ["1", 0]}},
        "4": {"class_type": "FakeSplit", "inputs": {"images": ["3", 0]}},
        "5": {"class_type": "FakeColorize", "inputs": {"image": ["4", 0], "channel": "green", "strength": 1.0}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "each"}},
    }
    result = headless.run_prompt(prompt, defs)
    assert len(result.outputs["5"][0]) == 3 and all(t.shape == (1, 4, 4, 3) for t in result.outputs["5"][0])
    assert [f.filename for f in result.saved()] == ["each_00001_.png", "each_00002_.png", "each_00003_.png"]


def test_node_failure_and_interrupt(defs, home):
    prompt = api_prompt()
    prompt["2"] = {"class_type": "FakeFail", "inputs": {"image": ["1", 0]}, "_meta": {"title": "Boom"}}
    with pytest.raises(headless.NodeExecutionError) as info:
        headless.run_prompt(prompt, defs)
    assert str(info.value) == "node 2 (Boom) failed: ValueError: the fake node failed on purpose"
    assert isinstance(info.value.__cause__, ValueError)

    def stop_at_first_progress(name, data):
        if name == "progress":
            mm.interrupt_current_processing()

    with pytest.raises(headless.ExecutionInterrupted, match=r"interrupted at node 1 \(Seed\)"):
        headless.run_prompt(api_prompt(), defs, on_event=stop_at_first_progress)
    assert not mm.processing_interrupted()
    assert not Path(folder_paths.get_output_directory()).exists()  # nothing was saved


def test_is_changed_goes_into_the_saved_prompt_as_in_comfyui(registry, home, tmp_path):
    Path(folder_paths.get_input_directory()).mkdir(parents=True)
    Image.new("RGB", (4, 3), (9, 9, 9)).save(Path(folder_paths.get_input_directory(), "in.png"))
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "c"}}}
    result = headless.run_prompt(prompt, registry.node_defs())
    with Image.open(result.saved()[0].path) as img:
        saved = json.loads(img.text["prompt"])
    digest = nodes_module().LoadImage.IS_CHANGED("in.png")
    assert saved["1"]["is_changed"] == [digest] and "is_changed" not in saved["2"] and "is_changed" not in prompt["1"]


def nodes_module():
    import nodes

    return nodes


def test_invalid_prompt_runs_nothing(defs, home):
    prompt = api_prompt()
    prompt["1"]["inputs"]["width"] = 0
    with pytest.raises(WorkflowError) as info:
        headless.run_prompt(prompt, defs)
    assert [p.kind for p in info.value.problems] == ["value_smaller_than_min"]


# ---------------------------------------------------------------------------------------------
# run_workflow.py
# ---------------------------------------------------------------------------------------------

def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(["--no-default-pack", "--pack", str(FAKE_PACK), *map(str, argv)], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_runs_a_ui_workflow_and_writes_images(home, tmp_path):
    code, out, err = cli(FIXTURE_UI, "--output", tmp_path / "out")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fake_anim_00001_.webp", "fake_test_00001_.png",
                                                                      "fake_test_00002_.png"]
    with Image.open(tmp_path / "out" / "fake_test_00001_.png") as img:
        assert img.size == (8, 6)
        assert json.loads(img.text["workflow"]) == fixture_workflow()
        assert json.loads(img.text["prompt"])["1"]["inputs"]["seed"] == 42
    assert "ran 8 node(s)" in out and "saved 3 file(s)" in out
    assert any(line.split()[:3] == ["1", "FakeSeedImage", "Seed"] for line in out.splitlines())  # per-node timing rows
    assert "[1/8] node 1 Seed image" in err and "progress 3/3" in err

    # The saved PNG carries the workflow: it runs again, numbering on.
    code, out, err = cli(tmp_path / "out" / "fake_test_00001_.png", "--output", tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out" / "fake_test_00004_.png").is_file()


def test_cli_runs_an_api_prompt(home, tmp_path):
    path = tmp_path / "api.json"
    path.write_text(json.dumps(api_prompt()))
    from comfy.cli_args import args as cli_args

    try:
        code, out, err = cli(path, "--output", tmp_path / "out", "--cpu")
        assert cli_args.cpu and mm.get_torch_device() == torch.device("cpu")
    finally:
        cli_args.cpu = False
    assert code == 0, err
    with Image.open(tmp_path / "out" / "t_00001_.png") as img:
        assert "workflow" not in img.text and json.loads(img.text["prompt"])["3"]["class_type"] == "SaveImage"


def test_cli_reports_problems_one_line_each_and_runs_nothing(home, tmp_path):
    wf = fixture_workflow()
    wf["nodes"][0]["widgets_values"][2] = 999       # width above max
    wf["nodes"][1]["widgets_values"][0] = "purple"  # not in the COMBO list
    wf["nodes"].append(ui_node(11, "NoSuchNode", [], title="Ghost"))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(wf))
    code, out, err = cli(path, "--output", tmp_path / "out")
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.splitlines() == [
        "node 11 (Ghost): node type 'NoSuchNode' is not installed; load the pack that provides it (--pack DIR) "
        "or remove the node.",
        f"1 problem(s) in {path}; nothing was run.",
    ]
    del wf["nodes"][-1]
    path.write_text(json.dumps(wf))
    code, out, err = cli(path, "--output", tmp_path / "out")
    assert code == 2 and err.splitlines() == [
        "node 1 (Seed image): input 'width': 999 is bigger than the maximum 64.",
        "node 2 (Fake Colorize): input 'channel': 'purple' is not one of [\"red\", \"green\", \"blue\"].",
        f"2 problem(s) in {path}; nothing was run.",
    ]
    assert not (tmp_path / "out").exists()
    code, out, err = cli(tmp_path / "missing.json")
    assert code == 2 and err.splitlines()[0].startswith("workflow: cannot read")


def test_cli_node_failure_is_one_line_unless_debug(home, tmp_path):
    prompt = api_prompt()
    prompt["2"] = {"class_type": "FakeFail", "inputs": {"image": ["1", 0]}}
    path = tmp_path / "fail.json"
    path.write_text(json.dumps(prompt))
    code, out, err = cli(path, "--output", tmp_path / "out")
    assert code == 1 and "Traceback" not in err
    assert err.splitlines()[-1] == ("node 2 (FakeFail) failed: ValueError: the fake node failed on purpose  "
                                    "(--debug shows the traceback)")
    code, out, err = cli(path, "--output", tmp_path / "out", "--debug")
    assert code == 1 and "Traceback" in err


def test_cli_check_validates_only(home, tmp_path):
    code, out, err = cli(FIXTURE_UI, "--output", tmp_path / "out", "--check")
    assert code == 0 and "valid (8 nodes, 8 would run)" in out and not (tmp_path / "out").exists()


def test_ctrl_c_requests_an_interrupt():
    from headless.cli import _sigint_interrupts

    previous = _sigint_interrupts()
    try:
        signal.raise_signal(signal.SIGINT)
        assert mm.processing_interrupted()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # a second Ctrl-C aborts
    finally:
        signal.signal(signal.SIGINT, previous)
        mm.interrupt_current_processing(False)


# ---------------------------------------------------------------------------------------------
# --server mode against a fake ComfyUI on 127.0.0.1
# ---------------------------------------------------------------------------------------------

class FakeComfy:
    """Just enough of ComfyUI's HTTP API: /object_info, /prompt, /history/<id>, /view, /interrupt, /queue."""

    def __init__(self, object_info: dict, png: bytes):
        self.object_info, self.png = object_info, png
        self.requests: list[tuple[str, str, dict | None]] = []
        self.reject: dict | None = None   # a 400 answer to /prompt
        self.status = {"status_str": "success", "completed": True, "messages": []}
        self.polls_before_done = 1
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, body, ctype="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                fake.requests.append(("GET", url.path, dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))))
                if url.path == "/object_info":
                    self._send(200, fake.object_info)
                elif url.path == "/history/p-1":
                    if fake.polls_before_done > 0:
                        fake.polls_before_done -= 1
                        self._send(200, {})
                    else:
                        self._send(200, {"p-1": {"prompt": [], "status": fake.status, "outputs": {
                            "4": {"images": [{"filename": "fake_test_00001_.png", "subfolder": "", "type": "output"},
                                             {"filename": "ComfyUI_temp_abcde_00001_.png", "subfolder": "",
                                              "type": "temp"}]},
                            "9": {"images": [{"filename": "fake_anim_00001_.webp", "subfolder": "anim",
                                              "type": "output"}],
                                  "animated": [True]}}}})
                elif url.path == "/view":
                    self._send(200, fake.png, "image/png")
                else:
                    self._send(404, {})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                fake.requests.append(("POST", self.path, body))
                if self.path == "/prompt":
                    if fake.reject:
                        self._send(400, fake.reject)
                    else:
                        self._send(200, {"prompt_id": "p-1", "number": 0, "node_errors": {}})
                else:
                    self._send(200, b"", "text/plain")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_server(registry, home):
    buf = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buf, format="PNG")
    with FakeComfy(registry.object_info(), buf.getvalue()) as server:
        yield server


def test_server_mode_submits_the_api_prompt_and_downloads_outputs(fake_server, defs, tmp_path):
    code, out, err = cli(FIXTURE_UI, "--server", fake_server.url, "--output", tmp_path / "dl")
    assert code == 0, err
    posts = [r for r in fake_server.requests if r[0] == "POST"]
    (_, path, body), = posts
    assert path == "/prompt" and body["prompt"] == headless.ui_to_api(fixture_workflow(), defs)
    assert body["extra_data"] == {"extra_pnginfo": {"workflow": fixture_workflow()}} and len(body["client_id"]) == 32
    views = [r[2] for r in fake_server.requests if r[1] == "/view"]
    assert views == [{"filename": "fake_test_00001_.png", "subfolder": "", "type": "output"},
                     {"filename": "fake_anim_00001_.webp", "subfolder": "anim", "type": "output"}]  # temp files skipped
    assert (tmp_path / "dl" / "fake_test_00001_.png").read_bytes() == fake_server.png
    assert (tmp_path / "dl" / "anim" / "fake_anim_00001_.webp").is_file()
    assert "queued as prompt p-1" in err and "downloaded 2 file(s)" in out


def test_server_validation_errors_become_problems(fake_server, tmp_path):
    fake_server.reject = {"error": {"type": "prompt_outputs_failed_validation",
                                    "message": "Prompt outputs failed validation",
                                    "details": "", "extra_info": {}},
                          "node_errors": {"1": {"errors": [{"type": "value_bigger_than_max",
                                                            "message": "Value 99 bigger than max of 64",
                                                            "details": "width", "extra_info": {}}],
                                                "dependent_outputs": ["4"], "class_type": "FakeSeedImage"}}}
    code, out, err = cli(FIXTURE_UI, "--server", fake_server.url, "--output", tmp_path / "dl")
    assert code == 2
    assert err.splitlines()[-2:] == ["node 1 (Seed image): Value 99 bigger than max of 64: width",
                                     f"1 problem(s) in {FIXTURE_UI}; nothing was run."]


def test_server_execution_error_and_unknown_nodes(fake_server, tmp_path):
    fake_server.status = {"status_str": "error", "completed": False, "messages": [
        ["execution_start", {"prompt_id": "p-1"}],
        ["execution_error", {"prompt_id": "p-1", "node_id": "2", "node_type": "FakeColorize",
                             "exception_type": "ValueError", "exception_message": "boom\n"}]]}
    code, out, err = cli(FIXTURE_UI, "--server", fake_server.url, "--output", tmp_path / "dl")
    assert code == 1 and err.splitlines()[-1] == "node 2 (Fake Colorize) failed on the server: ValueError: boom"
    # A node the server does not have is caught before anything is queued.
    fake_server.object_info.pop("FakeStack")
    n_posts = sum(r[0] == "POST" for r in fake_server.requests)
    code, out, err = cli(FIXTURE_UI, "--server", fake_server.url)
    assert code == 2 and "node 6 (FakeStack): node type 'FakeStack' is not installed" in err
    assert sum(r[0] == "POST" for r in fake_server.requests) == n_posts


def test_server_unreachable_or_bad_url(tmp_path):
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as probe:
        port = probe.server_address[1]  # closed again when the block ends
    code, out, err = cli(FIXTURE_UI, "--server", f"http://127.0.0.1:{port}")
    assert code == 1 and f"cannot reach ComfyUI at http://127.0.0.1:{port}" in err
    code, out, err = cli(FIXTURE_UI, "--server", "ftp://127.0.0.1:1")
    assert code == 1 and "--server needs an http:// or https:// URL" in err


def test_unsafe_file_names_from_the_server_are_refused(tmp_path):
    client = headless.ComfyClient("http://127.0.0.1:9")
    with pytest.raises(headless.ServerError, match="unsafe file name"):
        headless.client.download_outputs(client,
                                         {"1": {"images": [{"filename": "x.png", "subfolder": "../..",
                                                            "type": "output"}]}},
                                         str(tmp_path))


def test_websocket_messages():
    handle = headless.handle_ws_message
    assert handle({"type": "status", "data": {"status": {}}}, "p") == (None, {}, False)
    assert handle({"type": "executing", "data": {"node": "3", "prompt_id": "p"}}, "p") \
        == ("executing", {"node": "3", "prompt_id": "p"}, False)
    assert handle({"type": "progress", "data": {"value": 2, "max": 5, "node": "3", "prompt_id": "p"}}, "p")[0] \
        == "progress"
    assert handle({"type": "progress", "data": {"value": 2, "max": 5, "node": "3", "prompt_id": "other"}}, "p") \
        == (None, {}, False)
    assert handle({"type": "executing", "data": {"node": None, "prompt_id": "p"}}, "p")[2] is True
    assert handle({"type": "execution_error", "data": {"prompt_id": "p", "node_id": "3"}}, "p")[2] is True
    assert handle({"type": "execution_success", "data": {"prompt_id": "p"}}, "p") \
        == ("execution_success", {"prompt_id": "p"}, True)


def test_problem_text():
    assert str(Problem("k", "says why.", "3", "Title", "T")) == "node 3 (Title): says why."
    assert str(Problem("k", "says why.", "3", None, "T")) == "node 3 (T): says why."
    assert str(Problem("k", "says why.")) == "workflow: says why."
    assert copy.copy(WorkflowError([Problem("k", "m")])).problems[0].message == "m"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_tqdm_bar_on_a_terminal_and_plain_lines_in_a_log():
    from headless.cli import ProgressPrinter

    events = [("executing", {"node": "3", "title": "Adapt", "index": 0, "total": 2})]
    events += [("progress", {"node": "3", "value": v, "max": 8}) for v in range(1, 9)]
    events += [("executing", {"node": "4", "title": "Sample", "index": 1, "total": 2}), ("execution_success", {})]
    log, terminal = io.StringIO(), _Terminal()
    for stream in (log, terminal):
        printer = ProgressPrinter(stream)
        for event in events:
            printer(*event)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0] == "[1/2] node 3 Adapt" and lines[-1] == "[2/2] node 4 Sample"
    counters = [line.split()[1] for line in lines if line.startswith("  progress ")]
    assert counters == ["2/8", "4/8", "6/8", "8/8"]  # every quarter, no carriage-return frames
    shown = terminal.getvalue()
    assert "\r" in shown and "8/8" in shown and "100%" in shown  # tqdm's bar, closed at the end
    assert shown.rstrip("\n").splitlines()[-1] == "[2/2] node 4 Sample"


def test_old_workflows_folder_paths_still_resolve(tmp_path, monkeypatch):
    from headless.cli import resolve_moved_path

    err = io.StringIO()
    monkeypatch.chdir(REPO)
    new = resolve_moved_path("workflows/metagan_fewshot_main.json", err)
    assert Path(new) == REPO / "example_workflows" / "metagan_fewshot_main.json" \
        and "now example_workflows/" in err.getvalue()
    assert Path(resolve_moved_path(str(REPO / "workflows" / "api" / "metagan_interpolation.json"))) == (
        REPO / "example_workflows" / "api" / "metagan_interpolation.json")
    # anything else is left alone (and then reported missing as before)
    assert resolve_moved_path("workflows/nope.json") == "workflows/nope.json"
    monkeypatch.chdir(tmp_path)
    assert resolve_moved_path("workflows/metagan_fewshot_main.json") == "workflows/metagan_fewshot_main.json"
