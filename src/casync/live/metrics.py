"""What an operator watches: sessions, frames/s, speech-in -> mouth-out latency percentiles,
dropped (late) frames, interrupt latency and memory, in Prometheus' text format (written here:
a handful of lines needs no client library)."""

from __future__ import annotations

import resource
import threading
import time
from collections import deque

import numpy as np

PERCENTILES = (50, 95, 99)


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class LiveMetrics:
    def __init__(self, window: int = 2000) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.frames = 0
        self.talking_frames = 0
        self.dropped_frames = 0
        self.ticks = 0
        self.sessions_opened = 0
        self.events: dict[str, int] = {}
        self._latency = deque(maxlen=window)  # ms, speech in -> mouth generated
        self._interrupt = deque(maxlen=window)  # ms, clear_buffer -> idle frame
        self._tick_s = deque(maxlen=window)
        self._recent = deque(maxlen=250)  # (time, frames) for frames/s

    def tick(self, seconds: float, frames: int, talking: int) -> None:
        with self._lock:
            self.ticks += 1
            self.frames += frames
            self.talking_frames += talking
            self._tick_s.append(seconds)
            self._recent.append((time.monotonic(), frames))

    def late(self, ticks: int, sessions: int) -> None:
        with self._lock:
            self.dropped_frames += ticks * sessions

    def latency(self, ms: float) -> None:
        with self._lock:
            self._latency.append(ms)

    def event(self, message: dict) -> None:
        with self._lock:
            kind = message.get("type", "?")
            self.events[kind] = self.events.get(kind, 0) + 1
            if kind == "interrupted":
                self._interrupt.append(float(message.get("latency_ms", 0.0)))

    def frames_per_s(self) -> float:
        with self._lock:
            if len(self._recent) < 2:
                return 0.0
            span = self._recent[-1][0] - self._recent[0][0]
            return sum(n for _, n in list(self._recent)[1:]) / span if span > 0 else 0.0

    def percentiles(self, which: str = "latency") -> dict[int, float]:
        with self._lock:
            values = list(self._latency if which == "latency" else self._interrupt)
        if not values:
            return {}
        return {p: float(np.percentile(values, p)) for p in PERCENTILES}

    def prometheus(self, sessions: int, max_sessions: int) -> str:
        """The text exposition format (version 0.0.4)."""
        lines = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP casync_live_{name} {help_}")
            lines.append(f"# TYPE casync_live_{name} {kind}")
            lines.extend(f"casync_live_{name}{labels} {value:g}" for labels, value in samples)

        metric("sessions", "gauge", "Open sessions.", [("", sessions)])
        metric("max_sessions", "gauge", "Sessions this server accepts.", [("", max_sessions)])
        metric("frames_total", "counter", "Frames sent, all sessions.", [("", self.frames)])
        metric(
            "talking_frames_total",
            "counter",
            "Frames with a generated mouth.",
            [("", self.talking_frames)],
        )
        metric(
            "dropped_frames_total",
            "counter",
            "Frames whose tick ran late.",
            [("", self.dropped_frames)],
        )
        metric(
            "frames_per_second",
            "gauge",
            "Frames sent per second, recent.",
            [("", self.frames_per_s())],
        )
        for name, which, help_ in (
            ("latency_ms", "latency", "Speech in -> its mouth generated, ms."),
            ("interrupt_ms", "interrupt", "clear_buffer -> idle frame, ms."),
        ):
            quantiles = self.percentiles(which)
            metric(
                name,
                "gauge",
                help_,
                [(f'{{quantile="{p / 100:g}"}}', v) for p, v in quantiles.items()],
            )
        with self._lock:
            events = sorted(self.events.items())
        metric(
            "events_total",
            "counter",
            "Session events.",
            [(f'{{type="{k}"}}', v) for k, v in events],
        )
        metric("resident_memory_bytes", "gauge", "RSS of the server.", [("", rss_bytes())])
        return "\n".join(lines) + "\n"
