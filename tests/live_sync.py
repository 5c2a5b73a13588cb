"""Audio-video sync as a page plays it (the browser test and `benchmarks/live_sync_bench.py`),
from the browser's own reports of what it presented and played.

The source video carries its own frame index, drawn as black/white squares along its top edge;
the server's frames are tapped as they leave (tick, source frame, audio, talking). Video: the
page's `requestVideoFrameCallback` gives each presented frame's presentation time, and the page
reads the mark off it: its source frame, and so its tick (the idle loop's order). Audio: the
audio receiver's `getSynchronizationSources()`, polled every 5 ms, gives the latest packet
handed to the audio device (its time, RTP timestamp and audio level); which of the server's
20 ms chunks each packet carries is found by matching the levels (RFC 6465: aiortc sends each
chunk's level with its packet) against the tapped audio's. The offset is when a frame is
presented minus when the first sample of its tick's sound is played (handed to the audio device,
plus the device's output latency as an AudioContext reports it): positive = the mouth late,
negative = the mouth early. Not in it: the display's own latency.

(A MediaRecorder's webm of the received stream was the first measure: its audio and video
timestamps drift apart within a minute of a session, by ~200 ms, while the browser's reports
and its own A/V estimate stay put; it does not measure what is played.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from casync.live.tracks import SessionOutput

MARK_BITS, MARK_PX = 7, 16  # the source frame's index, drawn as 7 squares on top
OPUS_RATE = 48_000  # the audio RTP clock


@dataclass
class SentFrame:
    tick: int
    source_index: int
    audio: np.ndarray  # (samples_per_frame,) int16
    talking: bool


def tapped_output(sent: list[SentFrame]) -> type[SessionOutput]:
    """A `SessionOutput` that also appends every frame it is handed to `sent` (install it as
    `casync.live.server.SessionOutput`)."""

    class Tapped(SessionOutput):
        def put(self, frame) -> None:
            sent.append(
                SentFrame(frame.tick, frame.source_index, frame.audio.copy(), frame.talking)
            )
            super().put(frame)

    return Tapped


def marked(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Each frame with its own index in squares along its top edge (away from the face)."""
    out = []
    for index, frame in enumerate(frames):
        frame = frame.copy()
        for bit in range(MARK_BITS):
            square = frame[:MARK_PX, bit * MARK_PX : (bit + 1) * MARK_PX]
            square[:] = 255 if (index >> bit) & 1 else 0
        out.append(frame)
    return out


# Start logging what the page presents and plays (evaluate with [MARK_BITS, MARK_PX]).
PLAYOUT_JS = """([bits, px]) => {
  const video = document.querySelector("video");
  const audio = window.casync.pc.getReceivers().find((r) => r.track.kind === "audio");
  const canvas = Object.assign(document.createElement("canvas"), { width: bits * px, height: px });
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const log = { frames: [], sound: [], on: true, device: new AudioContext() };
  window.__playout = log;
  const mark = () => {
    context.drawImage(video, 0, 0, bits * px, px, 0, 0, bits * px, px);
    const pixels = context.getImageData(0, 0, bits * px, px).data;
    let index = 0;
    for (let bit = 0; bit < bits; bit++) {
      let sum = 0, count = 0;
      for (let y = 3; y < px - 3; y++) for (let x = bit * px + 3; x < (bit + 1) * px - 3; x++) {
        const at = (y * bits * px + x) * 4;
        sum += (pixels[at] + pixels[at + 1] + pixels[at + 2]) / 3; count++;
      }
      if (sum / count > 128) index |= 1 << bit;
    }
    return index;
  };
  const frame = (now, meta) => {
    log.frames.push([meta.presentationTime, mark()]);
    if (log.on) video.requestVideoFrameCallback(frame);
  };
  video.requestVideoFrameCallback(frame);
  log.timer = setInterval(() => {
    for (const s of audio.getSynchronizationSources()) {
      log.sound.push([s.timestamp - performance.timeOrigin, s.rtpTimestamp, s.audioLevel ?? -1]);
    }
  }, 5);
}"""
STOP_PLAYOUT_JS = """() => {
  const log = window.__playout;
  log.on = false;
  clearInterval(log.timer);
  const latency = log.device.outputLatency;  // the sound card's, after the hand-off
  log.device.close();
  return { frames: log.frames, sound: log.sound, output_latency_s: latency };
}"""


def level_dbov(chunks: np.ndarray) -> np.ndarray:
    """RFC 6465 audio level of each int16 chunk (rows), as aiortc sends it with each packet."""
    rms = np.sqrt(np.mean((chunks.astype(np.float64) / 32767) ** 2, axis=1))
    with np.errstate(divide="ignore"):
        return np.clip(np.round(20 * np.log10(rms)), -127, 0)


def played_sound(sound: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The audio receiver's reports -> (play time ms, 20 ms packet number from the first seen,
    level dBov) per packet, in play order."""
    times, rtp, level = sound[:, 0], sound[:, 1].astype(np.int64), sound[:, 2]
    _, first = np.unique(rtp, return_index=True)
    keep = np.sort(first)
    times, rtp, level = times[keep], rtp[keep], level[keep]
    step = (rtp - rtp[0]) % 2**32
    step = np.where(step >= 2**31, step - 2**32, step)  # RTP timestamps wrap at 2**32
    packet = step / (OPUS_RATE * 0.020)
    with np.errstate(divide="ignore"):
        dbov = np.where(level > 0, np.clip(np.round(20 * np.log10(level)), -127, 0), -127)
    return times, packet, np.where(level < 0, np.nan, dbov)


def packet_shift(packet: np.ndarray, dbov: np.ndarray, sent_dbov: np.ndarray) -> int:
    """s with sent chunk (packet + s) played as `packet`: the shift at which the played levels
    match the sent speech's levels (silence matches anything, so only speech counts)."""
    whole = np.round(packet).astype(int)
    valid = ~np.isnan(dbov) & (np.abs(packet - whole) < 0.01)
    whole, dbov = whole[valid], dbov[valid]
    speech = np.flatnonzero(sent_dbov > -60)
    if len(speech) < 20 or len(whole) == 0:
        raise AssertionError("the sound played or sent holds too little speech to place it")
    shifts = np.arange(-whole.max() - 1, len(sent_dbov) - whole.min() + 1)
    matches, counts = np.zeros(len(shifts), int), np.zeros(len(shifts), int)
    for n, shift in enumerate(shifts):
        index = whole + shift
        inside = (index >= 0) & (index < len(sent_dbov))
        spoken = inside.copy()
        spoken[inside] = sent_dbov[index[inside]] > -60
        counts[n] = spoken.sum()
        matches[n] = (np.abs(dbov[spoken] - sent_dbov[index[spoken]]) <= 1).sum()
    top = int(np.argmax(matches))
    best, best_matches, best_count = int(shifts[top]), int(matches[top]), int(counts[top])
    if best_count < 20 or best_matches < 0.9 * best_count:
        raise AssertionError(
            f"the played audio levels match the sent speech at {best_matches} of {best_count} "
            "packets at best: the sound played is not the sound sent"
        )
    elsewhere = np.abs(shifts - best) > 2
    if matches[elsewhere].max(initial=0) > 0.5 * best_matches:
        raise AssertionError(
            "the played speech matches the sent sound at two places: `sent` must hold the "
            "measured speech once (say another clip before it, or tap less)"
        )
    # aiortc's Opus resampler holds a few samples back, so the packet sent with chunk j (and its
    # level) carries chunk j - 1's sound: checked against the RTP timestamps with their random
    # origin pinned to 0 (the shift found was one more than the true one, three times out of three)
    return best - 1


def frame_ticks(
    times: np.ndarray, marks: np.ndarray, source_of_tick: np.ndarray, first_guess: float
) -> np.ndarray:
    """The tick each received frame shows. Its mark names the source frame; the next frame
    shows the first later tick whose source frame is the one marked on it, within the ticks its
    time allows (a few more when frames were dropped); -1 where none is. The first frame's
    tick: of the ticks that showed its source frame, the one whose run places most frames,
    then the nearest to `first_guess`."""

    def follow(first: int) -> np.ndarray:
        ticks, previous, previous_at = [first], first, times[0]
        for at, mark in zip(times[1:], marks[1:], strict=True):
            reach = 5 + int(round((at - previous_at) * 25))
            steps = np.flatnonzero(source_of_tick[previous + 1 : previous + 1 + reach] == mark)
            if len(steps) == 0:
                ticks.append(-1)
                continue
            previous, previous_at = previous + int(steps[0]) + 1, at
            ticks.append(previous)
        return np.array(ticks)

    runs = [follow(start) for start in np.flatnonzero(source_of_tick == marks[0])]
    if not runs:
        raise AssertionError(f"the first frame's mark {marks[0]} names no frame that was sent")
    return min(runs, key=lambda run: (int((run < 0).sum()), abs(run[0] - first_guess)))


@dataclass
class SyncMeasure:
    offsets_ms: np.ndarray  # per placed talking frame: shown - heard
    frames: int  # presented
    placed: int  # frames whose tick was read
    output_latency_ms: float = 0.0  # the sound card's, added to each hand-off

    def summary(self) -> str:
        p10, p50, p90 = np.percentile(self.offsets_ms, [10, 50, 90])
        return (
            f"video - audio: median {p50:.0f} ms, p10 {p10:.0f}, p90 {p90:.0f} over "
            f"{len(self.offsets_ms)} talking frames ({self.placed} of {self.frames} placed; "
            f"sound card latency {self.output_latency_ms:.0f} ms)"
        )


def record_playout(page, during) -> dict:
    """What `page` presents and plays while `during()` runs (a Playwright page)."""
    page.evaluate(PLAYOUT_JS, [MARK_BITS, MARK_PX])
    try:
        during()
    finally:
        record = page.evaluate(STOP_PLAYOUT_JS)
    return record


def measure_playout(record: dict, sent: list[SentFrame]) -> SyncMeasure:
    """The offsets in `record` (STOP_PLAYOUT_JS's: the frames the page presented, the sound it
    played) against what the server sent (`sent`: contiguous ticks)."""
    first_tick = sent[0].tick
    if [f.tick for f in sent] != list(range(first_tick, first_tick + len(sent))):
        raise AssertionError("the tapped frames are not contiguous ticks")
    frames, sound = np.array(record["frames"], float), np.array(record["sound"], float)
    if len(frames) < 2 or len(sound) < 2:
        raise AssertionError(
            f"the page presented {len(frames)} frames and played {len(sound)} packets"
        )
    per_tick = 2  # the server's 20 ms chunks per 40 ms tick (tracks.SessionOutput)
    chunks = np.concatenate([f.audio for f in sent]).reshape(len(sent) * per_tick, -1)
    play_ms, packet, dbov = played_sound(sound)
    play_ms = play_ms + 1000 * float(record.get("output_latency_s") or 0.0)
    shift = packet_shift(packet, dbov, level_dbov(chunks))

    def heard_ms(tick: int) -> float:
        """When the first sample of `tick`'s sound was played (nan outside what was played)."""
        at = (tick - first_tick) * per_tick - shift
        inside = packet.min() <= at <= packet.max()
        return float(np.interp(at, packet, play_ms)) if inside else float("nan")

    shown_ms, marks = frames[:, 0], frames[:, 1].astype(int)
    source_of_tick = np.array([f.source_index for f in sent])
    playing = np.interp(shown_ms[0], play_ms, packet)  # the packet playing when frame 0 shows
    first_guess = first_tick + (playing + shift) / per_tick
    ticks = frame_ticks(shown_ms / 1000, marks, source_of_tick, first_guess - first_tick)
    talking = np.array([f.talking for f in sent])
    heard = {k: heard_ms(first_tick + k) for k in set(ticks.tolist()) if k >= 0 and talking[k]}
    offsets = [at - heard[k] for at, k in zip(shown_ms, ticks, strict=True) if k in heard]
    offsets = [offset for offset in offsets if np.isfinite(offset)]
    latency_ms = 1000 * float(record.get("output_latency_s") or 0.0)
    return SyncMeasure(np.array(offsets), len(frames), int((ticks >= 0).sum()), latency_ms)
