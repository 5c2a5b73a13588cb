"""The `device=` key every command takes (conf/runtime/default.yaml; profile's alike)."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> str:
    """`auto` -> "cuda" when a GPU is visible, else "cpu"; any other name is checked: a CUDA
    device without a visible GPU is a clear error, not a failure deep inside the first call."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"device={name!r}: use auto, cpu, cuda or cuda:N ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name} but no CUDA GPU is visible here: use device=cpu or auto")
    return name


# glibc serves allocations above its mmap threshold with their own mappings, returned to the
# system when freed; but it raises the threshold to the size of any such block once freed, after
# which video frames (6 MB at 1080p, 25 MB at 4K) come from its heaps. Decoded in one thread and
# freed in another, on a busy machine they stayed there: preparing a 60 s 1080p avatar peaked at
# 9 GB instead of 1.3 GB. A fixed threshold keeps every frame-sized buffer its own mapping.
FRAME_BUFFER_THRESHOLD = 1 << 20


def return_freed_frames_to_the_system() -> bool:
    """Fix glibc's mmap threshold at 1 MiB for this process (what MALLOC_MMAP_THRESHOLD_=1048576
    does at start-up); False where the C library is not glibc. Every command calls it."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, FRAME_BUFFER_THRESHOLD))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False
