"""Feed a running CASync Live server from an audio file, as a TTS would: 16 kHz int16 PCM pushed
in 200 ms chunks a little faster than real time, then `flush`; print the events, and interrupt
halfway with --interrupt.

    python -m casync.live &                      # or make live
    python examples/live_tts.py speech.wav [--url http://127.0.0.1:8080] [--interrupt]
"""

from __future__ import annotations

import argparse
import asyncio

import numpy as np

from casync.audio.frontend import SAMPLE_RATE
from casync.live.client import LiveClient
from casync.media.audio import load_audio


async def speak(url: str, path: str, interrupt: bool, token: str | None) -> None:
    pcm = (np.clip(load_audio(path, SAMPLE_RATE, False), -1, 1) * 32767).astype(np.int16)
    chunk = SAMPLE_RATE // 5  # 200 ms, as TTS engines stream
    async with LiveClient(url, token=token, keep_images=False) as client:
        for k, start in enumerate(range(0, len(pcm), chunk)):
            await client.push_audio(pcm[start : start + chunk])
            await asyncio.sleep(0.15)  # a TTS runs ahead of playback; the server queues it
            if interrupt and start > len(pcm) // 2:
                await client.clear_buffer()
                print(await client.wait_for("interrupted"))
                return
            if k == 0:
                print(await client.wait_for("speech_started"))
        await client.flush()
        print(await client.wait_for("speech_ended", timeout=len(pcm) / SAMPLE_RATE + 10))
        print(f"received {len(client.frames)} frames and {len(client.audio)} audio packets")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token")
    parser.add_argument("--interrupt", action="store_true")
    args = parser.parse_args()
    asyncio.run(speak(args.url, args.audio, args.interrupt, args.token))


if __name__ == "__main__":
    main()
