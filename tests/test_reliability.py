"""Issue 5's catalogue, item by item, where other test files leave a gap: bad inputs through the nodes and
the runner, training that cannot quietly fail, cancel and reuse, memory over repeated runs, determinism,
and no side effects.

Nodes are loaded the way ComfyUI loads them (`comfy_env.load_pack` over the vendored stubs), so their
errors are the pack's own classes (`mc.*`); engine-level checks use `meta_core` directly.
"""
from __future__ import annotations

import dataclasses
import gc
import io
import json
import os
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import comfy_env
import headless
from meta_core import checkpoint
from meta_core.config import to_json
from meta_core.data import read_image
from meta_core.errors import (CorruptCheckpointError, MissingTensorsError, NotSafetensorsError, ReferenceImageError,
                              ShapeMismatchError, UnknownFormatError)
from meta_core.images import prepare_references
from tests.helpers import tiny_model

ROOT = Path(__file__).resolve().parents[1]
comfy_env.ensure_comfy_interface()

import comfy.model_management as mm  # noqa: E402  (the stubs, put on sys.path above)
import comfy.utils  # noqa: E402
import folder_paths  # noqa: E402
from headless.cli import main as run_workflow  # noqa: E402

PACK = comfy_env.load_pack(str(ROOT))
NODES = PACK.NODE_CLASS_MAPPINGS
mc = __import__(PACK.__name__ + ".meta_core", fromlist=["checkpoint"])  # the pack's own meta_core
MAIN_API = json.loads((ROOT / "example_workflows" / "api" / "metagan_fewshot_main.json").read_text())
MAIN_UI = json.loads((ROOT / "example_workflows" / "metagan_fewshot_main.json").read_text())
GiB = 1 << 30


@pytest.fixture
def home(tmp_path):
    """folder_paths moved to a temporary base directory, the model cache empty; all restored afterwards."""
    saved_folders = {k: (list(paths), set(exts)) for k, (paths, exts) in folder_paths.folder_names_and_paths.items()}
    saved = {k: getattr(folder_paths, k) for k in ("base_path", "models_dir", "output_directory", "temp_directory",
                                                    "input_directory", "user_directory")}
    folder_paths.set_base_directory(str(tmp_path / "home"))
    PACK.nodes.common.register_model_folder()
    PACK.nodes.common.MODEL_CACHE.clear()
    yield tmp_path / "home"
    PACK.nodes.common.MODEL_CACHE.clear()
    folder_paths.folder_names_and_paths.clear()
    folder_paths.folder_names_and_paths.update(saved_folders)
    for k, v in saved.items():
        setattr(folder_paths, k, v)
    mm.interrupt_current_processing(False)
    comfy.utils.set_progress_bar_global_hook(None)


def model_folder() -> Path:
    folder = Path(folder_paths.folder_names_and_paths["meta_gan"][0][0])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def input_folder(name: str) -> Path:
    folder = Path(folder_paths.get_input_directory()) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def tiny_ckpt(home):
    cfg = mc.ModelConfig.for_resolution(16, channel_base=256, channel_max=16, z_dim=16, w_dim=16, mapping_layers=2)
    model = mc.MetaGAN.create(cfg, seed=0, adapt_defaults=mc.AdaptConfig(steps=2, batch_size=4, strategy="full"))
    return "tiny.safetensors", mc.checkpoint.save(model, model_folder() / "tiny.safetensors")


def run_node(node_id, **inputs):
    cls = NODES[node_id]
    return getattr(cls(), cls.FUNCTION)(**inputs)


def load_base(name="tiny.safetensors"):
    return run_node("MetaGANLoader", ckpt_name=name)[0]


def adapt_node(base, references, **changes):
    inputs = dict(meta_gan=base, references=references, steps=1, learning_rate=0.0, strategy="full", augment="off",
                  seed=0)
    inputs.update(changes)
    return run_node("MetaGANFewShotAdapt", **inputs)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------------------
# 1. Checkpoints
# ---------------------------------------------------------------------------------------------

def write_with_metadata(model, path, **changes):
    """A checkpoint whose metadata fields are replaced (None removes one); tensors untouched."""
    meta = checkpoint._metadata(model, checkpoint.MODEL_KIND)
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)
    return path


def lying_config(model, **generator_changes) -> str:
    cfg = json.loads(to_json(model.config))
    cfg["generator"].update(generator_changes)
    return json.dumps(cfg)


@pytest.mark.parametrize("changes, error, text", [
    ({"z_dim": 10 ** 8}, ShapeMismatchError, "config builds"),                   # 6 GB if allocated
    ({"channel_max": 10 ** 6, "channel_base": 10 ** 9}, ShapeMismatchError, "config builds"),
    ({"mapping_layers": 10 ** 6}, MissingTensorsError, "mapping layers"),          # minutes to build
    ({"z_dim": 2.5}, UnknownFormatError, "cannot build a model"),
])
def test_a_config_that_lies_about_sizes_is_refused_before_anything_is_allocated(tmp_path, changes, error, text):
    model = tiny_model(16)
    path = write_with_metadata(model, tmp_path / "liar.safetensors", model_config=lying_config(model, **changes))
    peak, start = peak_rss_bytes(), time.perf_counter()
    with pytest.raises(error, match=text) as info:
        checkpoint.load(path)
    assert str(path) in str(info.value)
    assert time.perf_counter() - start < 30
    assert peak_rss_bytes() - peak < GiB


@pytest.mark.parametrize("changes, text", [
    ({"meta_step": "abc"}, "meta_step 'abc' is not a non-negative integer"),
    ({"meta_step": "-3"}, "meta_step '-3'"),
    ({"provenance": "{not json"}, "provenance metadata is not a JSON object"),
    ({"provenance": "[1, 2]"}, "provenance metadata is not a JSON object"),
    ({"format_version": "abc"}, "format_version 'abc' is not a number"),
    ({"format_version": "0"}, "not a format MetaGAN ever wrote"),
    ({"format_version": None}, "not a MetaGAN checkpoint"),
    ({"model_kind": "sdxl"}, "model_kind 'sdxl' is not a MetaGAN model"),
    ({"adapt_config": json.dumps({"betas": "ab"})}, "its stored config is invalid"),
    ({"adapt_config": json.dumps({"strategy": "lora"})}, "unknown strategy 'lora'"),
    ({"adapt_config": "[" * 5000 + "]" * 5000}, "its stored config is invalid"),
    ({"model_config": '{"generator": {"z_dim": ' + "9" * 5000 + "}}"}, "its stored config is invalid"),
    ({"model_config": None}, "metadata lacks 'model_config'"),
])
def test_metadata_that_is_not_what_it_says_is_a_typed_error(tmp_path, changes, text):
    path = write_with_metadata(tiny_model(16), tmp_path / "m.safetensors", **changes)
    with pytest.raises(UnknownFormatError, match=text) as info:
        checkpoint.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("header", [b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                                    b'{"a": 1' + b"0" * 5000 + b"}"], ids=["deep_nesting", "5000_digits"])
def test_header_json_that_breaks_the_parser_is_a_corrupt_checkpoint(tmp_path, header):
    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CorruptCheckpointError, match="not valid JSON"):
        checkpoint.load(path)


def test_a_path_the_os_refuses_is_a_typed_error(tmp_path, monkeypatch):
    with pytest.raises(NotSafetensorsError, match="cannot be read"):
        checkpoint.load(str(tmp_path / "bad\x00name.safetensors"))
    path = checkpoint.save(tiny_model(16), tmp_path / "locked.safetensors")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checkpoint, "open", denied, raising=False)  # what a locked file gives (even as root)
    with pytest.raises(NotSafetensorsError, match="cannot be read .*Permission denied.*permissions") as info:
        checkpoint.load(path)
    assert str(path) in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: no permission error can be made")
def test_an_unreadable_checkpoint_is_a_typed_error(tmp_path):
    path = checkpoint.save(tiny_model(16), tmp_path / "locked.safetensors")
    path.chmod(0)
    try:
        with pytest.raises(NotSafetensorsError, match="cannot be read .*Permission"):
            checkpoint.load(path)
    finally:
        path.chmod(0o644)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_named_safetensors_is_refused_by_the_loader_node_and_never_unpickled(home, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"x": _Evil(str(marker))}, model_folder() / "innocent.safetensors")
    with pytest.raises(mc.errors.PickleCheckpointError, match="innocent.safetensors.*refuses them"):
        load_base("innocent.safetensors")
    assert not marker.exists()


def test_a_delta_whose_base_is_missing_names_what_to_do(tiny_ckpt):
    base = load_base()
    model, _ = adapt_node(base, torch.rand(2, 16, 16, 3), strategy="modulation")
    (name,) = run_node("MetaGANSaveAdapted", meta_gan=model, filename_prefix="d/hero", format="delta")["result"]
    tiny_ckpt[1].unlink()  # the base is gone
    PACK.nodes.common.MODEL_CACHE.clear()
    with pytest.raises(mc.errors.DeltaBaseMismatchError, match="put the checkpoint it was adapted from there"):
        load_base(name)


def runner(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = run_workflow([*map(str, argv)], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def main_prompt(**changes) -> dict:
    """The shipped main workflow on the tiny checkpoint at 16 px, with `changes` as {node: {input: value}}."""
    prompt = json.loads(json.dumps(MAIN_API))
    prompt["1"]["inputs"]["ckpt_name"] = "tiny.safetensors"
    prompt["2"]["inputs"]["size"] = 16
    prompt["3"]["inputs"]["steps"] = 1
    prompt["4"]["inputs"]["count"] = 2
    for nid, inputs in changes.items():
        prompt[nid]["inputs"].update(inputs)
    return prompt


def test_a_corrupt_checkpoint_in_the_runner_is_one_line_and_exit_1(tiny_ckpt, tmp_path):
    data = tiny_ckpt[1].read_bytes()
    tiny_ckpt[1].write_bytes(data[: len(data) // 2])
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(main_prompt()))
    code, out, err = runner(wf, "--output", tmp_path / "out")
    assert code == 1 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("node 1 (Load MetaGAN) failed: TruncatedCheckpointError: ")
    assert "tiny.safetensors" in err.splitlines()[-1] and "copy it again" in err.splitlines()[-1]


def test_a_lying_checkpoint_in_the_cli_is_one_line_and_exit_2(tmp_path):
    model = tiny_model(16)
    path = write_with_metadata(model, tmp_path / "liar.safetensors", model_config=lying_config(model, z_dim=10 ** 8))
    proc = subprocess.run([sys.executable, "-m", "meta_core", "sample", "--checkpoint", str(path), "--out",
                           str(tmp_path / "png"), "--device", "cpu"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {path}: tensor 'G.mapping.layers.0.weight' has shape (16, 16) "
                                                "but the config builds (16, 100000000): the file is damaged or was "
                                                "edited"]


# ---------------------------------------------------------------------------------------------
# 1. References
# ---------------------------------------------------------------------------------------------

def test_no_reference_and_one_reference_through_the_adapt_node(tiny_ckpt):
    base = load_base()
    with pytest.raises(mc.ReferenceImageError, match="no reference images"):
        adapt_node(base, torch.zeros(0, 16, 16, 3))
    model, preview = adapt_node(base, torch.rand(1, 16, 16, 3))
    assert model.content_hash() != base.content_hash() and preview.shape[-1] == 3


@pytest.mark.parametrize("images, text", [
    (torch.rand(1, 1, 1, 3), "is 1x1 pixels: use images of at least 8x8"),
    (torch.full((2, 16, 16, 3), float("nan")), "NaN or infinite"),
    (torch.full((1, 16, 16, 3), float("inf")), "NaN or infinite"),
    (torch.full((1, 16, 16, 3), 255.0), "expected 0..1"),
    (torch.full((1, 16, 16, 3), -0.5), "expected 0..1"),
    (torch.rand(3, 16, 16), "expected an IMAGE batch"),  # a MASK
])
def test_bad_reference_tensors_through_the_adapt_node(tiny_ckpt, images, text):
    with pytest.raises(mc.ReferenceImageError, match=text):
        adapt_node(load_base(), images)


def test_1x1_reference_file_through_the_loader_node(home):
    folder = input_folder("tiny")
    Image.new("RGB", (1, 1), (255, 0, 0)).save(folder / "dot.png")
    with pytest.raises(mc.DataError, match=r"dot.png: 1x1 pixels is too small"):
        run_node("MetaGANLoadReferences", folder="tiny", size=16, background="#FFFFFF")
    with pytest.raises(ReferenceImageError, match="at least 8x8"):
        prepare_references(torch.rand(1, 3, 1, 1), 16)


def test_8192x8192_reference_in_meta_core():
    big = torch.zeros(1, 3, 8192, 8192)
    big[:, 0, :, :4096] = 1.0  # left half red, right half black
    peak = peak_rss_bytes()
    out = prepare_references(big, 16)
    assert out.shape == (1, 3, 16, 16)
    torch.testing.assert_close(out[0, 0, :, :7], torch.ones(16, 7))
    torch.testing.assert_close(out[0, 0, :, 9:], torch.zeros(16, 7))
    assert peak_rss_bytes() - peak < GiB  # the 768 MiB input is never copied whole


def _halves(size: int) -> Image.Image:
    arr = np.zeros((size, size, 4), np.uint8)
    arr[:, : size // 2] = (255, 0, 0, 255)    # left: opaque red
    arr[:, size // 2:, 2] = 255               # right: transparent blue (shows the background)
    return Image.fromarray(arr, "RGBA")


def test_8192x8192_reference_file_through_the_loader_node(home):
    folder = input_folder("huge")
    _halves(8192).save(folder / "big.png")
    _halves(512).save(input_folder("small") / "small.png")
    peak = peak_rss_bytes()
    (big,) = run_node("MetaGANLoadReferences", folder="huge", size=32, background="#00FF00")
    assert peak_rss_bytes() - peak < GiB  # was 3.6 GB as float32 before box reduction
    (small,) = run_node("MetaGANLoadReferences", folder="small", size=32, background="#00FF00")
    assert big.shape == (1, 32, 32, 3)
    away = [*range(0, 14), *range(18, 32)]  # the boundary column is filtered differently; the rest agrees
    torch.testing.assert_close(big[:, :, away], small[:, :, away], atol=2 / 255, rtol=0)
    torch.testing.assert_close(big[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(big[0, 0, -1], torch.tensor([0.0, 1.0, 0.0]))


def test_8192x8192_reference_through_the_adapt_node(tiny_ckpt):
    big = torch.rand(1, 8192, 8192, 3, generator=torch.Generator().manual_seed(0))  # 768 MiB, as LoadImage gives
    peak = peak_rss_bytes()
    model, preview = adapt_node(load_base(), big)
    assert bool(torch.isfinite(preview).all()) and model.resolution == 16
    assert peak_rss_bytes() - peak < 1.5 * GiB


def test_gray_rgba_16bit_and_mixed_sizes_through_the_loader_and_adapt_nodes(tiny_ckpt):
    folder = input_folder("mixed")
    Image.fromarray(np.full((30, 20), 200, np.uint8), "L").save(folder / "a_gray.png")
    Image.fromarray(np.full((40, 40, 2), (90, 255), np.uint8), "LA").save(folder / "b_gray_alpha.png")
    Image.fromarray(np.full((17, 64, 4), (0, 0, 255, 0), np.uint8), "RGBA").save(folder / "c_rgba.png")
    Image.fromarray(np.full((48, 48), 32768, np.uint16)).save(folder / "d_16bit.png")
    Image.new("RGB", (100, 80), (10, 20, 30)).save(folder / "e_rgb.jpg", quality=100)
    (folder / "notes.txt").write_text("not an image")
    (images,) = run_node("MetaGANLoadReferences", folder="mixed", size=16, background="#FFFFFF")
    assert images.shape == (5, 16, 16, 3) and images.dtype == torch.float32
    torch.testing.assert_close(images[0], torch.full((16, 16, 3), 200 / 255), atol=1 / 255, rtol=0)
    torch.testing.assert_close(images[1], torch.full((16, 16, 3), 90 / 255), atol=1 / 255, rtol=0)
    torch.testing.assert_close(images[2], torch.ones(16, 16, 3))          # transparent: the background
    torch.testing.assert_close(images[3], torch.full((16, 16, 3), 128 / 255), atol=1 / 255, rtol=0)  # 32768/65535
    model, preview = adapt_node(load_base(), images)
    assert bool(torch.isfinite(preview).all())


def test_16bit_png_keeps_full_precision(tmp_path):
    values = (np.arange(32 * 32).reshape(32, 32) * 61).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    img = read_image(tmp_path / "deep.png")
    assert img.shape == (1, 32, 32)
    torch.testing.assert_close(img[0], torch.from_numpy(values.astype(np.float32) / 65535), atol=1e-7, rtol=0)


def test_reference_folders_that_are_empty_broken_or_too_big(home, monkeypatch):
    input_folder("empty")
    (input_folder("empty") / "readme.txt").write_text("no images here")
    with pytest.raises(mc.DataError, match="holds no images"):
        run_node("MetaGANLoadReferences", folder="empty", size=16, background="#FFFFFF")
    broken = input_folder("broken")
    Image.new("RGB", (20, 20)).save(broken / "good.png")
    (broken / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(mc.DataError, match="bad.png: cannot read this image"):
        run_node("MetaGANLoadReferences", folder="broken", size=16, background="#FFFFFF")
    many = input_folder("many")
    for i in range(3):
        Image.new("RGB", (20, 20)).save(many / f"{i}.png")
    monkeypatch.setattr(PACK.nodes.loaders, "MAX_OUTPUT_BYTES", 2 * 16 * 16 * 12)
    with pytest.raises(mc.DataError, match="holds 3 images.*move a representative subset"):
        run_node("MetaGANLoadReferences", folder="many", size=16, background="#FFFFFF")


# ---------------------------------------------------------------------------------------------
# 1. Parameters
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, text", [
    ({"steps": -1}, "steps -1 must be 0"),
    ({"learning_rate": float("nan")}, "learning_rate nan"),
    ({"learning_rate": float("inf")}, "learning_rate inf"),
    ({"learning_rate": -0.01}, "learning_rate -0.01"),
    ({"strategy": "lora"}, "unknown strategy 'lora'"),
    ({"augment": "bogus"}, "unknown augment 'bogus'"),
    ({"anchor_weight": -0.5}, "anchor_weight -0.5 must be -1"),
    ({"anchor_weight": float("nan")}, "anchor_weight nan"),
    ({"seed": -1}, "seed -1"),
])
def test_bad_adapt_parameters_are_refused_not_replaced_by_defaults(tiny_ckpt, changes, text):
    with pytest.raises(mc.ConfigError, match=text):
        adapt_node(load_base(), torch.rand(2, 16, 16, 3), **changes)


@pytest.mark.parametrize("node, changes, text", [
    ("MetaGANSample", {"truncation": 2.5}, "truncation 2.5 must be in"),
    ("MetaGANSample", {"truncation": float("nan")}, "truncation nan"),
    ("MetaGANSample", {"count": 0}, "count 0"),
    ("MetaGANSample", {"seed": 2 ** 64}, "seed"),
    ("MetaGANInterpolate", {"frames": 1}, "frames 1"),
    ("MetaGANInterpolate", {"truncation": -0.1}, "truncation -0.1"),
    ("MetaGANInterpolate", {"space": "q"}, "space 'q'"),
    ("MetaGANInterpolate", {"frames": 10 ** 9}, "ask for at most"),
])
def test_bad_sampling_parameters_through_the_nodes(tiny_ckpt, node, changes, text):
    inputs = {"MetaGANSample": dict(seed=0, count=2, truncation=1.0),
              "MetaGANInterpolate": dict(seed_a=0, seed_b=1, frames=3, truncation=1.0, space="w")}[node]
    inputs.update(changes)
    with pytest.raises(mc.ConfigError, match=text):
        run_node(node, meta_gan=load_base(), **inputs)


# ---------------------------------------------------------------------------------------------
# 1. Workflows through run_workflow.py (the real pack): one line per problem, exit 2, nothing run
# ---------------------------------------------------------------------------------------------

def _api(edit):
    prompt = json.loads(json.dumps(MAIN_API))
    edit(prompt)
    return json.dumps(prompt)


def _ui(edit):
    wf = json.loads(json.dumps(MAIN_UI))
    edit(wf)
    return json.dumps(wf)


WORKFLOW_CASES = [
    ("malformed_json", '{"1": {"class_type": ', "is not valid JSON"),
    ("empty_file", "", "is not valid JSON"),
    ("not_a_workflow", "[1, 2, 3]", "neither a ComfyUI workflow"),
    ("deep_nesting", "[" * 100_000 + "]" * 100_000, "cannot be read as a workflow"),
    ("5000_digit_number", '{"1": ' + "9" * 5000 + "}", "cannot be read as a workflow"),
    ("unknown_node", _api(lambda p: p["4"].update(class_type="NoSuchNode")), "node type 'NoSuchNode' is not installed"),
    ("missing_input", _api(lambda p: p["4"]["inputs"].pop("count")), "required input 'count' is missing"),
    ("link_to_missing_node", _api(lambda p: p["4"]["inputs"].update(meta_gan=["42", 0])), "linked to node 42"),
    ("link_to_missing_slot", _api(lambda p: p["4"]["inputs"].update(meta_gan=["3", 7])), "linked to output 7"),
    ("cycle", _api(lambda p: p["3"]["inputs"].update(meta_gan=["3", 0])), "dependency cycle 3 -> 3"),
    ("wrong_type", _api(lambda p: p["4"]["inputs"].update(meta_gan=["2", 0])), "takes META_GAN but is linked"),
    ("out_of_range", _api(lambda p: p["4"]["inputs"].update(count=0)), "0 is smaller than the minimum 1"),
    ("not_in_list", _api(lambda p: p["3"]["inputs"].update(strategy="lora")), "'lora' is not one of"),
    ("nan_value", _api(lambda p: p["4"]["inputs"].update(truncation=float("nan"))), "nan is not a finite number"),
    ("inputs_not_an_object", _api(lambda p: p["4"].update(inputs=[1, 2])), "'inputs' must be an object"),
    ("huge_graph", _api(lambda p: p.update({str(i): {"class_type": "MetaGANLoader", "inputs": {}}
                                           for i in range(100, 10_101)})), "at most 10000 are accepted"),
    ("too_many_links", _api(lambda p: p["4"]["inputs"].update({f"x{i}": ["3", 0] for i in range(100_001)})),
     "at most 100000 are accepted"),
    ("ui_inputs_not_a_list", _ui(lambda w: w["nodes"][2].update(inputs=5)), "required input 'meta_gan' is missing"),
    ("ui_extra_not_an_object", _ui(lambda w: w.update(extra=[1], definitions="x")), None),
    ("ui_link_infinite_slot", _ui(lambda w: w["links"].append([99, 1, float("inf"), 2, 0, "X"])), "malformed link"),
    ("ui_widget_not_an_object", _ui(lambda w: w["nodes"][2]["inputs"].append({"name": "seed", "link": 1,
                                                                            "widget": "seed"})), None),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in WORKFLOW_CASES], ids=[c[0] for c in WORKFLOW_CASES])
def test_bad_workflows_give_one_line_per_problem_and_exit_2(home, tmp_path, text, expected):
    path = tmp_path / "wf.json"
    path.write_text(text)
    code, out, err = runner(path, "--check", "--output", tmp_path / "out")
    if expected is None:  # malformed parts the converter may ignore: valid, or problems; never a crash
        assert code in (0, 2) and "Traceback" not in err
        return
    assert code == 2 and out == "" and "Traceback" not in err, err
    lines = err.splitlines()
    assert lines[-1].endswith("nothing was run.") and expected in err
    assert all(line.startswith(("node ", "workflow: ", "warning: ")) for line in lines[:-1]), lines
    assert not (tmp_path / "out").exists()


def test_a_workflow_file_that_is_a_folder_or_missing(home, tmp_path):
    for path in (tmp_path, tmp_path / "missing.json"):
        code, out, err = runner(path, "--check")
        assert code == 2 and err.splitlines()[0].startswith("workflow: cannot read")


# ---------------------------------------------------------------------------------------------
# 1. File names for saving
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["CON.safetensors", "nul.txt", "LPT9", "a/AUX/b", "com1/x", "..", "./x", "x/.",
                                    "\\\\server\\share\\x", "D:\\x", "/etc/x"])
def test_more_unsafe_save_names_are_refused(tiny_ckpt, prefix):
    with pytest.raises(mc.ConfigError, match="filename_prefix"):
        run_node("MetaGANSaveAdapted", meta_gan=load_base(), filename_prefix=prefix, format="full")


def test_saving_never_follows_a_link_out_of_the_model_folder(tiny_ckpt, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (model_folder() / "escape").symlink_to(outside, target_is_directory=True)
    with pytest.raises(mc.ConfigError, match="leads outside the model folder"):
        run_node("MetaGANSaveAdapted", meta_gan=load_base(), filename_prefix="escape/x", format="full")
    assert list(outside.iterdir()) == []


def test_saving_is_confined_numbered_and_atomic(tiny_ckpt, monkeypatch):
    base = load_base()
    (model_folder() / "hero_00001.safetensors").write_bytes(b"someone else's file")
    (name,) = run_node("MetaGANSaveAdapted", meta_gan=base, filename_prefix="hero", format="full")["result"]
    assert name == "hero_00002.safetensors"
    assert (model_folder() / "hero_00001.safetensors").read_bytes() == b"someone else's file"
    before = sorted(p.name for p in model_folder().iterdir())

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(mc.checkpoint, "save_file", disk_full)
    with pytest.raises(OSError):
        run_node("MetaGANSaveAdapted", meta_gan=base, filename_prefix="hero", format="full")
    assert sorted(p.name for p in model_folder().iterdir()) == before  # no partial or temporary file


# ---------------------------------------------------------------------------------------------
# 3. Training that cannot quietly fail
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [1, 3], ids=["every_step_undone", "more_than_max_rollbacks"])
def test_diverging_adaptation_in_the_node_stops_with_a_message_and_keeps_the_base(tiny_ckpt, monkeypatch, steps):
    # With max_rollbacks 1, 3 steps raise in meta_core; 1 step, undone, used to return the base unchanged.
    base = load_base()
    before = base.content_hash()
    strict = base.with_params(base.g_params(), base.d_params(),
                              adapt_defaults=dataclasses.replace(base.adapt_defaults, max_rollbacks=1))
    monkeypatch.setattr(mc.losses, "d_loss", lambda real, fake, *a: (real.mean() + fake.mean()) * float("nan"))
    with pytest.raises(mc.TrainingDivergedError, match="lower the learning rate"):
        adapt_node(strict, torch.rand(2, 16, 16, 3), steps=steps)
    assert base.content_hash() == before and load_base() is base


def test_a_broken_model_gives_an_error_not_nan_images(tiny_ckpt):
    base = load_base()
    g = base.g_params()
    broken = base.with_params({k: v * float("nan") if k == "const" else v for k, v in g.items()}, base.d_params())
    for node, inputs in (("MetaGANSample", dict(seed=0, count=2, truncation=1.0)),
                         ("MetaGANInterpolate", dict(seed_a=0, seed_b=1, frames=3, truncation=0.5, space="w"))):
        with pytest.raises(mc.TrainingDivergedError, match="NaN or infinite pixels"):
            run_node(node, meta_gan=broken, **inputs)


# ---------------------------------------------------------------------------------------------
# 4. Cancel and reuse
# ---------------------------------------------------------------------------------------------

def test_cancel_sampling_between_chunks_stops_within_one_chunk_and_keeps_the_cached_base(tiny_ckpt, monkeypatch):
    base = load_base()
    state = {k: v.clone() for k, v in base.state_dict().items()}
    monkeypatch.setattr(mc.sampling, "default_chunk", lambda resolution: 4)
    reported = []

    def hook(value, total, preview, node_id=None):
        reported.append((value, total))
        if value == 4:
            mm.interrupt_current_processing(True)  # what ComfyUI's cancel button does

    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run_node("MetaGANSample", meta_gan=base, seed=0, count=40, truncation=0.7)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
        mm.interrupt_current_processing(False)
    assert reported == [(4, 40)]  # the next chunk's check raised: one chunk after the cancel, not nine
    again = load_base()
    assert again is base and all(torch.equal(v, state[k]) for k, v in again.state_dict().items())
    (images,) = run_node("MetaGANSample", meta_gan=again, seed=0, count=4, truncation=0.7)  # still usable
    assert images.shape == (4, 16, 16, 3)


def test_a_pending_cancel_stops_interpolation_before_it_starts(tiny_ckpt):
    base = load_base()
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run_node("MetaGANInterpolate", meta_gan=base, seed_a=0, seed_b=1, frames=3, truncation=1.0, space="w")
    finally:
        mm.interrupt_current_processing(False)


# RSS growth allowed over 100 runs, after warm-up. Measured on a 2-core CPU: 0.4-1.2 MiB (0.05 s a run); keeping
# one adapted model per run (a deliberate leak) grew it by 26 MiB.
MEMORY_BOUND = 8 << 20


def _repeat_main_graph(runs: int, tmp_path) -> tuple[int, float]:
    torch.set_num_threads(1)  # memory, not speed, is measured: no thread spin-waits on a shared machine (restored)
    defs = headless.build_registry([str(ROOT)]).node_defs()  # after the checkpoint exists: it lists it
    prompt = main_prompt()
    folder_paths.set_output_directory(str(tmp_path / "out"))
    for _ in range(2):  # warm-up: lazy imports, allocator pools, the model cache
        headless.run_prompt(prompt, defs)
    gc.collect()
    before, start = rss_bytes(), time.perf_counter()
    for _ in range(runs):
        result = headless.run_prompt(prompt, defs)
        assert len(result.saved()) == 3  # 2 samples and the preview grid
    gc.collect()
    return rss_bytes() - before, time.perf_counter() - start


def test_running_the_main_graph_100_times_does_not_grow_memory(tiny_ckpt, tmp_path, capsys):
    # About 5 s on an idle 2-core CPU, so it stays in the default run.
    growth, seconds = _repeat_main_graph(100, tmp_path)
    with capsys.disabled():
        print(f"\n[memory] 100 runs of the main graph: RSS grew by {growth / 2**20:.1f} MiB in {seconds:.1f} s")
    assert growth < MEMORY_BOUND, f"RSS grew by {growth / 2**20:.1f} MiB over 100 runs (bound {MEMORY_BOUND >> 20} MiB)"


# ---------------------------------------------------------------------------------------------
# 5. Determinism
# ---------------------------------------------------------------------------------------------

def _pngs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_the_same_workflow_gives_byte_identical_pngs_in_and_across_processes(tiny_ckpt, tmp_path):
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(main_prompt()))
    from comfy.cli_args import args as cli_args

    outputs = []
    try:
        for i in range(2):
            code, out, err = runner(wf, "--output", tmp_path / f"in{i}", "--cpu")
            assert code == 0, err
            outputs.append(_pngs(tmp_path / f"in{i}"))
    finally:
        cli_args.cpu = False
    env = {**os.environ, "METAGAN_COMFY_BASE": str(folder_paths.get_base_directory())}
    proc = subprocess.run([sys.executable, "run_workflow.py", str(wf), "--output", str(tmp_path / "sub"), "--cpu"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outputs.append(_pngs(tmp_path / "sub"))
    assert len(outputs[0]) == 3 and set(outputs[0]) == {"metagan/samples_00001_.png", "metagan/samples_00002_.png",
                                                        "metagan/preview_00001_.png"}
    assert outputs[0] == outputs[1] == outputs[2]


# ---------------------------------------------------------------------------------------------
# 6. No side effects, no network
# ---------------------------------------------------------------------------------------------

AUDIT = r"""
import json, os, sys, threading
events = []
WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def hook(event, args):
    if event == "open":
        path, mode, flags = args
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & WRITES):
            events.append(["write", str(path)])
    elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.unlink", "os.symlink",
                   "os.truncate", "shutil.rmtree", "shutil.copyfile"):
        events.append([event, str(args[0])])
    elif event.startswith("socket.") and event not in ("socket.gethostname", "socket.getservbyname"):
        events.append([event, repr(args)[:200]])
    elif event in ("_thread.start_new_thread", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn",
                   "os.fork"):
        events.append([event, ""])
"""


def test_importing_the_pack_starts_no_threads_opens_no_sockets_writes_no_files(tmp_path):
    # The libraries the pack imports are imported before the measured window, so that it measures the pack: some
    # builds of them act at their own import (torch 2.14.1's CUDA build runs `ldconfig -p` through
    # subprocess.Popen with stdout to /dev/null while it looks for its libraries).
    code = AUDIT + r"""
sys.path.insert(0, sys.argv[1])
import numpy, PIL.Image, safetensors.torch, torch, tqdm
import comfy_env
threads = threading.active_count()
sys.addaudithook(hook)
pack = comfy_env.load_pack(sys.argv[1])
assert len(pack.NODE_CLASS_MAPPINGS) == 6
print(json.dumps({"events": events, "threads": threading.active_count() - threads}))
"""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(tmp_path),
           "METAGAN_COMFY_BASE": str(tmp_path / "comfy")}
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"events": [], "threads": 0}
    assert sorted(os.listdir(tmp_path)) == []


SERVER = r"""
import http.server, threading, urllib.parse
OBJECT_INFO, PNG = open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()

class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def send(self, body, ctype="application/json"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/object_info":
            self.send(OBJECT_INFO)
        elif path == "/history/p-1":
            self.send(json.dumps({"p-1": {"status": {"status_str": "success"}, "outputs": {
                "5": {"images": [{"filename": "s_00001_.png", "subfolder": "", "type": "output"}]}}}}).encode())
        elif path == "/view":
            self.send(PNG, "image/png")
        else:
            self.send_error(404)
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send(json.dumps({"prompt_id": "p-1", "number": 0, "node_errors": {}}).encode())

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_address[1]}"
"""


def test_server_mode_talks_only_to_the_given_url_even_with_proxies_set(tmp_path):
    (tmp_path / "object_info.json").write_text(json.dumps(headless.build_registry([str(ROOT)]).object_info()))
    Image.new("RGB", (2, 2)).save(tmp_path / "img.png")
    (tmp_path / "wf.json").write_text(json.dumps(MAIN_API))
    code = AUDIT + SERVER + r"""
sys.path.insert(0, sys.argv[1])
from headless.cli import main
sys.addaudithook(hook)
rc = main([sys.argv[4], "--server", url, "--output", sys.argv[5]])
connects = sorted({e[1] for e in events if e[0] == "socket.connect"})
print(json.dumps({"rc": rc, "url": url, "connects": connects,
                  "resolves": sorted({e[1] for e in events if e[0] == "socket.getaddrinfo"})}))
"""
    env = {**os.environ, "HTTP_PROXY": "http://10.255.255.1:3128", "http_proxy": "http://10.255.255.1:3128",
           "HTTPS_PROXY": "http://10.255.255.1:3128", "ALL_PROXY": "socks5://10.255.255.1:1080", "NO_PROXY": ""}
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT), str(tmp_path / "object_info.json"),
                           str(tmp_path / "img.png"), str(tmp_path / "wf.json"), str(tmp_path / "dl")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["rc"] == 0, proc.stderr[-3000:]
    port = report["url"].rsplit(":", 1)[1]
    assert report["connects"], "no connection was recorded"
    assert all(f"'127.0.0.1', {port})" in c for c in report["connects"]), report["connects"]
    assert all(f"'127.0.0.1', {port}" in r for r in report["resolves"]), report["resolves"]
    assert (tmp_path / "dl" / "s_00001_.png").is_file()


def test_server_redirects_are_refused(home, tmp_path):
    import http.server
    import threading

    class Redirect(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", "http://10.255.255.1/object_info")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wf = tmp_path / "wf.json"
        wf.write_text(json.dumps(MAIN_API))
        code, out, err = runner(wf, "--server", f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1 and "Traceback" not in err
    assert err.splitlines()[-1].endswith("redirected to http://10.255.255.1/object_info; the client only talks to "
                                         "the URL it was given.")


def test_server_downloads_are_atomic_and_confined(tmp_path, monkeypatch):
    class Client:
        def view(self, filename, subfolder, type_):
            return b"\x89PNG fake image bytes"

    outputs = {"5": {"images": [{"filename": "a.png", "subfolder": "sub", "type": "output"}]}}
    (saved,) = headless.client.download_outputs(Client(), outputs, str(tmp_path / "dl"))
    assert saved == str(tmp_path / "dl" / "sub" / "a.png") and Path(saved).read_bytes() == b"\x89PNG fake image bytes"

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(headless.client.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        headless.client.download_outputs(Client(), outputs, str(tmp_path / "dl"))
    assert sorted(p.name for p in (tmp_path / "dl" / "sub").iterdir()) == ["a.png"]  # no half file, no temp file
    for bad in ({"filename": "x.png", "subfolder": "../..", "type": "output"},
                {"filename": "/etc/x.png", "subfolder": "", "type": "output"},
                {"filename": "..", "subfolder": "", "type": "output"}):
        with pytest.raises(headless.ServerError, match="unsafe file name"):
            headless.client.download_outputs(Client(), {"1": {"images": [bad]}}, str(tmp_path / "dl"))
