"""The vendored ComfyUI interface stubs (comfy_stubs/) and comfy_env's import rules.

Signatures and node definitions are checked against ComfyUI v0.3.64 (commit a125cd84), the
version the stubs mirror.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import comfy_env

REPO = Path(__file__).resolve().parents[1]
FAKE_PACK = REPO / "tests" / "fixtures" / "fake_pack"

comfy_env.ensure_comfy_interface()

import comfy.model_management as mm  # noqa: E402  (after ensure_comfy_interface, on purpose)
import comfy.utils  # noqa: E402
import folder_paths  # noqa: E402
import nodes  # noqa: E402
import torch  # noqa: E402
from comfy.cli_args import args as cli_args  # noqa: E402
from comfy_extras import nodes_images  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture
def home(comfy_stubs_home):
    return comfy_stubs_home


def run_python(code: str, env_extra: dict | None = None, cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "METAGAN_COMFY_BASE")}
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=str(cwd or REPO), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# ---------------------------------------------------------------------------------------------
# comfy_env: sys.path rules
# ---------------------------------------------------------------------------------------------

def test_stubs_are_in_use_here():
    comfy_env.ensure_comfy_interface()
    assert sys.path[0] == comfy_env.STUBS_DIR
    for module in (folder_paths, nodes, comfy.utils, mm, nodes_images):
        assert Path(module.__file__).resolve().is_relative_to(Path(comfy_env.STUBS_DIR).resolve())
    assert comfy_env.find_real_comfyui() is None
    assert comfy_env.using_stubs()


def test_ensure_is_idempotent_and_stubs_shadow_the_packs_own_nodes_package(tmp_path):
    # A repository root with its own `nodes/` package, first on sys.path, with that package already imported.
    (tmp_path / "nodes").mkdir()
    (tmp_path / "nodes" / "__init__.py").write_text("PACK_NODES = True\n")
    (tmp_path / "nodes" / "loaders.py").write_text("")
    out = run_python(f"""
        import importlib.util, os, sys
        sys.path.insert(0, {str(REPO)!r})
        sys.path.insert(0, {str(tmp_path)!r})
        import nodes, nodes.loaders
        assert nodes.PACK_NODES
        import comfy_env
        stubs = comfy_env.STUBS_DIR
        assert comfy_env.ensure_comfy_interface() is False
        assert comfy_env.ensure_comfy_interface() is False
        assert sys.path[0] == stubs and sys.path.count(stubs) == 1
        assert "nodes" not in sys.modules and "nodes.loaders" not in sys.modules
        assert importlib.util.find_spec("nodes").origin == os.path.join(stubs, "nodes.py")
        # Something pushes the repository root in front again: the next call restores the order.
        sys.path.insert(0, {str(tmp_path)!r})
        assert comfy_env.ensure_comfy_interface() is False
        assert sys.path[0] == stubs and sys.path.count(stubs) == 1
        assert importlib.util.find_spec("folder_paths").origin == os.path.join(stubs, "folder_paths.py")
        print("ok")
    """)
    assert out.strip() == "ok"


def test_a_real_comfyui_is_never_shadowed(tmp_path):
    real = tmp_path / "ComfyUI"
    (real / "comfy").mkdir(parents=True)
    (real / "folder_paths.py").write_text("REAL = True\n")
    (real / "nodes.py").write_text("REAL = True\n")
    (real / "comfy" / "model_management.py").write_text("")
    out = run_python(f"""
        import importlib.util, sys
        sys.path.insert(0, {str(real)!r})
        sys.path.insert(0, {str(REPO)!r})
        import comfy_env
        assert comfy_env.find_real_comfyui() == {str(real)!r}
        assert comfy_env.ensure_comfy_interface() is True
        assert comfy_env.STUBS_DIR not in sys.path
        # A stubs folder left on sys.path by an earlier call is taken off again.
        sys.path.insert(0, comfy_env.STUBS_DIR)
        assert comfy_env.ensure_comfy_interface() is True
        assert comfy_env.STUBS_DIR not in sys.path
        import folder_paths
        assert folder_paths.REAL
        print("ok")
    """)
    assert out.strip() == "ok"


def test_base_directory_comes_from_the_environment_or_defaults_to_comfy_home(tmp_path):
    code = f"""
        import sys
        sys.path.insert(0, {comfy_env.STUBS_DIR!r})
        import folder_paths
        print(folder_paths.base_path)
        print(folder_paths.get_output_directory())
        print(folder_paths.get_full_path("checkpoints", "x.safetensors"))
    """
    base, output, missing = run_python(code, {"METAGAN_COMFY_BASE": str(tmp_path)}).split("\n")[:3]
    assert base == str(tmp_path) and output == str(tmp_path / "output") and missing == "None"
    assert not any(tmp_path.iterdir()), "importing folder_paths must not create folders"
    default = run_python(code).split("\n")[0]
    assert default == str(REPO / "comfy_home")


# ---------------------------------------------------------------------------------------------
# comfy_env.load_pack
# ---------------------------------------------------------------------------------------------

def test_load_pack_imports_like_comfyui_and_keeps_the_packs_nodes_relative():
    pack = comfy_env.load_pack(FAKE_PACK)
    assert pack.__name__ == comfy_env.pack_module_name(FAKE_PACK) == "fake_pack"
    assert pack.__path__ == [str(FAKE_PACK)]
    assert {"FakeSeedImage", "FakeSplit", "FakeStack", "FakeInspect"} <= set(pack.NODE_CLASS_MAPPINGS)
    assert sys.modules["fake_pack.nodes.generate"].comfy_nodes is sys.modules["nodes"] is nodes
    assert comfy_env.load_pack(str(FAKE_PACK) + os.sep) is pack  # loading again returns the same module


def test_pack_module_names_are_identifiers():
    assert comfy_env.pack_module_name("/x/comfyui-metagan") == "comfyui_metagan"
    assert comfy_env.pack_module_name("/x/3d.pack/") == "_3d_pack"


def test_load_pack_refuses_a_folder_without_init(tmp_path):
    with pytest.raises(comfy_env.PackLoadError, match="has no __init__.py"):
        comfy_env.load_pack(tmp_path)
    (tmp_path / "empty_pack").mkdir()
    (tmp_path / "empty_pack" / "__init__.py").write_text("")
    with pytest.raises(comfy_env.PackLoadError, match="defines no NODE_CLASS_MAPPINGS"):
        comfy_env.load_pack(tmp_path / "empty_pack")
    assert "empty_pack" not in sys.modules


# ---------------------------------------------------------------------------------------------
# folder_paths
# ---------------------------------------------------------------------------------------------

def test_default_folders_match_comfyui(home):
    assert folder_paths.models_dir == str(home / "models")
    assert folder_paths.supported_pt_extensions == {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl",
                                                     ".sft"}
    assert folder_paths.get_folder_paths("checkpoints") == [str(home / "models" / "checkpoints")]
    assert folder_paths.get_folder_paths("unet") == [str(home / "models" / "unet"),
                                                     str(home / "models" / "diffusion_models")]
    for getter, name in ((folder_paths.get_input_directory, "input"), (folder_paths.get_output_directory, "output"),
                         (folder_paths.get_temp_directory, "temp"), (folder_paths.get_user_directory, "user")):
        assert getter() == str(home / name)
    assert folder_paths.get_directory_by_type("output") == str(home / "output")
    assert folder_paths.get_directory_by_type("models") is None


def test_setters_move_directories(home, tmp_path):
    folder_paths.set_output_directory(str(tmp_path / "o"))
    folder_paths.set_input_directory(str(tmp_path / "i"))
    folder_paths.set_temp_directory(str(tmp_path / "t"))
    assert (folder_paths.get_output_directory(), folder_paths.get_input_directory(),
            folder_paths.get_temp_directory()) == (str(tmp_path / "o"), str(tmp_path / "i"), str(tmp_path / "t"))
    # Moving the base keeps directories and folders that are not under the old base.
    folder_paths.add_model_folder_path("checkpoints", str(tmp_path / "elsewhere"))
    folder_paths.set_base_directory(str(tmp_path / "newhome"))
    assert folder_paths.models_dir == str(tmp_path / "newhome" / "models")
    assert folder_paths.get_folder_paths("checkpoints") == [str(tmp_path / "newhome" / "models" / "checkpoints"),
                                                            str(tmp_path / "elsewhere")]
    assert folder_paths.get_output_directory() == str(tmp_path / "o")


def test_add_model_folder_path_orders_like_comfyui(home, tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    folder_paths.add_model_folder_path("brand_new", a)
    assert folder_paths.folder_names_and_paths["brand_new"] == ([a], set())
    folder_paths.add_model_folder_path("brand_new", b)
    folder_paths.add_model_folder_path("brand_new", a)  # already there: not added twice
    assert folder_paths.get_folder_paths("brand_new") == [a, b]
    folder_paths.add_model_folder_path("brand_new", c, is_default=True)
    folder_paths.add_model_folder_path("brand_new", b, is_default=True)  # moved to the front
    assert folder_paths.get_folder_paths("brand_new") == [b, c, a]
    folder_paths.add_model_folder_path("clip", a)  # legacy name
    assert folder_paths.get_folder_paths("text_encoders")[-1] == a


def test_pack_registration_keeps_user_configured_folders(home, tmp_path):
    user_dir = str(tmp_path / "my_models")
    folder_paths.folder_names_and_paths.pop("fake_models", None)  # as on a fresh start
    folder_paths.add_model_folder_path("fake_models", user_dir)  # e.g. from extra_model_paths.yaml
    for key in [k for k in sys.modules if k == "fake_pack" or k.startswith("fake_pack.")]:
        del sys.modules[key]
    pack = comfy_env.load_pack(FAKE_PACK)
    paths, exts = folder_paths.folder_names_and_paths["fake_models"]
    assert paths == [user_dir] and exts is folder_paths.supported_pt_extensions
    for key in [k for k in sys.modules if k == "fake_pack" or k.startswith("fake_pack.")]:
        del sys.modules[key]
    folder_paths.folder_names_and_paths.pop("fake_models")
    comfy_env.load_pack(FAKE_PACK)  # without user configuration: the default folder under models/
    assert folder_paths.get_folder_paths("fake_models") == [str(home / "models" / "fake_models")]
    assert pack is not None


def test_filename_list_and_full_path(home, tmp_path):
    first = home / "models" / "checkpoints"
    second = tmp_path / "more_checkpoints"
    for path in (first / "b.safetensors", first / "sub" / "a.ckpt", first / "notes.txt", first / ".git" / "x.pt",
                 second / "b.safetensors", second / "c.PT"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    folder_paths.add_model_folder_path("checkpoints", str(second))
    assert folder_paths.get_filename_list("checkpoints") == ["b.safetensors", "c.PT", os.path.join("sub", "a.ckpt")]
    assert folder_paths.get_full_path("checkpoints", "b.safetensors") == str(first / "b.safetensors")
    assert folder_paths.get_full_path("checkpoints", "c.PT") == str(second / "c.PT")
    assert folder_paths.get_full_path("checkpoints", "../../b.safetensors") == str(first / "b.safetensors")
    assert folder_paths.get_full_path("checkpoints", "missing.pt") is None
    assert folder_paths.get_full_path("no_such_folder", "b.safetensors") is None
    with pytest.raises(FileNotFoundError, match="Model in folder 'checkpoints' with filename 'missing.pt' not found."):
        folder_paths.get_full_path_or_raise("checkpoints", "missing.pt")
    (second / "new.pt").write_bytes(b"x")  # no stale cache
    assert "new.pt" in folder_paths.get_filename_list("checkpoints")


def test_save_image_path_numbering(home):
    out = folder_paths.get_output_directory()
    folder, name, counter, sub, prefix = folder_paths.get_save_image_path("ComfyUI", out, 64, 32)
    assert (folder, name, counter, sub, prefix) == (os.path.join(out, ""), "ComfyUI", 1, "", "ComfyUI")
    assert os.path.isdir(out)
    for existing in ("ComfyUI_00001_.png", "ComfyUI_00007_.png", "ComfyUI_00003_.webp", "Other_00009_.png",
                     "ComfyUIx_00010_.png"):
        Path(out, existing).write_bytes(b"")
    assert folder_paths.get_save_image_path("ComfyUI", out)[2] == 8
    folder, name, counter, sub, _ = folder_paths.get_save_image_path("runs/cat_%width%x%height%", out, 64, 32)
    assert (folder, name, counter, sub) == (os.path.join(out, "runs"), "cat_64x32", 1, "runs")
    with pytest.raises(Exception, match="Saving image outside the output folder is not allowed"):
        folder_paths.get_save_image_path("../escape", out)


def test_annotated_paths(home):
    Path(folder_paths.get_input_directory()).mkdir(parents=True)
    Path(folder_paths.get_input_directory(), "in.png").write_bytes(b"")
    assert folder_paths.get_annotated_filepath("in.png") == os.path.join(folder_paths.get_input_directory(), "in.png")
    assert folder_paths.get_annotated_filepath("x.png [output]") == os.path.join(folder_paths.get_output_directory(),
                                                                                 "x.png")
    assert folder_paths.get_annotated_filepath("x.png [temp]") == os.path.join(folder_paths.get_temp_directory(),
                                                                               "x.png")
    assert folder_paths.get_annotated_filepath("x.png", "/d") == os.path.join("/d", "x.png")
    assert folder_paths.exists_annotated_filepath("in.png") and folder_paths.exists_annotated_filepath("in.png [input]")
    assert not folder_paths.exists_annotated_filepath("in.png [output]")


# ---------------------------------------------------------------------------------------------
# comfy.model_management and comfy.utils
# ---------------------------------------------------------------------------------------------

def test_devices_and_interrupt_flag():
    assert mm.intermediate_device() == torch.device("cpu") == mm.unet_offload_device()
    assert isinstance(mm.get_torch_device(), torch.device)
    cli_args.cpu = True
    try:
        assert mm.get_torch_device() == torch.device("cpu")
    finally:
        cli_args.cpu = False
    mm.soft_empty_cache()
    mm.interrupt_current_processing()
    assert mm.processing_interrupted()
    with pytest.raises(mm.InterruptProcessingException):
        mm.throw_exception_if_processing_interrupted()
    assert not mm.processing_interrupted()  # raising clears the request
    mm.throw_exception_if_processing_interrupted()
    mm.interrupt_current_processing(True)
    mm.interrupt_current_processing(False)
    assert not mm.processing_interrupted()
    assert nodes.interrupt_processing is not None and nodes.before_node_execution() is None


def test_progress_bar_reports_through_the_hook_set_at_creation():
    calls = []
    previous = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda v, t, p, node_id=None: calls.append((v, t, p, node_id)))
    try:
        bar = comfy.utils.ProgressBar(4, node_id="7")
        bar.update(1)
        bar.update(2)
        bar.update_absolute(9, preview="img")  # clamped to total
        bar.update_absolute(2, total=10)
    finally:
        comfy.utils.set_progress_bar_global_hook(previous)
    assert calls == [(1, 4, None, "7"), (3, 4, None, "7"), (4, 4, "img", "7"), (2, 10, None, "7")]
    assert comfy.utils.ProgressBar(3).hook is previous


def test_common_upscale():
    x = torch.rand(2, 3, 8, 16)
    assert comfy.utils.common_upscale(x, 4, 4, "bilinear", "center").shape == (2, 3, 4, 4)
    assert comfy.utils.common_upscale(x, 32, 16, "nearest-exact", "disabled").shape == (2, 3, 16, 32)
    assert comfy.utils.common_upscale(x, 8, 4, "lanczos", "disabled").shape == (2, 3, 4, 8)
    video = torch.rand(1, 4, 5, 8, 8)  # [N, C, T, H, W]
    up = comfy.utils.common_upscale(video, 16, 16, "nearest-exact", "disabled")
    assert up.shape == (1, 4, 5, 16, 16) and torch.equal(up[:, :, 2, ::2, ::2], video[:, :, 2])
    with pytest.raises(NotImplementedError, match="bislerp"):
        comfy.utils.common_upscale(x, 4, 4, "bislerp", "disabled")


# ---------------------------------------------------------------------------------------------
# Core nodes: definitions as in ComfyUI v0.3.64, and behaviour
# ---------------------------------------------------------------------------------------------

def test_node_definitions_match_comfyui(home):
    Path(folder_paths.get_input_directory()).mkdir(parents=True)
    for name in ("b.png", "a.webp", "c.txt"):
        Path(folder_paths.get_input_directory(), name).write_bytes(b"")
    assert nodes.LoadImage.INPUT_TYPES() == {"required": {"image": (["a.webp", "b.png"], {"image_upload": True})}}
    assert (nodes.LoadImage.RETURN_TYPES, nodes.LoadImage.FUNCTION, nodes.LoadImage.CATEGORY) \
        == (("IMAGE", "MASK"), "load_image", "image")
    save = nodes.SaveImage.INPUT_TYPES()
    assert save["required"]["images"] == ("IMAGE", {"tooltip": "The images to save."})
    assert save["required"]["filename_prefix"][0] == "STRING" \
        and save["required"]["filename_prefix"][1]["default"] == "ComfyUI"
    assert save["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert (nodes.SaveImage.RETURN_TYPES, nodes.SaveImage.FUNCTION, nodes.SaveImage.OUTPUT_NODE,
            nodes.SaveImage.CATEGORY) == ((), "save_images", True, "image")
    assert nodes.PreviewImage.INPUT_TYPES() == {"required": {"images": ("IMAGE",)},
                                                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}
    assert issubclass(nodes.PreviewImage, nodes.SaveImage) and nodes.PreviewImage.OUTPUT_NODE
    assert nodes.ImageBatch.INPUT_TYPES() == {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",)}}
    assert (nodes.ImageBatch.RETURN_TYPES, nodes.ImageBatch.FUNCTION, nodes.ImageBatch.CATEGORY) \
        == (("IMAGE",), "batch", "image")
    webp = nodes_images.SaveAnimatedWEBP
    assert webp.INPUT_TYPES() == {
        "required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                     "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                     "lossless": ("BOOLEAN", {"default": True}),
                     "quality": ("INT", {"default": 80, "min": 0, "max": 100}),
                     "method": (["default", "fastest", "slowest"],)},
        "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}
    assert (webp.RETURN_TYPES, webp.FUNCTION, webp.OUTPUT_NODE, webp.CATEGORY) \
        == ((), "save_images", True, "image/animation")
    assert set(nodes.NODE_CLASS_MAPPINGS) == {"LoadImage", "SaveImage", "PreviewImage", "ImageBatch"}
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS == {"SaveImage": "Save Image", "PreviewImage": "Preview Image",
                                                "LoadImage": "Load Image", "ImageBatch": "Batch Images"}
    assert nodes_images.NODE_CLASS_MAPPINGS == {"SaveAnimatedWEBP": webp}
    assert nodes.MAX_RESOLUTION == 16384


def test_object_info_equals_real_comfyui(home):
    """The stubs publish what a live ComfyUI v0.3.64 answered on /object_info (recorded fixture)."""
    import headless

    recorded = json.loads((REPO / "tests" / "fixtures" / "comfyui_v0.3.64_object_info.json").read_text())["nodes"]
    Path(folder_paths.get_input_directory()).mkdir(parents=True)
    Path(folder_paths.get_input_directory(), "example.png").write_bytes(b"")  # the file list of that ComfyUI
    ours = json.loads(json.dumps(headless.core_registry().object_info()))
    assert ours == recorded


def test_load_image_without_input_folder_lists_nothing(home):
    assert nodes.LoadImage.INPUT_TYPES()["required"]["image"][0] == []


def test_save_image_writes_pngs_with_metadata(home):
    images = torch.rand(2, 5, 7, 3)
    prompt = {"1": {"class_type": "SaveImage", "inputs": {}}}
    result = nodes.SaveImage().save_images(images, "run/x", prompt=prompt, extra_pnginfo={"workflow": {"nodes": []}})
    assert result == {"ui": {"images": [{"filename": "x_00001_.png", "subfolder": "run", "type": "output"},
                                        {"filename": "x_00002_.png", "subfolder": "run", "type": "output"}]}}
    with Image.open(Path(folder_paths.get_output_directory(), "run", "x_00002_.png")) as img:
        assert img.size == (7, 5) and img.mode == "RGB"
        assert json.loads(img.text["prompt"]) == prompt and json.loads(img.text["workflow"]) == {"nodes": []}
        assert abs(torch.from_numpy(__import__("numpy").array(img)).float() / 255 - images[1]).max() <= 1 / 255 + 1e-6
    cli_args.disable_metadata = True
    try:
        nodes.SaveImage().save_images(images[:1], "run/x", prompt=prompt)
    finally:
        cli_args.disable_metadata = False
    with Image.open(Path(folder_paths.get_output_directory(), "run", "x_00003_.png")) as img:
        assert "prompt" not in img.text


def test_preview_image_goes_to_temp(home):
    result = nodes.PreviewImage().save_images(torch.rand(1, 4, 4, 3))
    (item,) = result["ui"]["images"]
    assert item["type"] == "temp" and item["filename"].startswith("ComfyUI_temp_")
    assert Path(folder_paths.get_temp_directory(), item["filename"]).is_file()


def test_load_image_gives_image_and_inverted_alpha_mask(home):
    input_dir = Path(folder_paths.get_input_directory())
    input_dir.mkdir(parents=True)
    rgba = Image.new("RGBA", (6, 4), (255, 0, 0, 64))
    rgba.save(input_dir / "rgba.png")
    Image.new("RGB", (3, 2), (0, 255, 0)).save(Path(folder_paths.get_output_directory()).parent / "out.png")
    image, mask = nodes.LoadImage().load_image("rgba.png")
    assert image.shape == (1, 4, 6, 3) and mask.shape == (1, 4, 6)
    assert torch.allclose(image[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(mask, torch.full((1, 4, 6), 1 - 64 / 255))
    assert nodes.LoadImage.VALIDATE_INPUTS("rgba.png") is True
    assert nodes.LoadImage.VALIDATE_INPUTS("nope.png") == "Invalid image file: nope.png"
    assert len(nodes.LoadImage.IS_CHANGED("rgba.png")) == 64
    Image.new("RGB", (3, 2)).save(input_dir / "rgb.jpg")
    _image, mask = nodes.LoadImage().load_image("rgb.jpg")
    assert mask.shape == (1, 64, 64) and not mask.any()


def test_image_batch_resizes_the_second_batch():
    (out,) = nodes.ImageBatch().batch(torch.rand(2, 8, 8, 3), torch.rand(1, 4, 6, 3))
    assert out.shape == (3, 8, 8, 3)


def test_save_animated_webp(home):
    frames = torch.rand(3, 8, 8, 3)
    result = nodes_images.SaveAnimatedWEBP().save_images(frames, 5.0, "anim", True, 80, "fastest",
                                                         prompt={"p": 1}, extra_pnginfo={"workflow": {"w": 2}})
    assert result == {"ui": {"images": [{"filename": "anim_00001_.webp", "subfolder": "", "type": "output"}],
                             "animated": (True,)}}
    with Image.open(Path(folder_paths.get_output_directory(), "anim_00001_.webp")) as img:
        assert img.n_frames == 3 and img.size == (8, 8)
        exif = img.getexif()
        assert exif[0x0110] == 'prompt:{"p": 1}' and exif[0x010F] == 'workflow:{"w": 2}'
