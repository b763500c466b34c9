import numpy as np
import pytest
import torch
from PIL import Image

from meta_core.data import (load_image_folder, load_task_folder, load_unlabeled_folder, pseudo_tasks, read_image,
                            to_float)
from meta_core.errors import DataError
from tests.helpers import write_task_folder


def test_task_folder_one_task_per_subfolder(tmp_path):
    write_task_folder(tmp_path, tasks=3, per_task=4)
    (tmp_path / "empty").mkdir()
    (tmp_path / "style0" / "notes.txt").write_text("not an image")
    tasks = load_task_folder(tmp_path, 16)
    assert tasks.names == ["style0", "style1", "style2"]
    assert [t.shape for t in tasks.images] == [(4, 3, 16, 16)] * 3 and tasks.images[0].dtype == torch.uint8
    assert load_task_folder(tmp_path, 16, exclude=("style1",)).names == ["style0", "style2"]
    x = to_float(tasks.images[0])
    assert float(x.min()) >= -1 and float(x.max()) <= 1


def test_unlabeled_images_cluster_into_their_styles(tmp_path):
    write_task_folder(tmp_path, tasks=3, per_task=6)
    tasks = load_unlabeled_folder(tmp_path, 16, clusters=3, seed=0)
    assert len(tasks) == 3 and tasks.num_images == 18
    # each pseudo-task is one colour: the structure k-means should find
    dominant = [set(to_float(t).mean(dim=(2, 3)).argmax(dim=1).tolist()) for t in tasks.images]
    assert all(len(d) == 1 for d in dominant) and len(set.union(*dominant)) == 3


def test_pseudo_tasks_are_deterministic_and_checked():
    images = torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a, b = pseudo_tasks(images, 4, seed=1), pseudo_tasks(images, 4, seed=1)
    assert [t.tolist() for t in a.images] == [t.tolist() for t in b.images]
    with pytest.raises(DataError, match="--clusters"):
        pseudo_tasks(images, 21)


def test_image_modes(tmp_path):
    Image.fromarray(np.full((10, 12), 128, np.uint8), "L").save(tmp_path / "gray.png")
    Image.fromarray(np.zeros((10, 10, 4), np.uint8), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.full((10, 10), 65535, np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).convert("P").save(tmp_path / "pal.png")
    assert read_image(tmp_path / "gray.png").shape == (1, 10, 12)
    assert read_image(tmp_path / "rgba.png").shape == (4, 10, 10)
    assert float(read_image(tmp_path / "deep.png").max()) == 1.0
    assert read_image(tmp_path / "pal.png").shape[0] in (3, 4)
    out = load_image_folder(tmp_path, 16)
    assert out.shape == (4, 3, 16, 16)
    assert int(out[3].min()) == 255  # rgba.png sorts last: transparent RGBA over the white default background


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        load_image_folder(tmp_path / "missing", 16)
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DataError, match="holds no images"):
        load_image_folder(tmp_path, 16)
    with pytest.raises(DataError, match="no sub-folder holds images"):
        load_task_folder(tmp_path, 16)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png"):
        load_image_folder(tmp_path, 16)


def test_unlabeled_folder_skips_excluded_sub_folders(tmp_path):
    write_task_folder(tmp_path, tasks=3, per_task=6)
    tasks = load_unlabeled_folder(tmp_path, 16, clusters=2, seed=0, exclude=("style1",))
    assert tasks.num_images == 12
