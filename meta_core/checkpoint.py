"""safetensors checkpoints: full models and modulation deltas. Never pickle.

Metadata (text only) holds `format_version`, `model_kind`, the JSON of every config and the
provenance. Old formats are migrated in `migrate_metadata`, the one place that knows them.
Every way a file can be wrong raises its own `CheckpointError` subclass naming the file.
"""
from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import AdaptConfig, MetaConfig, ModelConfig, from_json, to_json
from .errors import (ConfigError, CorruptCheckpointError, DeltaBaseMismatchError, MissingTensorsError,
                     NonFiniteWeightsError, NotSafetensorsError, PickleCheckpointError, ShapeMismatchError,
                     TruncatedCheckpointError, UnexpectedTensorsError, UnknownFormatError)
from .model import MetaGAN

FORMAT_VERSION = 1
MODEL_KIND = "metagan"
DELTA_KIND = "metagan-delta"
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
PICKLE_HINT = ("it is a PyTorch pickle (.ckpt/.pt/.pth); pickles can run code when loaded, so MetaGAN "
               "refuses them: use a .safetensors MetaGAN checkpoint")


# --- raw header ----------------------------------------------------------------------------------

def read_header(path) -> tuple[dict, dict]:
    """Parse and check the safetensors header without reading tensor data.

    Returns (tensor entries, metadata). Raises NotSafetensorsError, PickleCheckpointError,
    TruncatedCheckpointError or CorruptCheckpointError.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
                raise PickleCheckpointError(path, PICKLE_HINT)
            if len(head) < 8:
                raise NotSafetensorsError(path, f"only {size} bytes long: not a safetensors file")
            n = int.from_bytes(head, "little")
            if n < 2 or n > MAX_HEADER_BYTES:
                raise NotSafetensorsError(path, "does not start with a safetensors header: choose a .safetensors "
                                                "file written by MetaGAN")
            raw = f.read(n)
    except IsADirectoryError:
        raise NotSafetensorsError(path, "is a folder, not a checkpoint file") from None
    except FileNotFoundError:
        raise NotSafetensorsError(path, "does not exist: check the path") from None
    except (OSError, ValueError) as exc:  # no permission, an I/O error, a NUL in the name
        raise NotSafetensorsError(path, f"cannot be read ({exc.__class__.__name__}: {exc}): check the file and "
                                        "its permissions") from None
    if not raw.lstrip().startswith(b"{"):
        raise NotSafetensorsError(path, "does not start with a safetensors header: choose a .safetensors file "
                                        "written by MetaGAN")
    if len(raw) < n:
        raise TruncatedCheckpointError(path, f"the file ends inside its header ({size} bytes): it was cut short "
                                             "while copying or downloading; copy it again")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, 4300+ digit numbers, absurd nesting
        raise CorruptCheckpointError(path, f"the safetensors header is not valid JSON ({exc}); the file is "
                                           "damaged: copy it again") from None
    if not isinstance(header, dict):
        raise CorruptCheckpointError(path, "the safetensors header is not a JSON object; the file is damaged")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise CorruptCheckpointError(path, "the safetensors metadata must map text to text; the file is damaged")
    data_size = size - 8 - n
    end_max = 0
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            ok = (dtype in DTYPE_SIZES and isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)
                  and isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end)
        except (TypeError, ValueError, KeyError):
            ok = False
        if not ok:
            raise CorruptCheckpointError(path, f"tensor {name!r} has a malformed header entry; the file is damaged")
        if end - begin != math.prod(shape) * DTYPE_SIZES[dtype]:
            raise CorruptCheckpointError(path, f"tensor {name!r}: header offsets do not match its shape {shape} and "
                                               f"dtype {dtype}; the file is damaged")
        end_max = max(end_max, end)
    if end_max > data_size:
        raise TruncatedCheckpointError(path, f"the header describes {end_max} bytes of tensor data but the file holds "
                                             f"{max(data_size, 0)}: it was cut short; copy it again")
    return header, metadata


def _read_tensors(path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CorruptCheckpointError(path, f"safetensors could not read it ({exc}); the file is damaged") from None


def _load_tensors(path) -> tuple[dict[str, torch.Tensor], dict]:
    _, metadata = read_header(path)
    return _read_tensors(path), metadata


# --- metadata ------------------------------------------------------------------------------------

def migrate_metadata(path, metadata: dict) -> dict:
    """Bring metadata of any known format to the current one. The only place old formats live."""
    if "format_version" not in metadata or "model_kind" not in metadata:
        raise UnknownFormatError(path, "is a safetensors file but not a MetaGAN checkpoint (no format_version/"
                                       "model_kind metadata): choose a checkpoint made by MetaGAN")
    try:
        version = int(metadata["format_version"])
    except ValueError:
        raise UnknownFormatError(path, f"format_version {metadata['format_version'][:40]!r} is not a number") from None
    if version > FORMAT_VERSION:
        raise UnknownFormatError(path, f"format_version {version} was written by a newer comfyui-metagan (this one "
                                       f"reads up to {FORMAT_VERSION}): upgrade the pack")
    if version < 1:
        raise UnknownFormatError(path, f"format_version {version} is not a format MetaGAN ever wrote")
    return dict(metadata)  # version 1 is current


def _configs(path, metadata: dict):
    try:
        model_cfg = from_json(ModelConfig, metadata["model_config"])
        adapt_cfg = from_json(AdaptConfig, metadata["adapt_config"])
        meta_cfg = from_json(MetaConfig, metadata["meta_config"]) if metadata.get("meta_config") else None
    except KeyError as exc:
        raise UnknownFormatError(path, f"metadata lacks {exc.args[0]!r}; the file was not written by MetaGAN "
                                       "or is damaged") from None
    except (ConfigError, ValueError, TypeError, RecursionError) as exc:  # ConfigError is a ValueError
        raise UnknownFormatError(path, f"its stored config is invalid: {exc}") from None
    return model_cfg, adapt_cfg, meta_cfg


def _provenance(path, metadata: dict) -> dict:
    try:
        provenance = json.loads(metadata.get("provenance") or "{}")
    except (ValueError, RecursionError):
        provenance = None
    if not isinstance(provenance, dict):
        raise UnknownFormatError(path, "its provenance metadata is not a JSON object; the file is damaged or was "
                                       "edited")
    return provenance


def _meta_step(path, metadata: dict) -> int:
    text = metadata.get("meta_step", "0") or "0"
    try:
        step = int(text)
    except ValueError:
        step = -1
    if step < 0:
        raise UnknownFormatError(path, f"meta_step {text[:40]!r} is not a non-negative integer; the file is damaged "
                                       "or was edited")
    return step


def _skeleton(path, model_cfg: ModelConfig, n_tensors: int) -> dict[str, tuple]:
    """Names and shapes of the tensors `model_cfg` builds, found on the meta device (no memory used).

    Checked against the header before anything is allocated: a config that lies (a huge z_dim or
    channel count) would otherwise allocate its lie before the tensors could contradict it.
    """
    if model_cfg.generator.mapping_layers > n_tensors:  # each layer stores a weight: bounds the work below
        raise MissingTensorsError(path, f"its config has {model_cfg.generator.mapping_layers} mapping layers but the "
                                        f"file holds only {n_tensors} tensors: it is damaged or was edited")
    try:
        return dict(_shapes(model_cfg))
    except (RuntimeError, ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise UnknownFormatError(path, f"its stored config cannot build a model ({exc.__class__.__name__}: {exc}); "
                                       "the file is damaged or was edited") from None


@functools.lru_cache(maxsize=16)
def _shapes(model_cfg: ModelConfig) -> tuple[tuple[str, tuple], ...]:
    with torch.device("meta"):
        skeleton = MetaGAN.create(model_cfg)
    return tuple((k, tuple(v.shape)) for k, v in skeleton.state_dict().items())


def _metadata(model: MetaGAN, kind: str) -> dict[str, str]:
    return {
        "format_version": str(FORMAT_VERSION),
        "model_kind": kind,
        "model_config": to_json(model.config),
        "adapt_config": to_json(model.adapt_defaults),
        "meta_config": to_json(model.meta_config) if model.meta_config else "",
        "meta_step": str(model.meta_step),
        "provenance": json.dumps(model.provenance, sort_keys=True, default=str),
        "resolution": str(model.resolution),
    }


def atomic_save(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in tensors.items()},
                  tmp, metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model file is as readable as any other file
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half of one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- full checkpoints ----------------------------------------------------------------------------

def save(model: MetaGAN, path, dtype: torch.dtype = torch.float32) -> Path:
    """Write a full checkpoint atomically (readers see the old file or the new one, never half of one).

    Args:
        model: what to store: weights, configs, adaptation defaults, provenance.
        path: the `.safetensors` file to write.
        dtype: `torch.float16` halves the file (weights load as float32).
    Returns:
        The path written.
    """
    tensors = {k: v.to(dtype) for k, v in model.state_dict().items()}
    metadata = _metadata(model, MODEL_KIND)
    if dtype == torch.float32:
        metadata["content_hash"] = model.content_hash()  # lets a delta find its base from headers alone
    return atomic_save(tensors, metadata, path)


def stored_dtype(path) -> torch.dtype:
    """The dtype `save` wrote a checkpoint's weights in (float16 or float32): what rewriting it in place keeps."""
    entries, _ = read_header(path)
    return torch.float16 if any(e.get("dtype") == "F16" for e in entries.values()) else torch.float32


def _check_shapes(path, expected: dict[str, tuple], shapes: dict[str, tuple]) -> None:
    missing = sorted(set(expected) - set(shapes))
    if missing:
        raise MissingTensorsError(path, f"{len(missing)} tensor(s) missing, e.g. {missing[:3]}: the file does not "
                                        "match its own config; it is damaged or was edited")
    unexpected = sorted(set(shapes) - set(expected))
    if unexpected:
        raise UnexpectedTensorsError(path, f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[:3]}: the file "
                                           "does not match its own config; it is damaged or was edited")
    for name, shape in expected.items():
        if tuple(shapes[name]) != tuple(shape):
            raise ShapeMismatchError(path, f"tensor {name!r} has shape {tuple(shapes[name])} but the config builds "
                                           f"{tuple(shape)}: the file is damaged or was edited")


def _check_tensors(path, expected: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> None:
    _check_shapes(path, {k: tuple(v.shape) for k, v in expected.items()},
                  {k: tuple(t.shape) for k, t in tensors.items()})
    for name in expected:
        t = tensors[name]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise NonFiniteWeightsError(path, f"tensor {name!r} holds NaN or infinite values: the model was saved "
                                              "from a diverged run; use an earlier checkpoint")


def load(path, device="cpu") -> MetaGAN:
    """Load a full checkpoint (pickles are refused, never unpickled).

    Args:
        path: a `.safetensors` file written by `save`.
        device: where the weights go.
    Returns:
        The `MetaGAN`, with its configs, adaptation defaults and provenance.
    Raises:
        A `CheckpointError` subclass naming the file and saying what to do, for every defect.
    """
    header, metadata = read_header(path)
    metadata = migrate_metadata(path, metadata)
    if metadata["model_kind"] == DELTA_KIND:
        raise UnknownFormatError(path, "is a modulation delta, not a full model: load its base checkpoint and "
                                       "apply the delta with load_delta(base, path)")
    if metadata["model_kind"] != MODEL_KIND:
        raise UnknownFormatError(path, f"model_kind {metadata['model_kind']!r} is not a MetaGAN model")
    model_cfg, adapt_cfg, meta_cfg = _configs(path, metadata)
    meta_step, provenance = _meta_step(path, metadata), _provenance(path, metadata)
    _check_shapes(path, _skeleton(path, model_cfg, len(header)), {k: e["shape"] for k, e in header.items()})
    tensors = _read_tensors(path)  # memory now bounded by the file's size: its header matches the config
    model = MetaGAN.create(model_cfg, adapt_defaults=adapt_cfg, meta_config=meta_cfg, meta_step=meta_step,
                           provenance=provenance)
    expected = model.state_dict()
    _check_tensors(path, expected, tensors)
    with torch.no_grad():
        for name, ref in expected.items():
            ref.copy_(tensors[name].to(ref.dtype))
    return model.to(device)


def read_metadata(path) -> dict:
    """Checked, migrated metadata of a full or delta checkpoint (tensor data not read).

    Returns:
        The metadata as text values (configs and provenance as JSON strings).
    """
    _, metadata = read_header(path)
    return migrate_metadata(path, metadata)


# --- modulation deltas ---------------------------------------------------------------------------

def save_delta(model: MetaGAN, path) -> Path:
    """Save only G's modulation parameters of a model adapted with strategy `modulation`.

    The file names its base by content hash and refuses any other base. D is not stored: a delta is
    for sampling; adapt again from the full base to continue training.

    Returns:
        The path written (atomically).
    """
    if model.base_hash is None:
        raise ConfigError("this model was not adapted with the 'modulation' strategy, so it has no base to be a "
                          "delta of: save it as a full checkpoint instead")
    names = model.G.modulation_parameter_names()
    tensors = {f"G.{n}": model.G.get_parameter(n) for n in names}
    metadata = _metadata(model, DELTA_KIND)
    metadata["base_hash"] = model.base_hash
    return atomic_save(tensors, metadata, path)


def load_delta(base: MetaGAN, path) -> MetaGAN:
    """Apply a modulation delta (`save_delta`) to the base it was made from.

    Args:
        base: the full model the delta was adapted from (checked by content hash).
        path: the delta file.
    Returns:
        A new `MetaGAN`: the base with the delta's modulation parameters.
    """
    tensors, metadata = _load_tensors(path)
    metadata = migrate_metadata(path, metadata)
    if metadata["model_kind"] != DELTA_KIND:
        raise UnknownFormatError(path, "is a full MetaGAN model, not a delta: load it directly")
    base_hash = metadata.get("base_hash", "")
    if base_hash != base.content_hash():
        raise DeltaBaseMismatchError(path, f"was made for base {base_hash[:12]}, not this base "
                                           f"({base.content_hash()[:12]}): load the checkpoint it was adapted from")
    model_cfg, adapt_cfg, _ = _configs(path, metadata)
    if model_cfg != base.config:
        raise DeltaBaseMismatchError(path, "its model config differs from the base's: load the checkpoint it was "
                                           "adapted from")
    g = base.g_params()
    expected = {f"G.{n}": g[n] for n in base.G.modulation_parameter_names()}
    _check_tensors(path, expected, tensors)
    g = dict(g, **{n[2:]: t.to(g[n[2:]].device, g[n[2:]].dtype) for n, t in tensors.items()})
    provenance = _provenance(path, metadata)
    return base.with_params(g, base.d_params(), base_hash=base_hash, provenance=provenance, adapt_defaults=adapt_cfg)
