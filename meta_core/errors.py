"""Typed errors. Every message names the offending input and says what to do about it."""
from __future__ import annotations


class MetaGANError(Exception):
    """Base class of every error `meta_core` raises on purpose."""


class ConfigError(MetaGANError, ValueError):
    """A configuration value or argument is invalid."""


class ReferenceImageError(MetaGANError, ValueError):
    """Reference images cannot be used for adaptation."""


class DataError(MetaGANError):
    """A task folder or image folder cannot be read."""


class TrainingDivergedError(MetaGANError):
    """Training or adaptation produced non-finite values or collapsed output and could not recover."""


class CheckpointError(MetaGANError):
    """A checkpoint file cannot be loaded. `path` names the file."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class NotSafetensorsError(CheckpointError):
    """The file is not a safetensors file at all."""


class PickleCheckpointError(NotSafetensorsError):
    """The file is a pickle (.ckpt/.pt/.pth); it is refused, never unpickled."""


class TruncatedCheckpointError(CheckpointError):
    """The file ends before the data its header describes."""


class CorruptCheckpointError(CheckpointError):
    """The safetensors header is malformed or describes impossible offsets, dtypes or shapes."""


class UnknownFormatError(CheckpointError):
    """The metadata names a `format_version` or `model_kind` this version cannot read."""


class MissingTensorsError(CheckpointError):
    """Tensors the model needs are absent from the file."""


class UnexpectedTensorsError(CheckpointError):
    """The file holds tensors the model does not have."""


class ShapeMismatchError(CheckpointError):
    """A tensor's shape differs from what the stored config builds."""


class NonFiniteWeightsError(CheckpointError):
    """A tensor holds NaN or infinite values."""


class DeltaBaseMismatchError(CheckpointError):
    """A delta (modulation-only) file was made for a different base checkpoint."""
