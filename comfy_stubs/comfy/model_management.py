"""Stand-in for ``comfy.model_management``: devices, cache clearing and the interrupt flag.

Mirrors ComfyUI v0.3.64 for the functions a node pack calls. There is no model loading or VRAM
management here; the device rules are the defaults of real ComfyUI on a machine with one
accelerator:

- ``get_torch_device()``: the CPU when ``comfy.cli_args.args.cpu`` is set, else the current CUDA
  device, else MPS, else the CPU;
- ``intermediate_device()``: the CPU (the GPU only with ``args.gpu_only``);
- ``unet_offload_device()``: the CPU (the GPU only with ``args.highvram``).

The interrupt flag behaves exactly as in ComfyUI: ``interrupt_current_processing()`` sets it,
``throw_exception_if_processing_interrupted()`` clears it and raises
``InterruptProcessingException``.
"""
from __future__ import annotations

import threading

import torch

from comfy.cli_args import args


def get_torch_device() -> torch.device:
    """The device ComfyUI would compute on."""
    if args.cpu:
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device(torch.cuda.current_device())
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where node outputs such as IMAGE tensors live between nodes."""
    return get_torch_device() if args.gpu_only else torch.device("cpu")


def unet_offload_device() -> torch.device:
    """Where models are parked when not in use."""
    return get_torch_device() if args.highvram else torch.device("cpu")


def soft_empty_cache(force: bool = False) -> None:
    """Release cached accelerator memory (no-op on the CPU)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
    else:
        mps = getattr(torch, "mps", None)
        if mps is not None and torch.backends.mps.is_available():
            mps.empty_cache()


class InterruptProcessingException(Exception):
    """Raised inside a running node when the user asked to stop."""


interrupt_processing_mutex = threading.RLock()
interrupt_processing = False


def interrupt_current_processing(value: bool = True) -> None:
    """Ask the running workflow to stop (``value=False`` withdraws the request)."""
    global interrupt_processing
    with interrupt_processing_mutex:
        interrupt_processing = value


def processing_interrupted() -> bool:
    """Whether a stop was requested and not yet acted on."""
    with interrupt_processing_mutex:
        return interrupt_processing


def throw_exception_if_processing_interrupted() -> None:
    """Raise ``InterruptProcessingException`` once if a stop was requested (and clear the request)."""
    global interrupt_processing
    with interrupt_processing_mutex:
        if interrupt_processing:
            interrupt_processing = False
            raise InterruptProcessingException()
