import pytest
import torch

from meta_core.errors import UnknownFormatError
from meta_core.app.evaluator import FEATURES, load_evaluator, train_evaluator
from tests.helpers import tiny_model, write_task_folder


def test_train_save_load_and_features(tmp_path):
    write_task_folder(tmp_path / "tasks", tasks=3, per_task=10, size=24)
    out = tmp_path / "eval.safetensors"
    info = train_evaluator([str(tmp_path / "tasks")], str(out), epochs=1, batch=8, log=lambda *a: None)
    assert info["train_images"] == 27 and info["validation_images"] == 3
    ev = load_evaluator(out)
    assert ev.classes == ["style0", "style1", "style2"]
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    f1, f2 = ev.features(x), ev.features(x)
    assert f1.shape == (5, FEATURES) and torch.equal(f1, f2)
    assert torch.allclose(ev.features(x[:2]), f1[:2], atol=1e-5)  # batch-independent (GroupNorm)


def test_a_gan_checkpoint_is_not_an_evaluator(tmp_path):
    from meta_core import checkpoint
    path = checkpoint.save(tiny_model(16), tmp_path / "m.safetensors")
    with pytest.raises(UnknownFormatError, match="not a MetaGAN evaluator"):
        load_evaluator(path)
