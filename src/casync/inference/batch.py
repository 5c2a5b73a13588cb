"""Batch synthesis: a source video (or its `Avatar`) and a whole driving audio -> one lip-synced
MP4 and a summary of the run (`Synthesizer.synthesize`). A video is made into its avatar once
(cached under the synthesizer's cache folder) and every later run starts from it; without a
cache folder it is tracked for this run only. Frames stream in order when the output is no
longer than the video, else are revisited (ping-pong), and x264 encodes in a background thread
while the next group renders."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from casync.audio.frontend import SAMPLE_RATE
from casync.avatar import Avatar, cached_avatar
from casync.inference.frame_store import DEFAULT_RAM_BYTES
from casync.inference.mp4 import SequentialFrames, driving_audio, encode
from casync.inference.source import SourceVideo, prepare_source
from casync.media.video import probe_video
from casync.media.writer import VideoWriter, check_writable

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from casync.inference.synthesizer import Synthesizer


def synthesize_mp4(
    synth: Synthesizer,
    video: str | Path | Avatar,
    audio: str | Path | np.ndarray,
    output: str | Path,
) -> dict:
    """Write `synth`'s lip-sync of `video` (a file, or a prepared `Avatar`) to `audio` as the
    MP4 `output` -> a summary (frames, fps achieved, paths)."""
    started = time.perf_counter()
    prepared = isinstance(video, Avatar)
    output = check_writable(output, inputs=(video.path if prepared else video, audio))
    waveform, mux_audio, mux_rate = driving_audio(audio)
    n_out = int(round(len(waveform) / SAMPLE_RATE * synth.fps))
    if n_out < 1:
        raise ValueError(f"driving audio {audio}: shorter than one frame at {synth.fps:g} fps")
    source = video if prepared else _source(synth, video, n_out)
    tracked = time.perf_counter()
    try:
        silent, faceless = _write(synth, source, waveform, mux_audio, mux_rate, n_out, output)
    finally:
        if not prepared:  # an avatar passed in belongs to its caller, who may drive it again
            source.close()
    elapsed = time.perf_counter() - started
    return {
        "output": str(output),
        "frames": n_out,
        "fps": synth.fps,
        "duration_s": n_out / synth.fps,
        "audio_duration_s": len(waveform) / SAMPLE_RATE,
        "source_frames": source.n_frames,
        "silent_frames": int(silent),
        "faceless_frames": int(faceless),  # no face in the source frame: shown unchanged
        "reference": synth.reference_used,
        "seconds": elapsed,
        "fps_achieved": n_out / elapsed,
        "render_fps": n_out / max(time.perf_counter() - tracked, 1e-9),
        "track_seconds": tracked - started,
    }


def _source(synth: Synthesizer, video: str | Path, n_out: int) -> SourceVideo | Avatar:
    """With a cache folder: the video's avatar, prepared once (`<cache>/avatars/`) and loaded
    by every later run, so a second run starts at once. Without one, or when the folder cannot
    be written: the video tracked for this run only, keeping what the output needs."""
    if synth.track_cache_dir is not None:
        try:
            return cached_avatar(video, synth.generator, Path(synth.track_cache_dir) / "avatars")
        except OSError as error:  # a read-only or full cache folder costs speed, not the run
            log.warning("avatar cache %s unusable (%s): tracking for this run only",
                        synth.track_cache_dir, error)  # fmt: skip
    return prepare_source(
        video,
        synth.fps,
        synth.size,
        synth.generator.smoothing,
        keep_frames=frames_to_keep(video, n_out, synth.fps),
    )


def frames_to_keep(video: str | Path, n_out: int, fps: float) -> int:
    """How many frames tracking should keep for the writer: all `n_out` when the output may
    loop (they are revisited) or when they fit the memory budget raw; else none, and the writer
    decodes the video once more (exact, in constant memory, instead of keeping a long 4K
    stretch: 24.9 MB a frame)."""
    info = probe_video(video)
    may_loop = n_out >= int(info.duration_s * fps) - 1  # the container's estimate: be generous
    fits = n_out * info.width * info.height * 3 <= DEFAULT_RAM_BYTES
    return n_out if may_loop or fits else 0


def _write(
    synth: Synthesizer,
    source: SourceVideo | Avatar,
    waveform: np.ndarray,
    mux_audio: np.ndarray,
    mux_rate: int,
    n_out: int,
    output: Path,
) -> tuple[int, int]:
    """Render `n_out` frames driven by `waveform` into `output` -> (silent, faceless) frames."""
    needed = min(n_out, source.n_frames)
    frames = SequentialFrames(source.iter_frames(needed))
    frame_at = frames.get if n_out <= source.n_frames else source.random_access().__getitem__
    width, height = source.frame_size
    writer = VideoWriter(
        output, synth.fps, width, height, mux_audio, mux_rate, synth.crf, synth.preset,
        display_matrix=source.display_matrix,
    )  # fmt: skip
    try:  # until encode() owns the writer, a failure or SIGTERM must not leave its temp
        rendered = synth.render([waveform], source, frame_at, n_out > source.n_frames)
        silent, faceless = encode(rendered, writer, n_out, synth.progress)
    except BaseException:
        writer._abort()
        raise
    frames.close()
    return silent, faceless
