"""The render engine: one model serves every session, on one 40 ms clock. It knows nothing of
HTTP or WebRTC: sessions hand it speech, it hands each session one `LiveFrame` per tick.

Per tick every session gets exactly one frame and its own 40 ms of audio (silence when idle), so
audio and video share one clock and cannot drift. A session with speech due gets the lip-synced
frame; the mouth crops of all talking sessions are generated in one batch. Any other session
gets its idle frame: the source frame of its idle loop itself, no network. The head keeps its
place in that loop whether the session talks or not; only the mouth is blended in and out.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from casync.audio.frontend import SAMPLE_RATE
from casync.audio.windows import cache_windows
from casync.contract import CropGenerator, LoadedGenerator, load_generator
from casync.inference.blend import Blender
from casync.inference.front_end import build_front_end
from casync.inference.precision import build_generator
from casync.live.avatar import LiveAvatar
from casync.live.metrics import LiveMetrics
from casync.live.session import LiveFrame, Session, TickPlan
from casync.media.audio import SILENCE_DBFS

log = logging.getLogger(__name__)


class SessionsFull(RuntimeError):
    """The engine holds `max_sessions` sessions already."""


class LiveModel:
    """The checkpoint's generator, front end and paste-back, shared by every session."""

    def __init__(
        self,
        generator: LoadedGenerator,
        device: str = "cpu",
        precision: str = "fp32",
        feather: float = 5.0,
        color_match: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        """`cache_dir`: where int8 keeps its quantized graphs (reused by later starts)."""
        self.generator = generator
        self.front_end = build_front_end(generator)
        self.crop_size = generator.crop_size
        self.mask = generator.mask
        net = build_generator(generator.net, precision, device, cache_dir)
        self.crops = CropGenerator(net, device)
        self.blender = Blender(generator.mask, feather, color_match)

    @classmethod
    def from_checkpoint(cls, path, **options) -> LiveModel:
        return cls(load_generator(path, map_location="cpu"), **options)

    def warm_up(self, avatar: LiveAvatar, speech: np.ndarray, batch: int = 16) -> float:
        """Generate one batch of `batch` mouths before any session opens: the avatar's idle
        frames driven by `speech` (16 kHz mono float32). int8 calibrates its activation ranges
        on it (real frames and speech; otherwise on the first session's first words, which
        would also stall that session for the quantization); every precision pays its
        first-call costs here. Returns the seconds it took."""
        started = time.perf_counter()
        n_frames = int(len(speech) * avatar.fps / SAMPLE_RATE)
        if n_frames < batch:
            raise ValueError(
                f"warm-up speech: {len(speech) / SAMPLE_RATE:.2f} s is shorter than {batch} "
                f"frames at {avatar.fps:g} fps"
            )
        windows = next(cache_windows(self.front_end, speech, n_frames, avatar.fps, n_frames))
        picks = np.linspace(0, n_frames - 1, batch).round().astype(int)
        lo, hi = avatar.idle_range
        frames = [lo + i % (hi - lo) for i in range(batch)]
        self.generate([(avatar, f, windows[p]) for f, p in zip(frames, picks, strict=True)])
        return time.perf_counter() - started

    def rest_mouths(self, avatar: LiveAvatar, batch: int = 16) -> np.ndarray:
        """The idle loop's mouths generated from silence, (L, S, S, 3) uint8: a resting mouth
        for footage whose idle loop talks (`LiveAvatar.loop_talks`), shown while idle and in
        speech pauses instead of the footage's moving lips. Made once, at start-up."""
        fps, second = avatar.fps, int(round(avatar.fps))
        silence = np.zeros(SAMPLE_RATE, np.float32)
        window = next(cache_windows(self.front_end, silence, second, fps, second))[second // 2]
        lo, hi = avatar.idle_range
        crops = []
        for start in range(lo, hi, batch):
            crops += self.generate(
                [(avatar, f, window) for f in range(start, min(start + batch, hi))]
            )
        return np.stack(crops)

    def generate(self, items: list[tuple[LiveAvatar, int, np.ndarray]]) -> list[np.ndarray]:
        """(avatar, source frame, (W, D) audio window) per talking session -> (S, S, 3) uint8
        generated crops. Face features come from each avatar's cache (its idle loop repeats,
        so after one period only the decoder runs); all are decoded in one batch."""
        groups: dict[int, list[int]] = {}
        for k, (avatar, _, _) in enumerate(items):
            groups.setdefault(id(avatar), []).append(k)
        order, parts = [], []
        for members in groups.values():
            avatar = items[members[0]][0]
            frames = [items[k][1] for k in members]

            def encode(missing: list[int], avatar=avatar, frames=frames) -> list[torch.Tensor]:
                crops = np.stack([avatar.crop(frames[i]) for i in missing])
                return self.crops.encode(crops, self.mask, avatar.reference[None])

            parts.append(avatar.face_cache.features(frames, encode))
            order += members
        features = [torch.cat(level) for level in zip(*parts, strict=True)]
        generated = self.crops.decode(features, np.stack([items[k][2] for k in order]))
        crops: list[np.ndarray] = [None] * len(items)
        for row, k in enumerate(order):
            crops[k] = generated[row]
        return crops


class Engine:
    def __init__(
        self,
        model: LiveModel,
        max_sessions: int = 8,
        silence_dbfs: float | None = SILENCE_DBFS,
        max_batch: int = 16,
        max_behind_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`max_behind_s`: how far the ticks may fall behind the wall clock and still be caught
        up (their sound sent at once); further behind, the clock resets."""
        self.model = model
        self.max_sessions = max_sessions
        self.silence_dbfs = silence_dbfs
        self.max_batch = max_batch
        self.max_behind_s = max_behind_s
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self.metrics = LiveMetrics()
        self.fps: float | None = None

    # -- sessions --------------------------------------------------------------------------------
    def open(
        self,
        avatar: LiveAvatar,
        on_frame: Callable[[LiveFrame], None],
        on_event: Callable[[dict], None],
        **options,
    ) -> Session:
        """A new session on `avatar`; SessionsFull when `max_sessions` are open."""
        if len(self.sessions) >= self.max_sessions:
            raise SessionsFull(f"max_sessions: all {self.max_sessions} sessions are in use")
        if self.fps is not None and avatar.fps != self.fps:
            raise ValueError(
                f"avatar {avatar.name} runs at {avatar.fps} fps, the engine at {self.fps}"
            )
        self.fps = avatar.fps

        def event(message: dict) -> None:
            self.metrics.event(message)
            on_event(message)

        session = Session(
            uuid.uuid4().hex, avatar, self.model.front_end, self.silence_dbfs, on_frame, event,
            clock=self.clock, **options,
        )  # fmt: skip
        self.sessions[session.id] = session
        return session

    def close(self, session_id: str) -> None:
        """Forget the session and everything it holds (safe to call twice)."""
        session = self.sessions.pop(session_id, None)
        if session is not None:
            session.close()

    # -- the tick --------------------------------------------------------------------------------
    def tick(self, render: bool = True) -> None:
        """One 40 ms step: plan every session, generate the talking ones' mouths in batches,
        blend, and emit one frame + its audio per session. `render=False` (catching up): each
        session's tick advances and its audio goes out, with no picture and no network."""
        started = self.clock()
        plans = [(s, s.plan()) for s in list(self.sessions.values())]
        if not render:
            for session, plan in plans:
                if not session.closed:
                    shown = session.generated(plan, None)
                    frame = LiveFrame(
                        plan.tick, None, plan.pcm16(), shown is not None, plan.source_index
                    )
                    session.emit(frame)
            return
        talking = [(s, p) for s, p in plans if p.speech is not None]
        crops = {}
        for start in range(0, len(talking), self.max_batch):
            crops.update(self._generate(talking[start : start + self.max_batch]))
        for session, plan in plans:
            if not session.closed:
                session.emit(self._compose(session, plan, crops.get(id(plan))))
        self.metrics.tick(self.clock() - started, len(plans), len(talking))

    def _generate(self, batch: list[tuple[Session, TickPlan]]) -> dict[int, np.ndarray]:
        items = [(s.avatar, p.source_index, p.speech.window) for s, p in batch]
        generated = self.model.generate(items)
        now = self.clock()
        for _, plan in batch:
            self.metrics.latency((now - plan.speech.arrived) * 1000)
        return {id(plan): crop for (_, plan), crop in zip(batch, generated, strict=True)}

    def _compose(self, session: Session, plan: TickPlan, crop: np.ndarray | None) -> LiveFrame:
        avatar, s = session.avatar, plan.source_index
        image = avatar.frame(s)
        audio = plan.pcm16()
        shown = session.generated(plan, crop)
        rest = avatar.rest_crop(s)  # a resting mouth where the idle loop talks, else None
        if (shown is None and rest is None) or not avatar.source.face_found[s]:
            return LiveFrame(plan.tick, image, audio, False, s)
        transform = avatar.source.transforms[s]
        original = avatar.crop(s)
        base = (original if rest is None else rest).astype(np.float32)
        mixed = (
            base
            if shown is None
            else plan.weight * shown.astype(np.float32) + (1 - plan.weight) * base
        )
        image = self.model.blender(image, mixed, original, transform)
        return LiveFrame(plan.tick, image, audio, shown is not None, s)

    # -- the clock -------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Tick every 1/fps seconds until `stop` is set; ticks run in one worker thread so the
        event loop stays free for the network.

        The stream keeps the wall clock: when a tick ends past the next slot (a busy machine),
        the ticks missed go out at once without pictures (`tick(render=False)`: the sound on
        time, the last picture held), and are counted as dropped frames. A stream that slipped
        instead would leave the browser's audio buffer behind by each slip (it plays concealment
        and never catches up), and the mouth ahead of its sound for good. Past `max_behind_s`
        (a stopped process) the clock resets."""
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1, thread_name_prefix="casync-live-tick") as worker:
            deadline = self.clock()
            while not stop.is_set():
                period = 1.0 / (self.fps or 25.0)
                await asyncio.sleep(max(0.0, deadline - self.clock()))
                await loop.run_in_executor(worker, self.tick)
                deadline += period
                missed = int((self.clock() - deadline) / period)
                if missed <= 0:
                    continue
                self.metrics.late(missed, len(self.sessions))
                if missed * period > self.max_behind_s:
                    deadline = self.clock()
                    continue
                await loop.run_in_executor(worker, self._catch_up, missed)
                deadline += missed * period

    def _catch_up(self, ticks: int) -> None:
        for _ in range(ticks):
            self.tick(render=False)
