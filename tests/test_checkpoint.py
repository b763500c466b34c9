import json
import math
import os
import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

from meta_core import adapt, checkpoint
from meta_core.errors import (CheckpointError, CorruptCheckpointError, DeltaBaseMismatchError, MissingTensorsError,
                              NonFiniteWeightsError, NotSafetensorsError, PickleCheckpointError, ShapeMismatchError,
                              TruncatedCheckpointError, UnexpectedTensorsError, UnknownFormatError)
from tests.helpers import random_images, tiny_adapt, tiny_model


@pytest.fixture
def model():
    m = tiny_model(16)
    m.provenance = {"command": "test", "steps": 3}
    return m


@pytest.fixture
def saved(model, tmp_path):
    return checkpoint.save(model, tmp_path / "m.safetensors")


def write_raw(path, tensors, metadata):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def test_round_trip_is_bit_exact(model, saved, device):
    loaded = checkpoint.load(saved, device)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k].cpu()) for k in a)
    assert loaded.config == model.config and loaded.adapt_defaults == model.adapt_defaults
    assert loaded.provenance == model.provenance
    meta = checkpoint.read_metadata(saved)
    assert meta["format_version"] == "1" and meta["model_kind"] == "metagan"
    assert json.loads(meta["model_config"])["generator"]["resolution"] == 16


def test_half_precision_save_loads_as_float32(model, tmp_path):
    path = checkpoint.save(model, tmp_path / "h.safetensors", dtype=torch.float16)
    loaded = checkpoint.load(path)
    assert loaded.G.const.dtype == torch.float32
    torch.testing.assert_close(loaded.G.const, model.G.const.half().float())


def test_save_is_atomic_and_leaves_no_temporary_files(model, saved, tmp_path, monkeypatch):
    before = saved.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", fail)
    with pytest.raises(OSError):
        checkpoint.save(model, saved)
    assert saved.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


def test_saved_file_gets_ordinary_permissions(saved):
    umask = os.umask(0)
    os.umask(umask)
    assert saved.stat().st_mode & 0o777 == 0o666 & ~umask


def test_text_file_is_not_safetensors(tmp_path):
    p = tmp_path / "notes.safetensors"
    p.write_text("hello, this is not a model")
    with pytest.raises(NotSafetensorsError, match="notes.safetensors"):
        checkpoint.load(p)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(NotSafetensorsError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.safetensors")
    with pytest.raises(NotSafetensorsError, match="is a folder"):
        checkpoint.load(tmp_path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("writer", ["torch_save", "plain_pickle"])
def test_pickles_are_refused_and_never_unpickled(tmp_path, writer):
    marker = str(tmp_path / "pwned")
    path = tmp_path / "model.ckpt"
    if writer == "torch_save":
        torch.save({"x": _Evil(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(_Evil(marker), protocol=4))
    with pytest.raises(PickleCheckpointError, match="refuses them"):
        checkpoint.load(path)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("keep", [4, 20, "half"])
def test_truncated_files(saved, keep):
    data = saved.read_bytes()
    n = len(data) // 2 if keep == "half" else keep
    saved.write_bytes(data[:n])
    with pytest.raises((TruncatedCheckpointError, NotSafetensorsError)) as info:
        checkpoint.load(saved)
    if keep != 4:
        assert isinstance(info.value, TruncatedCheckpointError)
        assert "cut short" in str(info.value)


def _rewrite_header(path, edit):
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


def test_header_that_lies_about_offsets(saved):
    def lie(header):
        name = next(k for k in header if k != "__metadata__")
        b, e = header[name]["data_offsets"]
        header[name]["data_offsets"] = [b, e + 4]
    _rewrite_header(saved, lie)
    with pytest.raises(CorruptCheckpointError, match="offsets do not match"):
        checkpoint.load(saved)


def test_header_pointing_past_the_end(saved):
    def lie(header):
        name = next(k for k in header if k != "__metadata__")
        size = 4 * math.prod(header[name]["shape"])
        header[name]["data_offsets"] = [10 ** 9, 10 ** 9 + size]
    _rewrite_header(saved, lie)
    with pytest.raises(TruncatedCheckpointError):
        checkpoint.load(saved)


def test_header_that_is_not_json(saved):
    data = bytearray(saved.read_bytes())
    data[9] = ord("#")
    saved.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="not valid JSON"):
        checkpoint.load(saved)


def test_unknown_format_version(model, tmp_path):
    meta = checkpoint._metadata(model, checkpoint.MODEL_KIND)
    meta["format_version"] = "99"
    p = write_raw(tmp_path / "future.safetensors", model.state_dict(), meta)
    with pytest.raises(UnknownFormatError, match="newer comfyui-metagan"):
        checkpoint.load(p)


def test_foreign_safetensors_file(tmp_path):
    p = write_raw(tmp_path / "sd.safetensors", {"weight": torch.zeros(2)}, {})
    with pytest.raises(UnknownFormatError, match="not a MetaGAN checkpoint"):
        checkpoint.load(p)


def test_missing_extra_and_misshapen_tensors(model, tmp_path):
    meta = checkpoint._metadata(model, checkpoint.MODEL_KIND)
    state = model.state_dict()
    name = "G.const"
    missing = {k: v for k, v in state.items() if k != name}
    with pytest.raises(MissingTensorsError, match="G.const"):
        checkpoint.load(write_raw(tmp_path / "a.safetensors", missing, meta))
    extra = dict(state, **{"G.extra": torch.zeros(3)})
    with pytest.raises(UnexpectedTensorsError, match="G.extra"):
        checkpoint.load(write_raw(tmp_path / "b.safetensors", extra, meta))
    misshapen = dict(state, **{name: torch.zeros(1, 2, 3)})
    with pytest.raises(ShapeMismatchError, match="G.const"):
        checkpoint.load(write_raw(tmp_path / "c.safetensors", misshapen, meta))


def test_nan_weights(model, tmp_path):
    state = model.state_dict()
    state["D.out.bias"] = torch.full_like(state["D.out.bias"], float("nan"))
    p = write_raw(tmp_path / "nan.safetensors", state, checkpoint._metadata(model, checkpoint.MODEL_KIND))
    with pytest.raises(NonFiniteWeightsError, match="D.out.bias"):
        checkpoint.load(p)


def test_every_error_is_a_checkpoint_error_naming_the_file(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(b"\x00" * 3)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(p)
    assert info.value.path == str(p) and str(p) in str(info.value)


def test_modulation_delta_round_trip_and_wrong_base(model, saved, tmp_path):
    base = checkpoint.load(saved)
    adapted = adapt(base, random_images(3, 16), tiny_adapt(strategy="modulation"), seed=0).model
    delta = checkpoint.save_delta(adapted, tmp_path / "delta.safetensors")
    assert delta.stat().st_size < saved.stat().st_size / 3
    restored = checkpoint.load_delta(checkpoint.load(saved), delta)
    for n, p in adapted.G.named_parameters():
        assert torch.equal(restored.G.get_parameter(n), p), n
    other = tiny_model(16, seed=9)
    with pytest.raises(DeltaBaseMismatchError, match="load the checkpoint it was adapted from"):
        checkpoint.load_delta(other, delta)
    with pytest.raises(UnknownFormatError, match="is a modulation delta"):
        checkpoint.load(delta)


def test_delta_needs_a_modulation_adapted_model(model, tmp_path):
    from meta_core.errors import ConfigError
    adapted = adapt(model, random_images(2, 16), tiny_adapt(strategy="full"), seed=0).model
    with pytest.raises(ConfigError, match="save it as a full checkpoint"):
        checkpoint.save_delta(adapted, tmp_path / "d.safetensors")


def test_channels_last_weights_save_and_hash_like_contiguous_ones(tmp_path):
    # The fast path keeps conv weights in channels_last; a [o, i, 1, 1] weight then counts as contiguous
    # while its last stride is not 1, which a byte view refuses.
    model = tiny_model(16)
    g = {n: (t.to(memory_format=torch.channels_last) if t.dim() == 4 else t) for n, t in model.g_params().items()}
    nhwc = model.with_params(g, model.d_params())
    assert nhwc.content_hash() == model.content_hash()
    checkpoint.save(nhwc, tmp_path / "a.safetensors")
    assert checkpoint.load(tmp_path / "a.safetensors").content_hash() == model.content_hash()


@pytest.mark.parametrize("strategy", ["freeze_d", "modulation"])
def test_a_dcgan_model_adapts_saves_and_loads_bit_exact(tmp_path, strategy):
    from meta_core import MetaGAN, ModelConfig, sample
    from tests.helpers import random_images, tiny_adapt
    model = MetaGAN.create(ModelConfig.for_resolution(16, channel_base=128, channel_max=32, z_dim=16, arch="dcgan"))
    adapted = adapt(model, random_images(3, 16), tiny_adapt(strategy=strategy), seed=0).model
    path = checkpoint.save(adapted, tmp_path / "dc.safetensors")
    loaded = checkpoint.load(path)
    assert loaded.config == adapted.config and loaded.config.generator.arch == "dcgan"
    assert torch.equal(sample(loaded, 4, 3), sample(adapted, 4, 3))
    if strategy == "modulation":
        delta = checkpoint.load_delta(model, checkpoint.save_delta(adapted, tmp_path / "d.safetensors"))
        assert torch.equal(sample(delta, 4, 3), sample(adapted, 4, 3))
