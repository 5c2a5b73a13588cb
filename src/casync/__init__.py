"""CASync: lightweight audio-driven single-speaker lip sync."""

__version__ = "0.1.0"

__all__ = ["__version__"]
