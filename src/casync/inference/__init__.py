"""Inference: `Synthesizer` (batch MP4 + streaming), seamless blending, ONNX export."""

from casync.face import NoFaceError  # re-exported: one error for preprocessing and inference
from casync.inference.blend import Blender
from casync.inference.schedule import ping_pong
from casync.inference.source import SourceVideo, prepare_source
from casync.inference.synthesizer import RenderedFrame, Synthesizer

__all__ = [
    "Blender",
    "NoFaceError",
    "RenderedFrame",
    "SourceVideo",
    "Synthesizer",
    "ping_pong",
    "prepare_source",
]
