"""Audio front ends (frozen HuBERT or Whisper encoders, or log-mel) and the one path from a
waveform to per-video-frame feature windows."""

from casync.audio.frontend import AudioFrontEnd, HubertFrontEnd, MelFrontEnd, MissingWeightsError
from casync.audio.whisper import WhisperFrontEnd
from casync.audio.windows import FrameFeatures, frame_windows

__all__ = [
    "AudioFrontEnd",
    "FrameFeatures",
    "HubertFrontEnd",
    "MelFrontEnd",
    "MissingWeightsError",
    "WhisperFrontEnd",
    "frame_windows",
]
