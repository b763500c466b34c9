"""The quality benchmark end to end on tiny models and data (a smoke test of the pipeline, not of quality)."""
import json

from meta_core import AdaptConfig, checkpoint
from meta_core.bench_quality import main
from meta_core.evaluator import train_evaluator
from tests.helpers import tiny_model, write_task_folder


def test_benchmark_runs_every_method_and_writes_its_outputs(tmp_path):
    heldout = write_task_folder(tmp_path / "heldout", tasks=1, per_task=14, size=16)
    ev = tmp_path / "ev.safetensors"
    train_evaluator([str(heldout)], str(ev), epochs=1, batch=8, log=lambda *a: None)
    cfg = AdaptConfig(steps=2, batch_size=4, strategy="full")
    for name, seed in (("meta", 0), ("transfer", 1), ("unlabeled", 2)):
        m = tiny_model(16, seed=seed)
        m.adapt_defaults = cfg
        checkpoint.save(m, tmp_path / f"{name}.safetensors")
    out = tmp_path / "out"
    code = main(["--meta", str(tmp_path / "meta.safetensors"), "--transfer", str(tmp_path / "transfer.safetensors"),
                 "--unlabeled", str(tmp_path / "unlabeled.safetensors"), "--evaluator", str(ev), "--heldout",
                 str(heldout), "--shots", "1,2", "--budgets", "0", "--samples", "12", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "results.json").read_text())
    assert len(result["rows"]) == 1 * 2 * 1 * 4  # styles x shots x budgets x methods
    assert {r["method"] for r in result["rows"]} == {"meta", "transfer", "scratch", "unlabeled"}
    assert all(r["fd"] >= -1e-6 and 0 <= r["precision"] <= 1 for r in result["rows"])
    assert "meta beats transfer and scratch" in (out / "results.md").read_text()
    assert (out / "figure.png").stat().st_size > 0
