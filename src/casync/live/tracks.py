"""The WebRTC side of a session's frames: one track per medium, as in aiortc's examples. The
engine's tick thread hands each `LiveFrame` to `SessionOutput`; the video track's `recv()`
returns its image and the audio track's the same tick's 40 ms of audio in two 20 ms frames, both
stamped from the tick (video at 90 kHz, audio at 16 kHz), so they leave on one clock.

The microphone goes the other way: `read_microphone` resamples the browser's track to 16 kHz mono
(soxr, streaming) and pushes it to the session as a gated microphone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from fractions import Fraction

import av
import numpy as np
import soxr
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from casync.audio.frontend import SAMPLE_RATE
from casync.live.session import LiveFrame, Session

log = logging.getLogger(__name__)
VIDEO_CLOCK = 90_000


class SessionOutput:
    """Frames waiting for the tracks: at most `depth` pictures (older ones are dropped: a viewer
    that fell behind sees now, not a growing delay) and `audio_depth_s` of sound (the engine
    sends the sound of ticks it caught up at once: all of it must reach the browser). Sound
    queued before the connection was up is dropped down to the pictures' `depth` when the audio
    track first asks (`start_audio`): a browser must not start a second behind."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fps: float,
        depth: int = 4,
        audio_depth_s: float = 2.0,
    ) -> None:
        self.loop = loop
        self.fps = fps
        self.video: deque[LiveFrame] = deque(maxlen=depth)
        # two chunks (half a tick each) per tick
        self.audio: deque[tuple[int, np.ndarray]] = deque(maxlen=int(audio_depth_s * fps) * 2)
        self.video_ready = asyncio.Event()
        self.audio_ready = asyncio.Event()
        self.audio_started = False
        self.dropped = 0

    def start_audio(self) -> None:
        """Keep the sound of the last `depth` ticks only, as the pictures (the first call)."""
        if not self.audio_started:
            self.audio_started = True
            while len(self.audio) > 2 * self.video.maxlen:
                self.audio.popleft()

    def put(self, frame: LiveFrame) -> None:
        """From the tick thread."""
        self.loop.call_soon_threadsafe(self._put, frame)

    def _put(self, frame: LiveFrame) -> None:
        if frame.image is not None:
            self.dropped += len(self.video) == self.video.maxlen
            self.video.append(frame)
            self.video_ready.set()
        half = len(frame.audio) // 2
        first = int(round(frame.tick * SAMPLE_RATE / self.fps))
        self.audio.append((first, frame.audio[:half]))
        self.audio.append((first + half, frame.audio[half:]))
        self.audio_ready.set()


class AvatarVideoTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, output: SessionOutput) -> None:
        super().__init__()
        self.output = output

    async def recv(self) -> av.VideoFrame:
        frame = await _next(self, self.output.video, self.output.video_ready)
        video = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.image), format="rgb24")
        video.pts = int(round(frame.tick * VIDEO_CLOCK / self.output.fps))
        video.time_base = Fraction(1, VIDEO_CLOCK)
        return video


class AvatarAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, output: SessionOutput) -> None:
        super().__init__()
        self.output = output

    async def recv(self) -> av.AudioFrame:
        self.output.start_audio()
        first, samples = await _next(self, self.output.audio, self.output.audio_ready)
        audio = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        audio.sample_rate = SAMPLE_RATE
        audio.pts = first
        audio.time_base = Fraction(1, SAMPLE_RATE)
        return audio


async def _next(track: MediaStreamTrack, queue: deque, ready: asyncio.Event):
    while not queue:
        if track.readyState != "live":
            raise MediaStreamError
        ready.clear()
        await ready.wait()
    return queue.popleft()


async def read_microphone(track: MediaStreamTrack, session: Session) -> None:
    """Push the browser's microphone to `session` until the track ends."""
    resampler: soxr.ResampleStream | None = None
    rate = None
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        samples = frame.to_ndarray()  # (1, n * channels) packed or (channels, n) planar
        channels = len(frame.layout.channels)
        if frame.format.is_planar:
            mono = samples.astype(np.float32).mean(axis=0)
        else:
            mono = samples.reshape(-1, channels).astype(np.float32).mean(axis=1)
        if samples.dtype == np.int16:
            mono /= 32768.0
        if frame.sample_rate != rate:
            rate = frame.sample_rate
            resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
        session.push_audio(resampler.resample_chunk(mono), gate=True)
