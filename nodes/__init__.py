"""The pack's node families. Each module exports NODE_CLASS_MAPPINGS and NODE_DISPLAY_NAME_MAPPINGS."""
from __future__ import annotations

from . import adapt, loaders, sample, save
from .common import register_model_folder

FAMILIES = (loaders, adapt, sample, save)

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
for family in FAMILIES:
    overlap = set(NODE_CLASS_MAPPINGS) & set(family.NODE_CLASS_MAPPINGS)
    if overlap:
        raise RuntimeError(f"node ids registered twice: {sorted(overlap)}")
    NODE_CLASS_MAPPINGS.update(family.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(family.NODE_DISPLAY_NAME_MAPPINGS)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "register_model_folder"]
