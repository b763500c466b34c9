"""A dependency-free terminal progress bar (stderr) with rate and ETA."""
from __future__ import annotations

import sys
import time


def _fmt_time(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class ProgressBar:
    """Redraws in place on a terminal; elsewhere (logs, CI) prints a line every `log_every` seconds."""

    def __init__(self, total: int, start: int = 0, label: str = "", stream=None, width: int = 24,
                 log_every: float = 30.0, seconds: float | None = None):
        """`seconds`: a time budget that ends the run early; the ETA and bar then show whichever ends first."""
        self.total, self.done, self.first, self.seconds = total, start, start, seconds
        self.label, self.width, self.log_every = label, width, log_every
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = self.last_log = time.perf_counter()

    def update(self, done: int, **fields) -> None:
        self.done = done
        now = time.perf_counter()
        rate = (done - self.first) / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        fraction = done / max(self.total, 1)
        if self.seconds is not None:
            left = max(self.seconds - (now - self.t0), 0.0)
            if left < eta:
                eta, fraction = left, min(1.0, (now - self.t0) / max(self.seconds, 1e-9))
        filled = int(self.width * fraction)
        extras = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
        line = (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} "
                f"{extras} {1 / rate if rate > 0 else 0:.2f}s/it ETA {_fmt_time(eta) if eta != float('inf') else '?'}")
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
            self.stream.flush()
        elif now - self.last_log >= self.log_every or done >= self.total:
            self.stream.write(line + "\n")
            self.stream.flush()
            self.last_log = now

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
