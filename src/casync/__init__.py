"""CASync: lightweight audio-driven single-speaker lip sync."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Synthesizer", "__version__"]


def __getattr__(name: str):
    """`casync.Synthesizer` without importing torch/mediapipe on `import casync`."""
    if name == "Synthesizer":
        from casync.inference import Synthesizer

        return Synthesizer
    raise AttributeError(f"module 'casync' has no attribute {name!r}")
