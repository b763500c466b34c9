import io

from meta_core.progress import ProgressBar


def eta_seconds(line: str) -> int:
    text = line.rsplit("ETA ", 1)[1].strip()
    hours, _, rest = text.rpartition("h")
    minutes, seconds = rest.rstrip("s").split("m")
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)


def test_eta_comes_from_steps_left_and_rate():
    out = io.StringIO()
    bar = ProgressBar(1000, stream=out, log_every=0)
    bar.t0 -= 10.0  # 100 steps took 10 s: 900 left at 10 steps/s
    bar.update(100)
    assert 85 <= eta_seconds(out.getvalue()) <= 90


def test_a_time_budget_caps_the_eta_and_fills_the_bar_by_time():
    out = io.StringIO()
    bar = ProgressBar(1_000_000, stream=out, log_every=0, seconds=60)
    bar.t0 -= 30.0  # half the budget gone, a tiny share of the steps done
    bar.update(100)
    line = out.getvalue()
    assert 25 <= eta_seconds(line) <= 30
    assert "[" + "#" * 12 + "." * 12 + "]" in line
