"""Shared fixtures. `--device cuda` runs the same suite on a GPU; `--runslow` adds the slow checks."""
from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="device for model tests: cpu (default), cuda, cuda:N")
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    dev = torch.device(request.config.getoption("--device"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("--device cuda given but no CUDA GPU is visible")
    return dev


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # Reproducible float sums on CPU regardless of the machine's core count.
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
