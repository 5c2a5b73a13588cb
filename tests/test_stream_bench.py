"""The stream benchmark's verdict: a stream that keeps up is called real time even though its
first frame is late, and one that falls behind is not (the old frames/s, frames over the wall
time, called every stream slow: it counted the first frame's latency as slowness)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest

from benchmarks.stream_bench import measure


@dataclass
class Rendered:
    index: int


class PacedSynth:
    """Emits frame j once its audio has arrived plus `delay` s, taking `cost` s per frame."""

    fps = 25.0

    def __init__(self, delay: float, cost: float) -> None:
        self.delay, self.cost = delay, cost

    def render(self, chunks):
        received, done, last, start = 0, 0, 0.0, None
        for chunk in chunks:  # paced: chunk k is spoken by start + (k + 1) * 40 ms
            start = start or time.perf_counter() - 0.04
            received += len(chunk)
            arrived = start + received / 16_000
            while (done + 1) / self.fps * 16_000 <= received:
                last = max(arrived + self.delay, last + self.cost)
                time.sleep(max(0.0, last - time.perf_counter()))
                yield Rendered(done)
                done += 1


@pytest.mark.parametrize(
    ("cost", "real_time"),
    [(0.0, True), (0.05, False)],  # 0.05 s a frame is 20 frames/s: behind 25
)
def test_measure_tells_keeping_up_from_falling_behind(cost: float, real_time: bool) -> None:
    result = measure(PacedSynth(delay=0.15, cost=cost), np.zeros(32_000, np.float32))
    assert result["frames"] == 50
    assert result["real_time"] is real_time
    if real_time:
        assert result["p50_ms"] > 140  # the first frames are late, and that is not slowness
        assert 24.0 < result["fps"] < 26.0
        assert abs(result["drift_ms_per_s"]) < 10
    else:
        assert result["fps"] < 21.0
        assert result["drift_ms_per_s"] > 100  # 1000 * (1 - 20 / 25) = 200 ms per s
