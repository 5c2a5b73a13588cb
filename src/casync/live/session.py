"""One live session: its avatar, its place in the idle loop, its queued speech, its mouth fade,
and the events it reports. The API mirrors livekit-agents' avatar runner: `push_audio`,
`flush` (end of a segment), `clear_buffer` (interrupt); events `speech_started`,
`speech_ended` (playback finished), `interrupted`, `error`.

The engine asks for a `plan` each 40 ms tick and hands back the frame it rendered (`emit`).
`push_audio` and `clear_buffer` come from another thread than the tick: one lock guards the
speech queue. Everything the session holds is dropped in `close`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from casync.audio.frontend import SAMPLE_RATE
from casync.audio.pcm import PCMError, check_rate, pcm_chunk
from casync.live.avatar import LiveAvatar
from casync.live.speech import SpeechFrame, Utterance
from casync.media.audio import level_dbfs

FADE_FRAMES = 3  # talking <-> idle blend, in frames


@dataclass
class LiveFrame:
    """What a session shows and plays at one tick: its own audio, and one frame unless the
    engine was catching up (`image` None: the picture shown stays, the sound goes out on time)."""

    tick: int
    image: np.ndarray | None  # (H, W, 3) uint8 RGB; None: no new picture this tick
    audio: np.ndarray  # (SAMPLE_RATE / fps,) int16 mono at 16 kHz
    talking: bool  # the mouth is (partly) generated
    source_index: int  # the source frame under it


@dataclass
class TickPlan:
    """The session's inputs for one tick (made under its lock, rendered outside it)."""

    tick: int
    source_index: int
    weight: float  # generated-mouth share after this tick, 0 = the source frame itself
    speech: SpeechFrame | None  # a frame to generate, or None
    epoch: int  # clear_buffer count when planned: a later interrupt discards the result
    audio: np.ndarray = field(repr=False, default=None)

    def pcm16(self) -> np.ndarray:
        """This tick's audio as the tracks send it: int16, clipped."""
        return (np.clip(self.audio, -1, 1) * 32767).astype(np.int16)


class Session:
    def __init__(
        self,
        session_id: str,
        avatar: LiveAvatar,
        front_end,
        silence_dbfs: float | None,
        on_frame: Callable[[LiveFrame], None],
        on_event: Callable[[dict], None],
        end_after_s: float = 0.3,
        gate_silence_s: float = 0.6,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`end_after_s`: speech whose pushes stop for this long is finished (played to its
        end); `gate_silence_s`: with `push_audio(gate=True)` (a microphone), this much trailing
        silence ends the speech and silent chunks between speeches are not queued."""
        self.id = session_id
        self.avatar = avatar
        self.front_end = front_end
        self.silence_dbfs = silence_dbfs
        self.on_frame, self.on_event = on_frame, on_event
        self.end_after_s, self.gate_silence_s = end_after_s, gate_silence_s
        self.clock = clock
        self.samples_per_frame = int(round(SAMPLE_RATE / avatar.fps))
        self.created = clock()
        self.closed = False
        self._lock = threading.Lock()
        self._queue: deque[Utterance] = deque()
        self._tick = 0
        self._fade = 0  # frames into the talking blend, 0..FADE_FRAMES
        self._held: np.ndarray | None = None  # the last generated crop: shown while fading out
        self._epoch = 0
        self._speaking = False
        self._interrupted_at: float | None = None
        self._quiet_s = 0.0  # trailing silence of gated pushes
        self.stats = {"frames": 0, "talking_frames": 0, "underruns": 0}

    # -- the API ---------------------------------------------------------------------------------
    def push_audio(
        self, samples: object, sample_rate: int = SAMPLE_RATE, gate: bool = False
    ) -> bool:
        """Queue PCM (16 kHz mono int16 or float32, `casync.audio.pcm`). Bad PCM becomes an
        `error` event and returns False; the session lives on."""
        try:
            check_rate(sample_rate)
            chunk = pcm_chunk(samples)
        except PCMError as error:
            self.on_event({"type": "error", "message": str(error)})
            return False
        if len(chunk) == 0:
            return True
        now = self.clock()
        with self._lock:
            if self.closed:
                return False
            open_ = self._queue[-1] if self._queue and not self._queue[-1].finished else None
            if gate:
                quiet = self.silence_dbfs is not None and level_dbfs(chunk) <= self.silence_dbfs
                self._quiet_s = self._quiet_s + len(chunk) / SAMPLE_RATE if quiet else 0.0
                if open_ is None and quiet:
                    return True
            if open_ is None:
                open_ = Utterance(self.front_end, self.avatar.fps, self.silence_dbfs, now)
                self._queue.append(open_)
            open_.push(chunk, now)
            if gate and self._quiet_s >= self.gate_silence_s:
                self._finish(open_)
        return True

    def flush(self) -> None:
        """The pushed speech is complete: play it to its end (livekit's `flush`)."""
        with self._lock:
            if self._queue and not self._queue[-1].finished:
                self._finish(self._queue[-1])

    def clear_buffer(self) -> None:
        """Interrupt: drop queued audio, pending features and frames, and any frame being
        generated; the mouth fades back to the idle loop."""
        with self._lock:
            self._queue.clear()
            self._epoch += 1
            was_speaking, self._speaking = self._speaking, False
            self._interrupted_at = self.clock() if was_speaking or self._fade > 0 else None
        if self._interrupted_at is None:
            self.on_event({"type": "interrupted", "latency_ms": 0.0})

    def queued_s(self) -> float:
        with self._lock:
            return sum(u.queued_s() for u in self._queue)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._queue.clear()
            self._held = None
            self._epoch += 1

    # -- the engine's side -----------------------------------------------------------------------
    def plan(self) -> TickPlan:
        """This tick's source frame, speech frame (if one is due) and mouth weight."""
        now = self.clock()
        with self._lock:
            tick, self._tick = self._tick, self._tick + 1
            speech = self._next_speech(now)
            talking = speech is not None and not speech.silent
            fade = min(FADE_FRAMES, self._fade + 1) if talking else max(0, self._fade - 1)
            self._fade = 0 if not talking and self._held is None else fade
            audio = speech.audio if speech is not None else np.zeros(self.samples_per_frame)
            return TickPlan(
                tick,
                self.avatar.idle_index(tick),
                self._fade / FADE_FRAMES,
                speech if talking else None,
                self._epoch,
                audio,
            )

    def _next_speech(self, now: float) -> SpeechFrame | None:
        while self._queue:
            head = self._queue[0]
            if not head.finished and now - head.last_push >= self.end_after_s:
                self._finish(head)
            if head.done():
                self._queue.popleft()
                self._event_ended(head)
                continue
            if not head.ready():
                if head.next > 0:
                    self.stats["underruns"] += 1
                return None
            frame = head.take()
            if frame.index == 0:
                self._speaking = True
                latency = (now - frame.arrived) * 1000
                self.on_event({"type": "speech_started", "latency_ms": round(latency, 1)})
            return frame
        return None

    def _finish(self, utterance: Utterance) -> None:
        if not utterance.finish() and utterance in self._queue:
            self._queue.remove(utterance)

    def _event_ended(self, utterance: Utterance) -> None:
        self._speaking = any(u.next > 0 for u in self._queue)
        self.on_event({"type": "speech_ended", "frames": utterance.next})

    def generated(self, plan: TickPlan, crop: np.ndarray | None) -> np.ndarray | None:
        """The crop to blend at `plan.weight`: `crop` (just generated) or the held one; None
        when the plan was overtaken by an interrupt or the weight is 0."""
        with self._lock:
            if plan.epoch != self._epoch and crop is not None:
                crop = None  # generated for speech that has since been dropped
            if crop is not None:
                self._held = crop
            if plan.weight <= 0:
                self._held = None
                return None
            return self._held

    def emit(self, frame: LiveFrame) -> None:
        self.stats["frames"] += 1
        self.stats["talking_frames"] += frame.talking
        if not frame.talking and frame.image is not None and self._interrupted_at is not None:
            latency = (self.clock() - self._interrupted_at) * 1000
            self._interrupted_at = None
            self.on_event({"type": "interrupted", "latency_ms": round(latency, 1)})
        self.on_frame(frame)
