"""Audio front ends (frozen HuBERT or log-mel) and per-video-frame feature windows."""

from casync.audio.frontend import AudioFrontEnd, HubertFrontEnd, MelFrontEnd
from casync.audio.windows import frame_windows

__all__ = ["AudioFrontEnd", "HubertFrontEnd", "MelFrontEnd", "frame_windows"]
