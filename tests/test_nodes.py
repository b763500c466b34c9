"""The node pack loaded the way ComfyUI loads it, over the vendored interface stubs."""
import dataclasses
import os
from pathlib import Path

import pytest
import torch

import comfy_env

ROOT = Path(__file__).resolve().parents[1]
comfy_env.ensure_comfy_interface()

import comfy.model_management  # noqa: E402  (the stubs, put on sys.path above)
import comfy.utils  # noqa: E402
import folder_paths  # noqa: E402

PACK = comfy_env.load_pack(str(ROOT))
NODES = PACK.NODE_CLASS_MAPPINGS
mc = __import__(PACK.__name__ + ".meta_core", fromlist=["checkpoint"])  # the pack's own meta_core


@pytest.fixture
def comfy_home(comfy_stubs_home):
    PACK.nodes.common.MODEL_CACHE.clear()
    return comfy_stubs_home


@pytest.fixture
def tiny_ckpt(comfy_home):
    cfg = mc.ModelConfig.for_resolution(16, channel_base=256, channel_max=16, z_dim=16, w_dim=16, mapping_layers=2)
    model = mc.MetaGAN.create(cfg, seed=0, adapt_defaults=mc.AdaptConfig(steps=3, batch_size=4, strategy="full"))
    folder = Path(folder_paths.folder_names_and_paths["meta_gan"][0][0])
    path = mc.checkpoint.save(model, folder / "tiny.safetensors")
    return "tiny.safetensors", path


def run_node(node_id, **inputs):
    cls = NODES[node_id]
    return getattr(cls(), cls.FUNCTION)(**inputs)


@pytest.fixture
def progress_events():
    events = []
    comfy.utils.set_progress_bar_global_hook(
        lambda value, total, preview, node_id=None: events.append((value, total, preview)))
    yield events
    comfy.utils.set_progress_bar_global_hook(None)


# --- registry -----------------------------------------------------------------------------------

def test_ids_are_unique_prefixed_and_named():
    assert set(NODES) == {"MetaGANLoader", "MetaGANLoadReferences", "MetaGANFewShotAdapt", "MetaGANSample",
                          "MetaGANInterpolate", "MetaGANSaveAdapted"}
    assert all(k.startswith("MetaGAN") for k in NODES)
    assert set(PACK.NODE_DISPLAY_NAME_MAPPINGS) == set(NODES)


@pytest.mark.parametrize("node_id", sorted(NODES))
def test_every_node_documents_itself(node_id):
    cls = NODES[node_id]
    assert cls.CATEGORY.startswith("MetaGAN/")
    assert isinstance(cls.DESCRIPTION, str) and len(cls.DESCRIPTION) > 20
    assert callable(getattr(cls, cls.FUNCTION))
    spec = cls.INPUT_TYPES()
    for section in spec.values():
        for name, entry in section.items():
            assert len(entry) == 2 and entry[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES)


def test_model_folder_keeps_user_paths_and_lists_only_safetensors(comfy_home, tiny_ckpt):
    user = comfy_home / "elsewhere"
    user.mkdir()
    folder_paths.add_model_folder_path("meta_gan", str(user))
    (user / "notes.txt").write_text("x")
    (user / "old.ckpt").write_bytes(b"\x80\x04")
    PACK.nodes.common.register_model_folder()
    paths = folder_paths.folder_names_and_paths["meta_gan"][0]
    assert str(user) in paths and sum(p == PACK.nodes.common.BUNDLED_CHECKPOINTS for p in paths) == 1
    names = NODES["MetaGANLoader"].INPUT_TYPES()["required"]["ckpt_name"][0]
    assert "tiny.safetensors" in names and not any(n.endswith((".txt", ".ckpt")) for n in names)


# --- loader and cache ---------------------------------------------------------------------------

def test_loader_caches_by_path_and_mtime(tiny_ckpt):
    name, path = tiny_ckpt
    (a,) = run_node("MetaGANLoader", ckpt_name=name)
    (b,) = run_node("MetaGANLoader", ckpt_name=name)
    assert a is b
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    (c,) = run_node("MetaGANLoader", ckpt_name=name)
    assert c is not a and c.content_hash() == a.content_hash()


def test_loader_error_names_the_file(comfy_home):
    folder = Path(folder_paths.folder_names_and_paths["meta_gan"][0][0])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "broken.safetensors").write_bytes(b"garbage that is not a model")
    with pytest.raises(mc.CheckpointError, match="broken.safetensors"):
        run_node("MetaGANLoader", ckpt_name="broken.safetensors")


# --- references ---------------------------------------------------------------------------------

def test_bundled_example_references_load(comfy_home):
    folders = NODES["MetaGANLoadReferences"].INPUT_TYPES()["required"]["folder"][0]
    assert "examples/micah" in folders
    (images,) = run_node("MetaGANLoadReferences", folder="examples/micah", size=32, background="#FFFFFF")
    assert images.shape == (10, 32, 32, 3) and images.dtype == torch.float32
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0


def test_input_folder_references_and_bad_inputs(comfy_home):
    from PIL import Image
    folder = Path(folder_paths.get_input_directory()) / "mychar"
    folder.mkdir(parents=True)
    Image.new("RGBA", (40, 30), (255, 0, 0, 0)).save(folder / "a.png")
    Image.new("L", (20, 20), 0).save(folder / "b.png")
    assert "mychar" in NODES["MetaGANLoadReferences"].INPUT_TYPES()["required"]["folder"][0]
    (images,) = run_node("MetaGANLoadReferences", folder="mychar", size=16, background="#00FF00")
    assert images.shape == (2, 16, 16, 3)
    torch.testing.assert_close(images[0, 0, 0], torch.tensor([0.0, 1.0, 0.0]))  # transparent -> background
    with pytest.raises(mc.DataError, match="#RRGGBB"):
        run_node("MetaGANLoadReferences", folder="mychar", size=16, background="greenish")
    with pytest.raises(mc.DataError, match="outside"):
        run_node("MetaGANLoadReferences", folder="../../etc", size=16, background="#FFFFFF")


# --- adapt, sample, interpolate -----------------------------------------------------------------

def test_adapt_returns_new_model_preview_and_reports_progress(tiny_ckpt, progress_events):
    (base,) = run_node("MetaGANLoader", ckpt_name=tiny_ckpt[0])
    before = base.content_hash()
    refs = torch.rand(3, 24, 20, 3, generator=torch.Generator().manual_seed(0))
    model, preview = run_node("MetaGANFewShotAdapt", meta_gan=base, references=refs, steps=0, learning_rate=0.0,
                              strategy="checkpoint default", augment="checkpoint default", seed=1)
    assert base.content_hash() == before and model.content_hash() != before
    assert preview.shape[0] == 1 and preview.shape[-1] == 3
    assert [e[:2] for e in progress_events] == [(1, 3), (2, 3), (3, 3)]  # steps=0: the checkpoint's 3
    assert all(e[2] is not None and e[2][0] == "JPEG" for e in progress_events)


def test_adapt_widgets_override_checkpoint_defaults(tiny_ckpt):
    (base,) = run_node("MetaGANLoader", ckpt_name=tiny_ckpt[0])
    cfg = PACK.nodes.adapt.adaptation_config(base, 7, 0.01, "modulation", "off")
    assert (cfg.steps, cfg.lr_g, cfg.lr_d, cfg.strategy, cfg.augment.ops) == (7, 0.01, 0.01, "modulation", ())
    assert PACK.nodes.adapt.adaptation_config(base, 0, 0.0, "checkpoint default", "checkpoint default") \
        == base.adapt_defaults
    # anchor_weight: -1 keeps the checkpoint's, 0 is a setting of its own (anchors off)
    for weight in (0.0, 2.5):
        cfg = PACK.nodes.adapt.adaptation_config(base, 0, 0.0, "checkpoint default", "checkpoint default", weight)
        assert cfg == dataclasses.replace(base.adapt_defaults, anchor_weight=weight)
    assert PACK.nodes.adapt.adaptation_config(base, 0, 0.0, "checkpoint default", "checkpoint default", -1.0) \
        == base.adapt_defaults


def test_adapt_anchor_weight_widget_reaches_the_loop(tiny_ckpt):
    (base,) = run_node("MetaGANLoader", ckpt_name=tiny_ckpt[0])
    refs = torch.rand(3, 16, 16, 3, generator=torch.Generator().manual_seed(0))
    common = dict(meta_gan=base, references=refs, steps=2, learning_rate=0.0, strategy="full", augment="off", seed=0)
    assert base.adapt_defaults.anchor_weight == 0.0
    omitted = run_node("MetaGANFewShotAdapt", **common)[0].content_hash()  # a workflow saved before the widget
    assert run_node("MetaGANFewShotAdapt", **common, anchor_weight=-1.0)[0].content_hash() == omitted
    assert run_node("MetaGANFewShotAdapt", **common, anchor_weight=5.0)[0].content_hash() != omitted


def test_cancel_stops_within_one_step_and_leaves_base_untouched(tiny_ckpt):
    (base,) = run_node("MetaGANLoader", ckpt_name=tiny_ckpt[0])
    before = base.content_hash()
    steps = []

    def hook(value, total, preview, node_id=None):
        steps.append(value)
        if value == 2:
            comfy.model_management.interrupt_current_processing(True)

    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            run_node("MetaGANFewShotAdapt", meta_gan=base, references=torch.rand(2, 16, 16, 3), steps=50,
                     learning_rate=0.0, strategy="full", augment="off", seed=0)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
        comfy.model_management.interrupt_current_processing(False)
    assert steps == [1, 2]
    assert base.content_hash() == before


def test_sample_is_seeded_and_shaped(tiny_ckpt, progress_events):
    (base,) = run_node("MetaGANLoader", ckpt_name=tiny_ckpt[0])
    (a,) = run_node("MetaGANSample", meta_gan=base, seed=3, count=5, truncation=1.0)
    (b,) = run_node("MetaGANSample", meta_gan=base, seed=3, count=2, truncation=1.0)
    assert a.shape == (5, 16, 16, 3) and a.dtype == torch.float32
    torch.testing.assert_close(a[:2], b, atol=1e-5, rtol=0)
    assert progress_events and progress_events[-1][:2] == (2, 2)


def test_sample_refuses_an_output_beyond_the_memory_bound(tiny_ckpt, monkeypatch):
    (base,) = run_node("MetaGANLoader", ckpt_name=tiny_ckpt[0])
    monkeypatch.setattr(PACK.nodes.sample, "MAX_OUTPUT_BYTES", 16 * 16 * 3 * 4 * 10)
    with pytest.raises(mc.ConfigError, match="at most 10 per run"):
        run_node("MetaGANSample", meta_gan=base, seed=0, count=11, truncation=1.0)


def test_interpolate_frames(tiny_ckpt):
    (base,) = run_node("MetaGANLoader", ckpt_name=tiny_ckpt[0])
    (frames,) = run_node("MetaGANInterpolate", meta_gan=base, seed_a=1, seed_b=2, frames=6, truncation=0.8, space="w")
    assert frames.shape == (6, 16, 16, 3)


# --- save ---------------------------------------------------------------------------------------

def test_save_adapted_never_overwrites_and_shows_in_loader(tiny_ckpt):
    (base,) = run_node("MetaGANLoader", ckpt_name=tiny_ckpt[0])
    first = run_node("MetaGANSaveAdapted", meta_gan=base, filename_prefix="chars/hero", format="full")
    second = run_node("MetaGANSaveAdapted", meta_gan=base, filename_prefix="chars/hero", format="full")
    assert first["result"] == ("chars/hero_00001.safetensors",) \
        and second["result"] == ("chars/hero_00002.safetensors",)
    assert first["ui"]["text"] == ["chars/hero_00001.safetensors"]
    names = NODES["MetaGANLoader"].INPUT_TYPES()["required"]["ckpt_name"][0]
    assert {"chars/hero_00001.safetensors", "chars/hero_00002.safetensors"} <= set(names)
    (loaded,) = run_node("MetaGANLoader", ckpt_name="chars/hero_00001.safetensors")
    assert loaded.content_hash() == base.content_hash()


def test_delta_saves_small_and_loads_onto_its_base(tiny_ckpt):
    (base,) = run_node("MetaGANLoader", ckpt_name=tiny_ckpt[0])
    model, _ = run_node("MetaGANFewShotAdapt", meta_gan=base, references=torch.rand(2, 16, 16, 3), steps=2,
                        learning_rate=0.0, strategy="modulation", augment="off", seed=0)
    (name,) = run_node("MetaGANSaveAdapted", meta_gan=model, filename_prefix="delta/hero", format="delta")["result"]
    (restored,) = run_node("MetaGANLoader", ckpt_name=name)
    for n, p in model.G.named_parameters():  # a delta carries G's modulation weights; D stays the base's
        assert torch.equal(restored.G.get_parameter(n), p), n
    torch.testing.assert_close(run_node("MetaGANSample", meta_gan=restored, seed=0, count=2, truncation=1.0)[0],
                               run_node("MetaGANSample", meta_gan=model, seed=0, count=2, truncation=1.0)[0])


@pytest.mark.parametrize("prefix", ["../evil", "/abs/path", "C:/x", "a//b", "CON", "a/../../b", ""])
def test_save_refuses_unsafe_names(tiny_ckpt, prefix):
    (base,) = run_node("MetaGANLoader", ckpt_name=tiny_ckpt[0])
    with pytest.raises(mc.ConfigError, match="filename_prefix"):
        run_node("MetaGANSaveAdapted", meta_gan=base, filename_prefix=prefix, format="full")
