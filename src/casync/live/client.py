"""The Python side of a live session (aiortc): connect over WebRTC, receive the avatar's frames
and audio, push speech, interrupt, read events. The tests use it, and so can a speech pipeline
(an LLM + TTS) that wants to watch what it drives.

    async with LiveClient("http://127.0.0.1:8080") as client:
        await client.push_audio(pcm_int16)   # 16 kHz mono, int16 or float32 (declared)
        await client.flush()                 # end of the segment: it plays to its end
        await client.wait_for("speech_ended")
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import aiohttp
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from casync.audio.frontend import SAMPLE_RATE


class ServerFull(RuntimeError):
    """HTTP 503: the server holds its `max_sessions` already."""


@dataclass
class ReceivedFrame:
    arrived: float  # time.monotonic() when it was decoded here
    pts: int  # 90 kHz, the server's tick clock
    image: np.ndarray | None  # (H, W, 3) uint8 RGB, unless keep_images=False


@dataclass
class ReceivedAudio:
    arrived: float
    pts: int  # in samples at `rate`
    rate: int
    samples: np.ndarray  # (n,) int16 mono


class LiveClient:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        avatar: str | None = None,
        microphone: MediaStreamTrack | None = None,
        keep_images: bool = True,
    ) -> None:
        """`microphone`: an aiortc audio track sent to the server as a microphone (the page's
        mode); without one, speech goes through `push_audio`."""
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.avatar, self.microphone, self.keep_images = avatar, microphone, keep_images
        self.frames: list[ReceivedFrame] = []
        self.audio: list[ReceivedAudio] = []
        self.events: list[dict] = []
        self.session: str | None = None
        self._pc: RTCPeerConnection | None = None
        self._http: aiohttp.ClientSession | None = None
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task] = []
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> LiveClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- connecting ------------------------------------------------------------------------------
    async def connect(self) -> None:
        self._http = aiohttp.ClientSession(headers=self.headers)
        self._pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no public STUN
        pc.addTransceiver("video", direction="recvonly")
        if self.microphone is not None:
            pc.addTrack(self.microphone)
        else:
            pc.addTransceiver("audio", direction="recvonly")

        @pc.on("track")
        def on_track(track) -> None:
            self._tasks.append(asyncio.ensure_future(self._receive(track)))

        await pc.setLocalDescription(await pc.createOffer())  # gathers candidates
        offer = {
            "sdp": pc.localDescription.sdp,
            "type": pc.localDescription.type,
            "microphone": self.microphone is not None,
        }
        if self.avatar is not None:
            offer["avatar"] = self.avatar
        async with self._http.post(f"{self.url}/offer", json=offer) as response:
            if response.status == 503:
                await self.close()
                raise ServerFull((await response.json())["error"])
            if response.status != 200:
                text = await response.text()
                await self.close()
                raise RuntimeError(f"offer refused: HTTP {response.status}: {text}")
            answer = await response.json()
        self.session = answer["session"]
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        self._socket = await self._http.ws_connect(f"{self.url}/sessions/{self.session}/ws")
        self._tasks.append(asyncio.ensure_future(self._read_events()))

    async def _receive(self, track) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            if track.kind == "video":
                image = frame.to_ndarray(format="rgb24") if self.keep_images else None
                self.frames.append(ReceivedFrame(now, int(frame.pts), image))
            else:
                samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
                self.audio.append(ReceivedAudio(now, int(frame.pts), frame.sample_rate, samples))
            await self._notify()

    async def _read_events(self) -> None:
        async for message in self._socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                event = json.loads(message.data)
                event["arrived"] = time.monotonic()
                self.events.append(event)
                await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- the API ---------------------------------------------------------------------------------
    async def push_audio(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
        """Queue PCM: int16 or float32, mono, at `sample_rate` (the server takes 16 kHz)."""
        samples = np.asarray(samples)
        fmt = {np.dtype(np.int16): "int16", np.dtype(np.float32): "float32"}.get(samples.dtype)
        if fmt is None:
            raise ValueError(f"push_audio: int16 or float32 samples, got {samples.dtype}")
        declare = {"type": "push_audio", "format": fmt, "sample_rate": sample_rate}
        await self._socket.send_str(json.dumps(declare))
        await self._socket.send_bytes(samples.tobytes())

    async def flush(self) -> None:
        await self._socket.send_str(json.dumps({"type": "flush"}))

    async def clear_buffer(self) -> None:
        """Interrupt."""
        await self._socket.send_str(json.dumps({"type": "clear_buffer"}))

    async def say(self, data: bytes) -> dict:
        """Upload an audio file's bytes for the avatar to say."""
        async with self._http.post(
            f"{self.url}/sessions/{self.session}/say", data=data
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"say refused: HTTP {response.status}: {await response.text()}")
            return await response.json()

    async def wait_for(self, kind: str, after: int = 0, timeout: float = 10.0) -> dict:
        """The first event of type `kind` among events[after:]."""

        def found():
            return next((e for e in self.events[after:] if e["type"] == kind), None)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(found), timeout)
        return found()

    async def wait_frames(self, count: int, timeout: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.frames) >= count), timeout
            )

    async def close(self, vanish: bool = False) -> None:
        """Hang up. `vanish=True` drops the connection without telling the server (no DELETE,
        the peer connection torn down as a crashed browser's would be)."""
        if not vanish and self.session is not None and self._http is not None:
            try:
                async with self._http.delete(f"{self.url}/sessions/{self.session}"):
                    pass
            except aiohttp.ClientError:
                pass
        if self._socket is not None:
            await self._socket.close()
        if self._pc is not None:
            await self._pc.close()
        for task in self._tasks:
            task.cancel()
        if self._http is not None:
            await self._http.close()
