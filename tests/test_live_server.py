"""CASync Live over the network, with the package's Python WebRTC client against the real
server: frames and audio arrive on one clock, each client has its own session, a full server
says 503, a vanished client frees its session, the control socket's errors and limits."""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np
import pytest
import soundfile

from casync.audio.frontend import SAMPLE_RATE
from casync.live.avatar import LiveAvatar
from casync.live.client import LiveClient, ServerFull
from casync.live.engine import Engine, LiveModel
from casync.live.server import LiveServer, check_exposure
from tests.live_support import REPO, ServerThread, short_clip, speech, tiny_checkpoint

MAX_SESSIONS = 2


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    work = tmp_path_factory.mktemp("live_server")
    model = LiveModel.from_checkpoint(tiny_checkpoint(work / "tiny.ckpt"))
    avatar = LiveAvatar.from_video("s1", model.generator, short_clip(work / "clip.mp4", 1.0))
    server = LiveServer(
        Engine(model, max_sessions=MAX_SESSIONS),
        {"s1": avatar},
        max_message_bytes=64_000,
        max_upload_bytes=400_000,
        connect_timeout_s=2.0,
        socket_grace_s=1.0,
    )
    thread = ServerThread(server)
    yield thread
    thread.stop()


def sessions(live) -> int:
    return len(live.server.engine.sessions)


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_frames_and_audio_arrive_on_one_clock_and_speech_plays(live):
    async def scenario():
        opened = time.monotonic()
        async with LiveClient(live.url) as client:
            await client.wait_frames(1)
            first_frame_s = time.monotonic() - opened
            await client.wait_frames(10)
            pcm = (speech() * 32767).astype(np.int16)
            await client.push_audio(pcm)
            await client.flush()
            started = await client.wait_for("speech_started")
            ended = await client.wait_for("speech_ended")
            await client.wait_frames(len(client.frames) + 5)
            return client, first_frame_s, started, ended

    client, first_frame_s, started, ended = asyncio.run(scenario())
    assert first_frame_s < 3.0  # the target (1 s on a quiet machine) is the benchmark's
    frames = client.frames
    assert all(f.image is not None and f.image.shape == (288, 360, 3) for f in frames)
    # One tick per frame, 3600 ticks of 90 kHz apart; audio 20 ms frames follow the same clock.
    steps = np.diff([f.pts for f in frames])
    assert np.median(steps) == 3600
    assert ended["frames"] == round(len(speech()) / 640)
    assert started["latency_ms"] < 500
    audio_s = sum(len(a.samples) / a.rate for a in client.audio)
    video_s = len(frames) / 25
    assert abs(audio_s - video_s) < 0.5
    heard = np.concatenate([a.samples for a in client.audio]).astype(np.float32)
    assert np.abs(heard).max() > 3000  # the speech came back as sound
    # The session is gone with the client.
    asyncio.run(wait_until(lambda: sessions(live) == 0))


def test_each_client_has_its_own_session_and_a_full_server_says_503(live):
    async def scenario():
        async with LiveClient(live.url) as first, LiveClient(live.url) as second:
            assert first.session != second.session
            await first.wait_frames(5)
            await second.wait_frames(5)
            await first.push_audio(speech(0.6))
            await first.flush()
            await first.wait_for("speech_ended")
            with pytest.raises(ServerFull, match="max_sessions"):
                await LiveClient(live.url).connect()
            assert not [e for e in second.events if e["type"].startswith("speech")]
            health = await health_of(live)
            assert health == {"status": "full", "sessions": 2, "max_sessions": 2}
        await wait_until(lambda: sessions(live) == 0)

    asyncio.run(scenario())


async def health_of(live) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"{live.url}/health") as response:
        return await response.json()


def test_a_vanished_client_frees_its_session(live):
    async def scenario():
        client = LiveClient(live.url)
        await client.connect()
        await client.wait_frames(3)
        await client.close(vanish=True)  # no DELETE: the peer connection just ends
        await wait_until(lambda: sessions(live) == 0)

        # A viewer that never completes the handshake is dropped (its ICE fails, or at the
        # latest connect_timeout_s after the offer).
        import aiohttp
        from aiortc import RTCPeerConnection

        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
        async with aiohttp.ClientSession() as http, http.post(f"{live.url}/offer", json=offer):
            pass
        await pc.close()
        await wait_until(lambda: sessions(live) == 0, timeout=8)

    asyncio.run(scenario())


def test_a_client_whose_control_socket_closes_is_gone_unless_it_reopens_one(live):
    """A killed browser's sockets close at once, its peer connection fails only after ~30 s of
    ICE consent checks: the socket decides (after `socket_grace_s`, 1 s here)."""

    async def scenario():
        async with LiveClient(live.url) as client:
            await client.wait_frames(3)
            url = f"{live.url}/sessions/{client.session}/ws"
            await client._socket.close()
            client._socket = await client._http.ws_connect(url)  # back within the grace
            await asyncio.sleep(1.5)
            assert client.session in live.server.engine.sessions
            frames = len(client.frames)
            await client._socket.close()  # and now for good; the peer connection stays up
            await wait_until(lambda: client.session not in live.server.engine.sessions, 4)
            assert len(client.frames) > frames  # it was still receiving until then
        assert sessions(live) == 0

    asyncio.run(scenario())


def test_interrupt_bad_pcm_and_limits_over_the_socket(live):
    async def scenario():
        async with LiveClient(live.url) as client:
            await client.wait_frames(3)
            await client.push_audio(np.full(640, np.nan, np.float32))
            error = await client.wait_for("error")
            assert "non-finite" in error["message"]
            await client.push_audio(np.zeros(640, np.float32), sample_rate=48_000)
            assert "48000 Hz" in (await client.wait_for("error", after=1))["message"]
            await client._socket.send_str('{"type": "dance"}')
            assert "unknown message" in (await client.wait_for("error", after=2))["message"]
            # The session lives on: speech, then an interrupt.
            mark = len(client.events)
            await client.push_audio((speech() * 32767).astype(np.int16))  # 48 kB < 64 kB
            await client.wait_for("speech_started", after=mark)
            sent = time.monotonic()
            await client.clear_buffer()
            interrupted = await client.wait_for("interrupted", after=mark)
            assert interrupted["latency_ms"] <= 300
            assert interrupted["arrived"] - sent < 0.5
            await asyncio.sleep(0.5)
            assert "speech_ended" not in [e["type"] for e in client.events[mark:]]
            # Messages past max_message_bytes end the socket, not the server.
            await client.push_audio(np.zeros(40_000, np.int16))
            await asyncio.sleep(0.3)
            assert client._socket.closed
        assert (await health_of(live))["status"] == "ok"

    asyncio.run(scenario())


def test_an_uploaded_file_is_said_and_bad_uploads_are_refused(live):
    wav = io.BytesIO()
    soundfile.write(wav, speech(0.8), SAMPLE_RATE, format="WAV")

    async def scenario():
        async with LiveClient(live.url) as client:
            reply = await client.say(wav.getvalue())
            assert reply["seconds"] == pytest.approx(0.8, abs=0.01)
            await client.wait_for("speech_started")
            await client.wait_for("speech_ended")
            with pytest.raises(RuntimeError, match="HTTP 400"):
                await client.say(b"not audio at all" * 10)
            with pytest.raises(RuntimeError, match="HTTP 413"):
                await client.say(bytes(500_000))
            client.avatar = "../../etc/passwd"
            with pytest.raises(RuntimeError, match="HTTP 400.*avatar id"):
                await LiveClient(live.url, avatar="../../etc/passwd").connect()

    asyncio.run(scenario())


def test_metrics_and_tokens(live, monkeypatch):
    import aiohttp

    with pytest.raises(ValueError, match="token="):
        check_exposure("0.0.0.0", None)
    check_exposure("0.0.0.0", "secret")

    async def scenario():
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{live.url}/metrics") as response:
                text = await response.text()
            assert "casync_live_sessions 0" in text
            assert 'casync_live_latency_ms{quantile="0.95"}' in text
            assert "casync_live_resident_memory_bytes" in text
            live.server.token = "secret"
            try:
                async with http.get(f"{live.url}/metrics") as response:
                    assert response.status == 401
                async with http.get(f"{live.url}/metrics?token=secret") as response:
                    assert response.status == 200
                async with http.get(f"{live.url}/health") as response:
                    assert response.status == 200
                async with LiveClient(live.url, token="secret") as client:
                    await client.wait_frames(2)
            finally:
                live.server.token = None

    asyncio.run(scenario())


def test_the_command_builds_the_built_in_avatar_and_refuses_an_open_host(compose):
    from casync.live.__main__ import build

    with pytest.raises(ValueError, match="token="):
        build(compose("live", ["host=0.0.0.0"]))
    with pytest.raises(ValueError, match="checkpoint= goes with one of video= or avatar="):
        build(compose("live", ["checkpoint=x.ckpt"]))
    server = build(compose("live", ["paths.root_dir=" + str(REPO)]))
    assert list(server.avatars) == ["grid_s1_idle"]
    assert server.avatars["grid_s1_idle"].idle_range == (0, 43)


def test_connect_and_disconnect_many_times_memory_stays_flat(live):
    from casync.live.metrics import rss_bytes

    async def cycles(n: int) -> None:
        for _ in range(n):
            async with LiveClient(live.url, keep_images=False) as client:
                await client.wait_frames(2)
        await wait_until(lambda: sessions(live) == 0)

    asyncio.run(cycles(5))  # warm-up: codecs, pools
    before = rss_bytes()
    asyncio.run(cycles(20))
    grown = (rss_bytes() - before) / 2**20
    assert grown < 50, f"RSS grew {grown:.1f} MB over 20 sessions"
    assert live.server.connections == {} and live.server.engine.sessions == {}


def test_a_bad_offer_is_refused_and_holds_nothing(live):
    import aiohttp

    async def scenario():
        async with aiohttp.ClientSession() as http:
            for body in ({"sdp": "v=0 nonsense", "type": "offer"}, {"type": "offer"}, [1, 2]):
                async with http.post(f"{live.url}/offer", json=body) as response:
                    assert response.status == 400, await response.text()
            async with http.post(f"{live.url}/offer", data=b"{not json") as response:
                assert response.status == 400
        assert sessions(live) == 0 and live.server.connections == {}

    asyncio.run(scenario())
