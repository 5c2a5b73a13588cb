"""Helpers of the live tests: a tiny random checkpoint, a short clip of the GRID sample the
repository carries, speech with pauses from the same sample, a prepared live avatar."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from casync.audio.frontend import SAMPLE_RATE
from tests.clips import sample_audio, sample_frames, write_clip

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "grid_s1_sample.mp4"
TINY = {"width_multiplier": 0.25, "audio_feature_dim": 80, "audio_window": 10}
MEL = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10}
SPEECH_S = (0.9, 2.4)  # a stretch of the sample where talker 1 speaks


def tiny_checkpoint(path: Path) -> Path:
    import torch

    from casync.contract import save_generator_checkpoint
    from casync.model import CASyncNet

    torch.manual_seed(0)
    save_generator_checkpoint(path, CASyncNet(**TINY), TINY, MEL)
    return path


def short_clip(path: Path, seconds: float = 2.0) -> Path:
    """The sample's first `seconds` (video and audio) as an MP4."""
    frames = sample_frames(SAMPLE, int(round(seconds * 25)))
    return write_clip(path, frames, audio=sample_audio(SAMPLE, seconds))


def speech(seconds: float | None = None) -> np.ndarray:
    """(N,) float32 16 kHz: real speech from the sample."""
    a, b = SPEECH_S
    audio = sample_audio(SAMPLE, b)[int(a * SAMPLE_RATE) :]
    return audio if seconds is None else audio[: int(seconds * SAMPLE_RATE)]


def speech_with_pauses(pause_s: float = 1.5, repeats: int = 2) -> np.ndarray:
    """pause, speech, pause, speech, ... pause: the fake microphone's WAV."""
    pause = np.zeros(int(pause_s * SAMPLE_RATE), np.float32)
    return np.concatenate([pause, *[np.concatenate([speech(), pause]) for _ in range(repeats)]])


class ServerThread:
    """A `LiveServer` listening on a free port, its event loop in a thread of its own (tests
    drive clients with `asyncio.run` beside it)."""

    def __init__(self, server, host: str = "127.0.0.1") -> None:
        import asyncio
        import socket
        import threading

        self.server = server
        with socket.socket() as probe:
            probe.bind((host, 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(host,), daemon=True)
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("the live server did not start")

    def _run(self, host: str) -> None:
        import asyncio

        from casync.live.server import serve

        asyncio.set_event_loop(self.loop)
        self.runner = self.loop.run_until_complete(serve(self.server, host, self.port))
        self._started.set()
        self.loop.run_forever()

    def call(self, coroutine, timeout: float = 30):
        """Run `coroutine` on the server's loop and return its result."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
