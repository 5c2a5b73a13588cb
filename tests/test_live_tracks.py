"""What waits for a session's WebRTC tracks (`SessionOutput`): a catch-up's sound is all kept,
its missing pictures are not made up, and the sound queued before the connection was up does
not reach the browser."""

from __future__ import annotations

import asyncio

import numpy as np

from casync.live.session import LiveFrame
from casync.live.tracks import AvatarAudioTrack, AvatarVideoTrack, SessionOutput

SPF = 640  # samples per 40 ms tick at 16 kHz


def frame(tick: int, picture: bool = True) -> LiveFrame:
    image = np.full((8, 8, 3), tick % 256, np.uint8) if picture else None
    return LiveFrame(tick, image, np.full(SPF, tick, np.int16), False, 0)


def test_sound_queued_before_the_connection_is_dropped_and_a_catch_up_is_kept_whole():
    async def scenario():
        output = SessionOutput(asyncio.get_running_loop(), fps=25.0)
        for tick in range(50):  # 2 s of ticks before the browser's connection is up
            output.put(frame(tick))
        await asyncio.sleep(0)
        audio, video = AvatarAudioTrack(output), AvatarVideoTrack(output)
        first = await audio.recv()
        assert first.pts == 46 * SPF  # the last 4 ticks' sound, as the last 4 pictures
        assert (await video.recv()).pts == 46 * 3600
        for _ in range(7):
            await audio.recv()
        for _ in range(3):
            await video.recv()
        # A catch-up: 30 ticks at once, one with a picture, all with their sound.
        for tick in range(50, 80):
            output.put(frame(tick, picture=tick == 79))
        await asyncio.sleep(0)
        sound = [await audio.recv() for _ in range(60)]
        assert [s.pts for s in sound] == [
            t * SPF + h * SPF // 2 for t in range(50, 80) for h in (0, 1)
        ]
        assert [int(s.to_ndarray()[0, 0]) for s in sound[::2]] == list(range(50, 80))
        assert (await video.recv()).pts == 79 * 3600  # no made-up pictures between
        assert not output.video and not output.audio

    asyncio.run(scenario())
