"""Driving audio -> per-video-frame feature windows and silence flags, fed incrementally.

The implementation is `casync.audio.windows.FrameFeatures`, the one audio-feature path that
preprocessing uses too (so the cache's windows are inference's); this module names it for the
inference package. Latency with the mel front end: frame j (centred at (j + 0.5) / fps) needs audio
up to ~115 ms past its centre (window / 2 feature frames + half an STFT window - half a hop); with
Whisper (audio=whisper_tiny) up to ~0.1 s + its chunk_s + lookahead_s.
"""

from casync.audio.windows import FrameFeatures

__all__ = ["FrameFeatures"]
