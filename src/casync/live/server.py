"""The HTTP/WebRTC front of CASync Live: an aiohttp app whose handlers parse, validate and hand
over to the engine. Nothing in a request names a file: avatars are chosen by id among those the
server loaded. Routes:

- `GET /` the page; `POST /offer` {sdp, type, avatar?, microphone?} -> {sdp, type, session}
  (WebRTC: the avatar's video and audio out, the microphone in); 503 {reason: max_sessions} when
  full.
- `GET /sessions/{id}/ws` the control socket: JSON `{"type": "push_audio", "format": "int16" |
  "float32", "sample_rate": 16000}` declares the PCM of the binary messages that follow;
  `{"type": "flush"}` ends a segment; `{"type": "clear_buffer"}` interrupts; events come back
  as JSON (`speech_started`, `speech_ended`, `interrupted`, `error`).
- `POST /sessions/{id}/say` an audio file (size-limited) for the avatar to say;
  `DELETE /sessions/{id}` (or `POST /sessions/{id}/close`, a closing page's beacon) ends a
  session; a peer connection that fails or closes, or never connects, ends it too, and so does
  a session whose control socket closed and was not reopened within `socket_grace_s` (a killed
  browser: its sockets close at once, its peer connection only fails after ~30 s of ICE
  consent checks).
- `GET /health`, `GET /metrics` (Prometheus text).

With a `token`, every route but /health needs `Authorization: Bearer TOKEN` or `?token=TOKEN`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
from aiohttp import WSMsgType, web
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from casync.audio.frontend import SAMPLE_RATE
from casync.data.cache import validate_name
from casync.live.avatar import LiveAvatar
from casync.live.engine import Engine, SessionsFull
from casync.live.session import Session
from casync.live.tracks import AvatarAudioTrack, AvatarVideoTrack, SessionOutput, read_microphone

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("static") / "index.html"
PCM_FORMATS = {"int16": np.int16, "float32": np.float32}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_exposure(host: str, token: str | None) -> None:
    """Anything but loopback needs a token."""
    if host not in LOOPBACK and not token:
        raise ValueError(
            f"host={host} exposes the server beyond this machine: set token=SECRET too "
            "(clients send it as 'Authorization: Bearer SECRET' or ?token=SECRET)"
        )


def without_mdns_candidates(sdp: str) -> str:
    """Drop the offer's `<uuid>.local` candidates (browsers hide local addresses behind mDNS
    names): resolving one costs aioice a 1 s timeout where mDNS does not answer, and the
    browser's checks reach the server's own candidates anyway (peer-reflexive)."""
    lines = sdp.splitlines()
    kept = [line for line in lines if not (line.startswith("a=candidate:") and ".local " in line)]
    return "\r\n".join(kept) + "\r\n"


class Connection:
    """One viewer: its engine session, peer connection, tracks and sockets. `close` releases
    everything in one place, whatever ended it (the peer, a timeout, DELETE, shutdown)."""

    def __init__(self, server: LiveServer, output: SessionOutput) -> None:
        self.server, self.output = server, output
        self.session: Session | None = None  # set once the engine has opened it
        self.pc: RTCPeerConnection | None = None
        self.sockets: set[web.WebSocketResponse] = set()
        self.tasks: set[asyncio.Task] = set()
        self.closed = False

    def event(self, message: dict) -> None:
        """From the tick thread or the loop: forward to every socket of the session."""
        self.output.loop.call_soon_threadsafe(self._send, json.dumps(message))

    def _send(self, text: str) -> None:
        for socket in list(self.sockets):
            if not socket.closed:
                self.spawn(socket.send_str(text))

    def spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        log.info("session %s closed: %s", self.session.id, why)
        self.server.connections.pop(self.session.id, None)
        self.server.engine.close(self.session.id)
        for socket in list(self.sockets):
            await socket.close()
        if self.pc is not None:
            await self.pc.close()
        for task in list(self.tasks):
            task.cancel()
        self.output.video.clear()
        self.output.audio.clear()


class LiveServer:
    def __init__(
        self,
        engine: Engine,
        avatars: dict[str, LiveAvatar],
        token: str | None = None,
        max_message_bytes: int = 1 << 20,
        max_upload_bytes: int = 16 << 20,
        connect_timeout_s: float = 15.0,
        socket_grace_s: float = 3.0,
        ice_servers: tuple[str, ...] = (),
    ) -> None:
        """`ice_servers`: STUN/TURN URLs for viewers behind NAT; none by default (aiortc's own
        default asks a public STUN server, which offline costs ~1 s per session)."""
        if not avatars:
            raise ValueError("no avatar to serve")
        self.engine = engine
        self.avatars = avatars
        self.default_avatar = next(iter(avatars))
        self.token = token
        self.max_message_bytes = max_message_bytes
        self.max_upload_bytes = max_upload_bytes
        self.connect_timeout_s = connect_timeout_s
        self.socket_grace_s = socket_grace_s
        self.ice = RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in ice_servers])
        self.connections: dict[str, Connection] = {}
        self._stop = asyncio.Event()

    # -- the app ---------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_upload_bytes, middlewares=[self._auth])
        app.router.add_get("/", self.page)
        app.router.add_post("/offer", self.offer)
        app.router.add_get("/sessions/{id}/ws", self.socket)
        app.router.add_post("/sessions/{id}/say", self.say)
        app.router.add_delete("/sessions/{id}", self.delete)
        app.router.add_post("/sessions/{id}/close", self.delete)  # navigator.sendBeacon's verb
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _start(self, app: web.Application) -> None:
        self._clock = asyncio.ensure_future(self.engine.run(self._stop))

    async def _shutdown(self, app: web.Application) -> None:
        for connection in list(self.connections.values()):
            await connection.close("server shutdown")
        self._stop.set()
        await self._clock

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if self.token and request.path != "/health":
            given = request.query.get("token", "")
            header = request.headers.get("Authorization", "")
            if header.startswith("Bearer "):
                given = header[len("Bearer ") :]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                raise web.HTTPUnauthorized(
                    text="a token is required: ?token=... or Authorization: Bearer ..."
                )
        return await handler(request)

    # -- handlers --------------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.Response:
        return web.FileResponse(PAGE, headers={"Cache-Control": "no-store"})

    async def offer(self, request: web.Request) -> web.Response:
        try:
            params = await request.json()
            sdp = without_mdns_candidates(str(params["sdp"]))
            description = RTCSessionDescription(sdp=sdp, type=str(params["type"]))
            avatar = self._avatar(params.get("avatar"))
        except (ValueError, KeyError, TypeError) as error:
            raise web.HTTPBadRequest(text=f"bad offer: {error}") from None
        loop = asyncio.get_running_loop()
        output = SessionOutput(loop, avatar.fps)
        connection = Connection(self, output)
        try:
            session = self.engine.open(avatar, output.put, connection.event)
        except SessionsFull as error:
            return web.json_response({"error": str(error), "reason": "max_sessions"}, status=503)
        connection.session = session
        connection.pc = pc = RTCPeerConnection(self.ice)
        self.connections[session.id] = connection
        pc.addTrack(AvatarVideoTrack(output))
        pc.addTrack(AvatarAudioTrack(output))

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "audio" and params.get("microphone"):
                connection.spawn(read_microphone(track, session))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await connection.close(f"peer connection {pc.connectionState}")

        connection.spawn(self._expire(connection))
        try:
            await pc.setRemoteDescription(description)
            await pc.setLocalDescription(await pc.createAnswer())
        except ValueError as error:  # an SDP aiortc cannot answer
            await connection.close("bad offer")
            raise web.HTTPBadRequest(text=f"bad offer: {error}") from None
        answer = pc.localDescription
        return web.json_response({"sdp": answer.sdp, "type": answer.type, "session": session.id})

    async def _expire(self, connection: Connection) -> None:
        """A viewer that never connects (or vanished during the handshake) frees its place."""
        await asyncio.sleep(self.connect_timeout_s)
        if connection.pc.connectionState != "connected":
            await connection.close(f"not connected within {self.connect_timeout_s:g} s")

    def _avatar(self, name) -> LiveAvatar:
        if name is None:
            return self.avatars[self.default_avatar]
        validate_name(name, "avatar id")
        if name not in self.avatars:
            raise ValueError(f"no avatar {name!r} (this server has {', '.join(self.avatars)})")
        return self.avatars[name]

    def _connection(self, request: web.Request) -> Connection:
        connection = self.connections.get(request.match_info["id"])
        if connection is None:
            raise web.HTTPNotFound(text="no such session (closed, or never opened)")
        return connection

    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        connection = self._connection(request)
        socket = web.WebSocketResponse(max_msg_size=self.max_message_bytes, heartbeat=10)
        await socket.prepare(request)
        connection.sockets.add(socket)
        pcm = {"format": "int16", "sample_rate": SAMPLE_RATE}
        try:
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    self._control(connection, message.data, pcm)
                elif message.type == WSMsgType.BINARY:
                    self._push(connection.session, message.data, pcm)
        finally:
            connection.sockets.discard(socket)
            if not connection.sockets and not connection.closed:
                connection.spawn(self._orphaned(connection))
        return socket

    async def _orphaned(self, connection: Connection) -> None:
        """The session's last control socket closed: unless one reopens in time, its client is
        gone (a killed browser, a crashed pipeline)."""
        await asyncio.sleep(self.socket_grace_s)
        if not connection.sockets and not connection.closed:
            await connection.close(f"control socket closed for {self.socket_grace_s:g} s")

    def _control(self, connection: Connection, text: str, pcm: dict) -> None:
        session = connection.session
        try:
            message = json.loads(text)
            kind = message["type"]
        except (ValueError, KeyError, TypeError):
            session.on_event(
                {"type": "error", "message": "a control message is JSON with a 'type'"}
            )
            return
        if kind == "push_audio":
            fmt, rate = message.get("format", "int16"), message.get("sample_rate", SAMPLE_RATE)
            if fmt not in PCM_FORMATS or not isinstance(rate, int):
                session.on_event(
                    {
                        "type": "error",
                        "message": f"push_audio: format is int16 or float32 (got {fmt!r}), sample_rate an integer",
                    }
                )
                return
            pcm.update(format=fmt, sample_rate=rate)
        elif kind == "flush":
            session.flush()
        elif kind == "clear_buffer":
            session.clear_buffer()
        else:
            session.on_event(
                {
                    "type": "error",
                    "message": f"unknown message type {kind!r}: push_audio, flush or clear_buffer",
                }
            )

    @staticmethod
    def _push(session: Session, data: bytes, pcm: dict) -> None:
        dtype = PCM_FORMATS[pcm["format"]]
        if len(data) % np.dtype(dtype).itemsize:
            session.on_event(
                {
                    "type": "error",
                    "message": f"{len(data)} bytes is not a whole number of {pcm['format']} samples",
                }
            )
            return
        session.push_audio(np.frombuffer(data, dtype), pcm["sample_rate"])

    async def say(self, request: web.Request) -> web.Response:
        """The request body is an audio file: decoded here (from a temp file), then queued."""
        from casync.media.audio import load_audio

        connection = self._connection(request)
        body = await request.read()  # client_max_size bounds it (413 past it)
        if not body:
            raise web.HTTPBadRequest(text="an empty upload: send the audio file as the body")
        with tempfile.NamedTemporaryFile(suffix=".audio") as file:
            file.write(body)
            file.flush()
            try:
                audio = await asyncio.to_thread(load_audio, file.name, SAMPLE_RATE, False)
            except Exception as error:  # any decoder failure is the upload's
                raise web.HTTPBadRequest(text=f"not a readable audio file: {error}") from None
        connection.session.push_audio(audio)
        connection.session.flush()
        return web.json_response({"seconds": round(len(audio) / SAMPLE_RATE, 3)})

    async def delete(self, request: web.Request) -> web.Response:
        await self._connection(request).close("closed by the client")
        return web.json_response({"closed": True})

    async def health(self, request: web.Request) -> web.Response:
        sessions, limit = len(self.engine.sessions), self.engine.max_sessions
        status = "full" if sessions >= limit else "ok"
        return web.json_response({"status": status, "sessions": sessions, "max_sessions": limit})

    async def metrics(self, request: web.Request) -> web.Response:
        text = self.engine.metrics.prometheus(len(self.engine.sessions), self.engine.max_sessions)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def serve(server: LiveServer, host: str, port: int) -> web.AppRunner:
    """Start listening (returns the runner: `await runner.cleanup()` stops it)."""
    check_exposure(host, server.token)
    runner = web.AppRunner(server.app(), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
