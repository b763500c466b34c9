"""The candidate-comparison tools in tools/ on hand-made results files (relations, not numbers from a run)."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load(name):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_results(path, fd):
    rows = [{"style": s, "k": k, "budget": b, "method": m, "fd": v} for (s, k, b, m), v in fd.items()]
    path.write_text(json.dumps({"rows": rows}))
    return str(path)


FD = {("a", 1, 25, "meta"): 100.0, ("a", 1, 25, "transfer"): 200.0,
      ("a", 5, 25, "meta"): 300.0, ("a", 5, 25, "transfer"): 150.0,
      ("b", 1, 25, "meta"): 50.0, ("b", 1, 25, "transfer"): 80.0}


def test_head_to_head_of_a_run_with_itself_is_a_tie(tmp_path):
    h2h = load("head_to_head")
    path = write_results(tmp_path / "r.json", FD)
    s = h2h.compare(h2h.fds(path, "meta"), h2h.fds(path, "meta"))
    assert (s["cells"], s["wins"], s["mean_log_ratio"]) == (3, 0, 0.0)
    assert s["geomean_a"] == pytest.approx(s["geomean_b"])


def test_head_to_head_halving_every_fd_wins_every_cell(tmp_path):
    h2h = load("head_to_head")
    a = write_results(tmp_path / "a.json", {key: v / 2 for key, v in FD.items()})
    b = write_results(tmp_path / "b.json", FD)
    s = h2h.compare(h2h.fds(a, "meta"), h2h.fds(b, "meta"))
    assert s["wins"] == 3 and s["mean_log_ratio"] == pytest.approx(-math.log(2))
    assert s["geomean_a"] == pytest.approx(s["geomean_b"] / 2)
    assert s["per_style"] == {"a": (2, 2), "b": (1, 1)}


def test_head_to_head_across_methods_agrees_with_validation_summary(tmp_path):
    path = write_results(tmp_path / "r.json", FD)
    h2h = load("head_to_head").compare(*(load("head_to_head").fds(path, m) for m in ("meta", "transfer")))
    val = load("validation_summary").summarise(path)
    assert (h2h["wins"], h2h["cells"]) == (val["wins"], val["cells"]) == (2, 3)
    assert h2h["mean_log_ratio"] == pytest.approx(val["mean_log_ratio"])
    assert h2h["geomean_a"] == pytest.approx(val["fd_meta"])


def test_time_adaptation_times_the_stored_default_or_a_changed_one(tmp_path, monkeypatch):
    time_adaptation = load("time_adaptation")
    from meta_core import checkpoint
    from tests.helpers import tiny_model, write_task_folder
    checkpoint.save(tiny_model(16), tmp_path / "m.safetensors")
    folder = write_task_folder(tmp_path / "refs", tasks=1, per_task=3, size=16)
    refs = next(p for p in folder.iterdir() if p.is_dir())
    calls, original = [], time_adaptation.adapt
    monkeypatch.setattr(time_adaptation, "adapt", lambda model, references, cfg, **kw: calls.append(
        (tuple(references.shape), cfg.steps, kw["seed"])) or original(model, references, cfg, **kw))
    assert time_adaptation.main(["--checkpoint", str(tmp_path / "m.safetensors"), "--references", str(refs),
                                 "--shots", "2", "--repeats", "2", "--set", "steps=2"]) == 0
    assert calls == [((2, 3, 16, 16), 2, 0), ((2, 3, 16, 16), 2, 1)]
