"""`Synthesizer`: a trained CASync checkpoint + a source video of the speaker + any driving audio
-> lip-synced frames, written as an MP4 (`synthesize`: `casync.inference.batch`) or yielded as
audio arrives (`stream`).

Per output frame j: the source frame `ping_pong(j)` is cropped with the preprocessing geometry,
its mouth region masked; the network fills it from the audio window; the crop is colour-matched
and feathered back into the frame. Batch and streaming share one loop (`render`) and group frames
identically ([0, B), [B, 2B), ...), so streamed frames equal the batch result bit for bit.

Silence: frames whose +-window/2 audio span is below `silence_dbfs` dBFS are generated once per
silent run (from the run's first frame) and that crop is held, so the mouth stays still.
Frames of the source without a face pass through unchanged. The reference, crop smoothing, frame
rate and region mask are the checkpoint's (see `casync.inference.source.choose_reference`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from casync.audio.frontend import SAMPLE_RATE
from casync.audio.pcm import check_rate
from casync.avatar import Avatar
from casync.contract import (
    CheckpointError,
    CropGenerator,
    LoadedGenerator,
    load_generator,
)
from casync.face import cut_crop
from casync.inference.batch import synthesize_mp4
from casync.inference.blend import Blender
from casync.inference.face_cache import FaceFeatureCache, source_key
from casync.inference.features import FrameFeatures
from casync.inference.front_end import build_front_end
from casync.inference.precision import build_generator
from casync.inference.schedule import ping_pong
from casync.inference.silence import NO_FACE, SilenceHold
from casync.inference.source import SourceVideo, choose_reference, prepare_source
from casync.media.audio import SILENCE_DBFS
from casync.media.writer import X264_PRESETS


@dataclass
class RenderedFrame:
    index: int  # output frame
    source_index: int  # source video frame shown
    frame: np.ndarray  # (H, W, 3) uint8 output frame
    generated: np.ndarray  # (S, S, 3) uint8 network crop before blending
    silent: bool
    face_found: bool = True  # False: no face in the source frame, shown unchanged


class Synthesizer:
    def __init__(
        self,
        generator: LoadedGenerator,
        front_end=None,
        device: str = "cpu",
        batch_size: int = 16,
        silence_dbfs: float | None = SILENCE_DBFS,
        feather: float = 5.0,
        color_match: bool = True,
        track_cache_dir: str | Path | None = None,
        crf: int = 18,
        preset: str = "veryfast",
        progress: bool = True,
        precision: str = "fp32",
        face_cache_mb: float = 1024,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: frames per generator call, must be >= 1")
        if preset not in X264_PRESETS:
            raise ValueError(
                f"encoder.preset={preset!r} is not an x264 preset: one of {', '.join(X264_PRESETS)}"
            )
        self.generator = generator
        self.front_end = front_end if front_end is not None else build_front_end(generator)
        self.device = torch.device(device)
        # fp32 | bf16 | int8, resolved against the hardware (precision.py; fp32 where it lacks
        # the instructions); int8 keeps its quantized graph beside the face tracks.
        self.net = build_generator(generator.net, precision, self.device, track_cache_dir)
        self.fps = generator.fps
        self.size = generator.crop_size
        self.batch_size = batch_size
        self.silence_dbfs = silence_dbfs
        self.blender = Blender(generator.mask, feather, color_match)
        self.track_cache_dir = track_cache_dir
        self.crf, self.preset, self.progress = crf, preset, progress
        self._generate = CropGenerator(self.net, self.device)
        # A looping source's face features, reused on every pass after the first (0: off).
        self.face_cache = FaceFeatureCache(face_cache_mb)
        self._mask = generator.mask  # (S, S) uint8: the region training masked (checkpoint)
        self.source: SourceVideo | None = None
        self.reference_used: str | None = None  # what the last render took as its reference

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", **options) -> Synthesizer:
        try:
            generator = load_generator(path, map_location="cpu")
        except RuntimeError as error:  # load_state_dict: shape mismatches
            problem = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
            raise CheckpointError(
                f"checkpoint '{path}': its weights do not fit the architecture its own config "
                f"describes ({problem})"
            ) from error
        return cls(generator, build_front_end(generator, path), device=device, **options)

    # -- sources ---------------------------------------------------------------------------------
    def prepare(self, video: str | Path, keep_frames: int | None = None) -> SourceVideo:
        """Track `video` and keep it as the source for `stream` (all frames kept for random
        access unless `keep_frames` caps them)."""
        if self.source is not None:
            self.source.close()
        self.source = prepare_source(
            video,
            self.fps,
            self.size,
            self.generator.smoothing,
            keep_frames=keep_frames,
            track_cache_dir=self.track_cache_dir,
        )
        return self.source

    def _reference(self, source: SourceVideo) -> np.ndarray:
        """(1, S, S, 3) uint8 reference for `source` (see `choose_reference`)."""
        reference, self.reference_used = choose_reference(self.generator, source)
        return np.asarray(reference)[None]

    # -- the loop shared by batch and streaming -------------------------------------------------
    def render(
        self,
        audio_chunks: Iterable[np.ndarray],
        source: SourceVideo | None = None,
        frame_at: Callable[[int], np.ndarray] | None = None,
        loops: bool = True,
    ) -> Iterator[RenderedFrame]:
        """16 kHz mono float32 chunks in, `RenderedFrame`s out, each as soon as the audio it
        depends on (~115 ms past its centre with the mel front end) and its group of
        `batch_size` frames are complete. The last group is emitted when the chunks end.
        `loops=False`: the output never comes back to a source frame (it is no longer than the
        source), so no face features are kept for later passes."""
        source = source or self.source
        if source is None:
            raise ValueError("no source video: call prepare(video) first or pass source=")
        if frame_at is None:
            if source.frames is None:
                raise ValueError("streaming needs the source frames: prepare(video) keeps them")
            frame_at = source.frames.__getitem__  # a FrameStore, or an avatar's FrameReader
        features = FrameFeatures(self.front_end, self.fps, self.silence_dbfs)
        hold, done, step = SilenceHold(), 0, self.batch_size
        reference = self._reference(source)
        self.face_cache.bind(source_key(source.sha256, source.transforms, reference[0]), loops)
        for chunk in audio_chunks:
            features.push(chunk)
            ready = features.n_ready()
            while ready - done >= step:
                yield from self._group(
                    done, done + step, features, source, frame_at, hold, reference
                )
                done += step
        features.finish()
        total = features.total_frames()
        while done < total:
            end = min(done + step, total)
            yield from self._group(done, end, features, source, frame_at, hold, reference)
            done = end

    def _group(self, j0, j1, features, source, frame_at, hold, reference):
        windows, silent = features.take(j0, j1)
        features.release(j1)
        indices = ping_pong(j1, source.n_frames)[j0:j1]
        frames = [frame_at(int(s)) for s in indices]
        if isinstance(source, Avatar):  # its crops are stored losslessly: the raw video's
            crops = [source.crop(int(s)) for s in indices]  # copies of the memory map
        else:
            crops = [
                cut_crop(f, source.transforms[s], self.size)
                for f, s in zip(frames, indices, strict=True)
            ]
        owner, todo = hold.plan(silent, source.face_found[indices])
        todo_crops = [crops[i] for i in todo]
        generated = self._generate_cached(todo_crops, indices[todo], windows[todo], reference)
        for i, s in enumerate(indices):
            if owner[i] == NO_FACE:
                yield RenderedFrame(j0 + i, int(s), frames[i], crops[i], bool(silent[i]), False)
                continue
            crop = hold.shown(owner[i], generated)
            frame = self.blender(frames[i], crop, crops[i], source.transforms[s])
            yield RenderedFrame(j0 + i, int(s), frame, crop, bool(silent[i]))
        hold.finish(generated)

    def _generate_cached(self, crops, frames, windows, reference) -> np.ndarray:
        """Generated crops of source `frames`: face features from the cache where kept, the
        rest encoded in one batch; then all decoded with their audio `windows`."""
        if not crops:
            return np.zeros((0, self.size, self.size, 3), np.uint8)

        def encode(missing: list[int]) -> list[torch.Tensor]:
            batch = np.stack([crops[i] for i in missing])
            return self._generate.encode(batch, self._mask, reference)

        return self._generate.decode(self.face_cache.features(frames, encode), windows)

    # -- public entry points ---------------------------------------------------------------------
    def stream(
        self,
        audio_chunks: Iterable[np.ndarray],
        video: str | Path | None = None,
        sample_rate: int = SAMPLE_RATE,
    ) -> Iterator[np.ndarray]:
        """Yield output frames (H, W, 3) uint8 as 16 kHz mono chunks arrive. Latency: a frame
        leaves once the audio reaches ~115 ms past its centre (mel) and its group of
        `batch_size` frames is complete, plus compute; use batch_size=1 for the lowest.

        Chunks (`casync.audio.pcm`): 1-D mono at 16 kHz (`sample_rate` declares it), int16 or
        float32/float64 in [-1, 1], finite; anything else raises a PCMError naming the fault."""
        check_rate(sample_rate)
        if video is not None:
            self.prepare(video)
        for rendered in self.render(audio_chunks):
            yield rendered.frame

    def synthesize(
        self, video: str | Path | Avatar, audio: str | Path | np.ndarray, output: str | Path
    ) -> dict:
        """Write the lip-synced MP4 of `video` (a file, or an `Avatar` prepared for this
        checkpoint) and return a summary (frames, fps achieved, paths)."""
        return synthesize_mp4(self, video, audio, output)
