"""Shared fixtures. `--device cuda` runs the same suite on a GPU; `--runslow` adds the slow checks."""
from __future__ import annotations

import pytest
import torch

import comfy_env

# pytest imports the repository root's __init__.py (the pack) itself when it sets up the tests under it, as
# the package they sit in; the pack never puts ComfyUI's interface stubs in place, so the test entry point
# does it here, before any test runs, as run_workflow.py does for the headless runner.
comfy_env.ensure_comfy_interface()


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
    if dev.type == "cuda":
        # Relation tests compare two code paths at fp32 tolerances; TF32 convolutions (cuDNN's default)
        # differ by ~1e-3 relative and GAN steps amplify it. Speed runs keep TF32; the tests do not.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return dev


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # Reproducible float sums on CPU regardless of the machine's core count.
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture
def comfy_interface() -> bool:
    """ComfyUI's module interface for tests that load the pack: the vendored stubs put in place, as the
    headless runner does (the pack's own import never does it); idempotent, so cheap per test. True if a real
    ComfyUI is importable instead. Test modules that load the pack at import time call
    ``comfy_env.ensure_comfy_interface()`` (or ``comfy_env.load_pack``) themselves."""
    return comfy_env.ensure_comfy_interface()


@pytest.fixture
def comfy_stubs_home(tmp_path, comfy_interface):
    """The ComfyUI stubs' folder_paths moved to a temporary base directory; all of it restored afterwards."""
    import comfy.model_management as mm
    import folder_paths

    saved_folders = {k: (list(paths), exts) for k, (paths, exts) in folder_paths.folder_names_and_paths.items()}
    saved = {k: getattr(folder_paths, k) for k in ("base_path", "models_dir", "output_directory", "temp_directory",
                                                    "input_directory", "user_directory")}
    folder_paths.set_base_directory(str(tmp_path / "home"))
    yield tmp_path / "home"
    folder_paths.folder_names_and_paths.clear()
    folder_paths.folder_names_and_paths.update(saved_folders)
    for k, v in saved.items():
        setattr(folder_paths, k, v)
    mm.interrupt_current_processing(False)
