"""The checkpoints shipped in checkpoints/: loadable, within the size limit, with their provenance."""
import json
from pathlib import Path

import pytest

from meta_core import checkpoint
from meta_core.app.dicebear import HELD_OUT_STYLES

BUNDLED = sorted((Path(__file__).resolve().parents[1] / "checkpoints").glob("*.safetensors"))


def test_there_is_a_64_and_a_128_px_checkpoint():
    assert {p.name for p in BUNDLED} >= {"metagan_64.safetensors", "metagan_128.safetensors"}


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_bundled_checkpoint_is_small_and_documented(path):
    assert path.stat().st_size <= 16 * 2 ** 20
    model = checkpoint.load(path)
    assert path.stem.endswith(f"_{model.resolution}")
    if model.meta_config is None:  # a pooled prior (the README says meta-learning has not beaten it yet)
        check_pretrained_provenance(model.provenance)
        return
    assert model.meta_step > 0
    prov = model.provenance
    for key in ("wall_seconds", "init"):  # the rest is checked per stage below
        assert key in prov, key
    trained_on, stage = set(), prov
    while stage is not None:  # every training stage back to random weights: meta-training, its init, ...
        for key in ("command", "data", "hardware", "steps"):
            assert key in stage, key
        trained_on |= set(stage["data"]["task_names"])
        stage = stage.get("init")
    assert not trained_on & set(HELD_OUT_STYLES)
    json.dumps(prov)


def check_pretrained_provenance(prov: dict) -> None:
    """Every piece of a pooled pretraining run: its command and hardware, and the images it was shown."""
    assert prov["pretrained"]["steps"] > 0 and prov["pretrained"]["images_shown"] > 0
    for key in ("command", "data", "hardware", "wall_seconds"):
        assert key in prov, key
    for piece in prov.get("pieces", []) + prov.get("generator_pieces", []):
        assert piece["command"] and piece["hardware"], piece
    assert not set(prov["data"]["task_names"]) & set(HELD_OUT_STYLES)
    json.dumps(prov)
