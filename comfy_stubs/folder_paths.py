"""Stand-in for ComfyUI's ``folder_paths`` module (mirrors ComfyUI v0.3.64, see README.md).

Used only when real ComfyUI is not importable (headless runs and tests). It keeps the same
module-level names and function signatures as the real module, so pack code written against
ComfyUI works unchanged:

- ``models_dir``, ``folder_names_and_paths`` (``name -> (paths, extensions)``),
  ``supported_pt_extensions``;
- the input / output / temp / user directories with their getters and setters;
- model folder registration and look-up (``add_model_folder_path``, ``get_folder_paths``,
  ``get_filename_list``, ``get_full_path``, ``get_full_path_or_raise``);
- ``get_save_image_path`` with ComfyUI's ``<prefix>_<counter:05>_`` numbering;
- annotated file paths (``"name.png [output]"``).

Differences from the real module, on purpose:

- The base directory comes from the ``METAGAN_COMFY_BASE`` environment variable, else the
  ``comfy_home/`` folder beside ``comfy_stubs/`` (the real module uses ``--base-directory`` or the
  ComfyUI folder). ``set_base_directory`` (stub only) moves every default path that lies under the
  old base to the new one and keeps the paths a user added elsewhere.
- Nothing is created at import time (the real module creates the input folder). Output folders are
  created when ``get_save_image_path`` needs them, as in ComfyUI.
- ``get_filename_list`` rescans the folders on every call instead of caching by modification time;
  the result is the same, only slower for huge folders.
"""
from __future__ import annotations

import logging
import mimetypes
import os
import time
from collections.abc import Collection
from typing import Literal

supported_pt_extensions: set[str] = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}

#: Environment variable naming the base directory (models/, input/, output/, temp/, user/).
BASE_ENV_VAR = "METAGAN_COMFY_BASE"


def _default_base() -> str:
    configured = os.environ.get(BASE_ENV_VAR)
    if configured:
        return os.path.abspath(configured)
    stubs_dir = os.path.dirname(os.path.realpath(__file__))
    return os.path.join(os.path.dirname(stubs_dir), "comfy_home")


base_path: str = _default_base()
models_dir: str = os.path.join(base_path, "models")

folder_names_and_paths: dict[str, tuple[list[str], set[str] | list[str]]] = {}


def _register_defaults() -> None:
    """Fill ``folder_names_and_paths`` with the same folder names ComfyUI registers."""
    m = models_dir
    pt = supported_pt_extensions
    defaults: dict[str, tuple[list[str], set[str] | list[str]]] = {
        "checkpoints": ([os.path.join(m, "checkpoints")], pt),
        "configs": ([os.path.join(m, "configs")], [".yaml"]),
        "loras": ([os.path.join(m, "loras")], pt),
        "vae": ([os.path.join(m, "vae")], pt),
        "text_encoders": ([os.path.join(m, "text_encoders"), os.path.join(m, "clip")], pt),
        "diffusion_models": ([os.path.join(m, "unet"), os.path.join(m, "diffusion_models")], pt),
        "clip_vision": ([os.path.join(m, "clip_vision")], pt),
        "style_models": ([os.path.join(m, "style_models")], pt),
        "embeddings": ([os.path.join(m, "embeddings")], pt),
        "diffusers": ([os.path.join(m, "diffusers")], ["folder"]),
        "vae_approx": ([os.path.join(m, "vae_approx")], pt),
        "controlnet": ([os.path.join(m, "controlnet"), os.path.join(m, "t2i_adapter")], pt),
        "gligen": ([os.path.join(m, "gligen")], pt),
        "upscale_models": ([os.path.join(m, "upscale_models")], pt),
        "custom_nodes": ([os.path.join(base_path, "custom_nodes")], set()),
        "hypernetworks": ([os.path.join(m, "hypernetworks")], pt),
        "photomaker": ([os.path.join(m, "photomaker")], pt),
        "classifiers": ([os.path.join(m, "classifiers")], {""}),
        "model_patches": ([os.path.join(m, "model_patches")], pt),
        "audio_encoders": ([os.path.join(m, "audio_encoders")], pt),
    }
    folder_names_and_paths.update(defaults)


_register_defaults()

output_directory: str = os.path.join(base_path, "output")
temp_directory: str = os.path.join(base_path, "temp")
input_directory: str = os.path.join(base_path, "input")
user_directory: str = os.path.join(base_path, "user")

# ComfyUI seeds this cache so that .webp counts as an image even where the system mime table lacks it.
extension_mimetypes_cache: dict[str, str] = {"webp": "image", "fbx": "model"}


def map_legacy(folder_name: str) -> str:
    """Old folder names ComfyUI still accepts: ``unet`` and ``clip``."""
    return {"unet": "diffusion_models", "clip": "text_encoders"}.get(folder_name, folder_name)


# ---------------------------------------------------------------------------------------------
# Directories
# ---------------------------------------------------------------------------------------------

def set_output_directory(output_dir: str) -> None:
    global output_directory
    output_directory = output_dir


def set_temp_directory(temp_dir: str) -> None:
    global temp_directory
    temp_directory = temp_dir


def set_input_directory(input_dir: str) -> None:
    global input_directory
    input_directory = input_dir


def set_user_directory(user_dir: str) -> None:
    global user_directory
    user_directory = user_dir


def get_output_directory() -> str:
    return output_directory


def get_temp_directory() -> str:
    return temp_directory


def get_input_directory() -> str:
    return input_directory


def get_user_directory() -> str:
    return user_directory


def get_base_directory() -> str:
    """Stub only: the current base directory."""
    return base_path


def _is_under(path: str, root: str) -> bool:
    path, root = os.path.abspath(path), os.path.abspath(root)
    try:
        return os.path.commonpath((path, root)) == root
    except ValueError:  # different drives on Windows
        return False


def _rebase(path: str, old: str, new: str) -> str:
    if not _is_under(path, old):
        return path
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(old))
    return new if rel == "." else os.path.join(new, rel)


def set_base_directory(base_dir: str) -> None:
    """Stub only: move the base directory, as ComfyUI's ``--base-directory`` does at start-up.

    Every registered folder and every directory that lies under the old base moves to the same
    place under the new base; folders outside the old base (the ones a user added) stay as they are.
    """
    global base_path, models_dir, output_directory, temp_directory, input_directory, user_directory
    old, new = base_path, os.path.abspath(base_dir)
    for name, (paths, exts) in list(folder_names_and_paths.items()):
        folder_names_and_paths[name] = ([_rebase(p, old, new) for p in paths], exts)
    output_directory = _rebase(output_directory, old, new)
    temp_directory = _rebase(temp_directory, old, new)
    input_directory = _rebase(input_directory, old, new)
    user_directory = _rebase(user_directory, old, new)
    models_dir = _rebase(models_dir, old, new)
    base_path = new


def get_directory_by_type(type_name: str) -> str | None:
    """Directory for a result ``type`` (``"output"``, ``"temp"`` or ``"input"``), else None."""
    return {"output": get_output_directory, "temp": get_temp_directory,
            "input": get_input_directory}.get(type_name, lambda: None)()


def filter_files_content_types(files: list[str], content_types: list[Literal["image", "video", "audio", "model"]]) -> list[str]:
    """Keep the files whose mime type (guessed from the extension) is one of ``content_types``."""
    kept = []
    for name in files:
        ext = name.split(".")[-1]
        kind = extension_mimetypes_cache.get(ext)
        if kind is None:
            mime, _ = mimetypes.guess_type(name, strict=False)
            if not mime:
                continue
            kind = mime.split("/")[0]
            extension_mimetypes_cache[ext] = kind
        if kind in content_types:
            kept.append(name)
    return kept


# ---------------------------------------------------------------------------------------------
# Annotated file paths: "name.png [output]" / "[input]" / "[temp]"
# ---------------------------------------------------------------------------------------------

_ANNOTATIONS = {"[output]": get_output_directory, "[input]": get_input_directory, "[temp]": get_temp_directory}


def annotated_filepath(name: str) -> tuple[str, str | None]:
    """Split ``"file.png [output]"`` into ``("file.png", <output dir>)``; no annotation gives None."""
    for tag, getter in _ANNOTATIONS.items():
        if name.endswith(tag):
            # ComfyUI strips the tag and the single space before it.
            return name[: -(len(tag) + 1)], getter()
    return name, None


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    name, base_dir = annotated_filepath(name)
    if base_dir is None:
        base_dir = default_dir if default_dir is not None else get_input_directory()
    return os.path.join(base_dir, name)


def exists_annotated_filepath(name) -> bool:
    name, base_dir = annotated_filepath(name)
    if base_dir is None:
        base_dir = get_input_directory()
    return os.path.exists(os.path.join(base_dir, name))


# ---------------------------------------------------------------------------------------------
# Model folders
# ---------------------------------------------------------------------------------------------

def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    """Register ``full_folder_path`` for ``folder_name``.

    A new folder name gets an empty extension set (any file). An existing path is not added twice;
    ``is_default=True`` puts the path first (moving it if present), otherwise it is appended.
    """
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())
        return
    paths, _exts = folder_names_and_paths[folder_name]
    if full_folder_path in paths:
        if is_default and paths[0] != full_folder_path:
            paths.remove(full_folder_path)
            paths.insert(0, full_folder_path)
    elif is_default:
        paths.insert(0, full_folder_path)
    else:
        paths.append(full_folder_path)


def get_folder_paths(folder_name: str) -> list[str]:
    """A copy of the folders registered for ``folder_name`` (KeyError if none)."""
    return list(folder_names_and_paths[map_legacy(folder_name)][0])


def recursive_search(directory: str, excluded_dir_names: list[str] | None = None) -> tuple[list[str], dict[str, float]]:
    """Files below ``directory`` as paths relative to it, and the folders seen with their mtimes."""
    if not os.path.isdir(directory):
        return [], {}
    excluded = set(excluded_dir_names or [])
    files: list[str] = []
    dirs: dict[str, float] = {}
    try:
        dirs[directory] = os.path.getmtime(directory)
    except FileNotFoundError:
        logging.warning("Warning: Unable to access %s. Skipping this path.", directory)
    for dirpath, subdirs, filenames in os.walk(directory, followlinks=True, topdown=True):
        subdirs[:] = [d for d in subdirs if d not in excluded]
        for filename in filenames:
            files.append(os.path.relpath(os.path.join(dirpath, filename), directory))
        for d in subdirs:
            path = os.path.join(dirpath, d)
            try:
                dirs[path] = os.path.getmtime(path)
            except FileNotFoundError:
                logging.warning("Warning: Unable to access %s. Skipping this path.", path)
    return files, dirs


def filter_files_extensions(files: Collection[str], extensions: Collection[str]) -> list[str]:
    """Sorted files whose lower-cased extension is in ``extensions`` (all files if it is empty)."""
    return sorted(f for f in files if len(extensions) == 0 or os.path.splitext(f)[-1].lower() in extensions)


def get_filename_list(folder_name: str) -> list[str]:
    """Sorted relative paths of the matching files in every folder registered for ``folder_name``."""
    folder_name = map_legacy(folder_name)
    paths, exts = folder_names_and_paths[folder_name]
    found: set[str] = set()
    for folder in paths:
        files, _dirs = recursive_search(folder, excluded_dir_names=[".git"])
        found.update(filter_files_extensions(files, exts))
    return sorted(found)


def get_full_path(folder_name: str, filename: str) -> str | None:
    """Absolute path of ``filename`` in the first registered folder that has it, else None.

    ``filename`` cannot climb out of the folder: it is normalised as if rooted at ``/`` first.
    """
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        return None
    filename = os.path.relpath(os.path.join("/", filename), "/")
    for folder in folder_names_and_paths[folder_name][0]:
        full_path = os.path.join(folder, filename)
        if os.path.isfile(full_path):
            return full_path
        if os.path.islink(full_path):
            logging.warning("WARNING path %s exists but doesn't link anywhere, skipping.", full_path)
    return None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    """Like ``get_full_path`` but raises ``FileNotFoundError`` (ComfyUI's message) when missing."""
    full_path = get_full_path(folder_name, filename)
    if full_path is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
    return full_path


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------

def _expand_prefix_vars(prefix: str, image_width: int, image_height: int) -> str:
    now = time.localtime()
    values = {
        "%width%": str(image_width), "%height%": str(image_height),
        "%year%": str(now.tm_year), "%month%": f"{now.tm_mon:02d}", "%day%": f"{now.tm_mday:02d}",
        "%hour%": f"{now.tm_hour:02d}", "%minute%": f"{now.tm_min:02d}", "%second%": f"{now.tm_sec:02d}",
    }
    for key, value in values.items():
        prefix = prefix.replace(key, value)
    return prefix


def get_save_image_path(filename_prefix: str, output_dir: str, image_width=0, image_height=0) -> tuple[str, str, int, str, str]:
    """Where the next file for ``filename_prefix`` goes: ``(folder, filename, counter, subfolder, prefix)``.

    ``filename_prefix`` may contain a subfolder (``"runs/cat"``) and ``%width%``, ``%height%``,
    ``%year%`` ... ``%second%``. ``counter`` is one more than the largest ``<filename>_<n>_...`` already
    in the folder (1 if none), so files are never overwritten. The folder is created if missing.
    Raises ``Exception`` (as ComfyUI does) if the prefix would leave ``output_dir``.
    """
    if "%" in filename_prefix:
        filename_prefix = _expand_prefix_vars(filename_prefix, image_width, image_height)

    subfolder = os.path.dirname(os.path.normpath(filename_prefix))
    filename = os.path.basename(os.path.normpath(filename_prefix))
    full_output_folder = os.path.join(output_dir, subfolder)

    if os.path.commonpath((output_dir, os.path.abspath(full_output_folder))) != output_dir:
        err = ("**** ERROR: Saving image outside the output folder is not allowed."
               f"\n full_output_folder: {os.path.abspath(full_output_folder)}"
               f"\n         output_dir: {output_dir}"
               f"\n         commonpath: {os.path.commonpath((output_dir, os.path.abspath(full_output_folder)))}")
        logging.error(err)
        raise Exception(err)

    def parse(existing: str) -> tuple[int, str]:
        prefix_len = len(os.path.basename(filename_prefix))
        head = existing[: prefix_len + 1]
        try:
            digits = int(existing[prefix_len + 1:].split("_")[0])
        except ValueError:
            digits = 0
        return digits, head

    try:
        numbered = [parse(f) for f in os.listdir(full_output_folder)]
    except FileNotFoundError:
        os.makedirs(full_output_folder, exist_ok=True)
        numbered = []
    matching = [digits for digits, head in numbered
                if os.path.normcase(head[:-1]) == os.path.normcase(filename) and head[-1:] == "_"]
    counter = max(matching) + 1 if matching else 1
    return full_output_folder, filename, counter, subfolder, filename_prefix


def get_input_subfolders() -> list[str]:
    """Sorted sub-folders of the input directory, relative and with forward slashes."""
    input_dir = get_input_directory()
    if not os.path.isdir(input_dir):
        return []
    found = []
    for root, _dirs, _files in os.walk(input_dir):
        rel = os.path.relpath(root, input_dir)
        if rel != ".":
            found.append(rel.replace(os.sep, "/"))
    return sorted(found)
