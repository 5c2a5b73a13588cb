"""Make the test clip `grid_s1_8s.mp4` from the GRID corpus files (talker 1) and copy the other
test media unchanged. Run it once, from the repository root, with the project's sample-data folder
(the one holding `video/grid_s1/`, `audio/`, `image/`; see README.md here):

    python tests/media/make_media.py SAMPLE_DATA_DIR

grid_s1_8s.mp4: 4 sentences of talker 1 (`SENTENCES`), each cut to the 50 frames (2 s) centred
on its speech (word timings from `video/grid_s1_align/`), concatenated: 200 frames at 25 fps,
cropped to the 256x256 square around the face (native pixels, no scaling), MPEG-4 Part 2 video
and AAC 16 kHz stereo sound (the formats the tests' 8 s clip has always had). Each sentence's
sound is cut with its own frames, so lips and sound stay in sync.
"""

from __future__ import annotations

import argparse
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soxr

from casync.media.video import iter_frames

HERE = Path(__file__).resolve().parent
FPS = 25
SAMPLE_RATE = 16_000
SENTENCES = ["pbac3a", "pbav2n", "pbbj1a", "pbib6n"]  # session 1, none in assets/ (the demo's)
FRAMES_PER_SENTENCE = 50
CROP = (slice(32, 288), slice(27, 283))  # rows, columns of the 360x288 frame: face ~105 px wide
ALIGN_UNITS_PER_S = 25_000  # .align times
COPIED = {  # file here: path in the sample-data folder (unchanged copies)
    "grid_s_pwij3p.mpg": "video/grid_s_pwij3p.mpg",
    "jfk_11s.flac": "audio/jfk_11s.flac",
    "librispeech_5703-47212-0000.ogg": "audio/librispeech_5703-47212-0000.ogg",
    "librispeech_5703-47212-0000.txt": "audio/librispeech_5703-47212-0000.txt",
    "obama.jpg": "image/obama.jpg",
    "licenses/LipNet_LICENSE": "licenses/LipNet_LICENSE",  # the source repositories' licences
    "licenses/whisper_LICENSE": "licenses/whisper_LICENSE",
    "licenses/face_recognition_LICENSE": "licenses/face_recognition_LICENSE",
}


def speech_span(align: Path) -> tuple[float, float]:
    """(first word's start, last word's end) in seconds."""
    words = [line.split() for line in align.read_text().splitlines() if line.strip()]
    spoken = [(int(a), int(b)) for a, b, word in words if word not in ("sil", "sp")]
    return spoken[0][0] / ALIGN_UNITS_PER_S, spoken[-1][1] / ALIGN_UNITS_PER_S


def stereo_audio(path: Path) -> np.ndarray:
    """(N, 2) float32 at SAMPLE_RATE, sample 0 at the first video frame."""
    with av.open(str(path)) as container:
        stream, video = container.streams.audio[0], container.streams.video[0]
        assert stream.start_time == video.start_time == 0, path  # GRID: both start at 0
        planar = av.AudioResampler(format="fltp", layout="stereo", rate=stream.rate)
        chunks = [
            converted.to_ndarray()
            for frame in container.decode(stream)
            for converted in planar.resample(frame)
        ]
        source_rate = stream.rate
    return soxr.resample(np.concatenate(chunks, axis=1).T, source_rate, SAMPLE_RATE)


def sentence(data: Path, name: str) -> tuple[list[np.ndarray], np.ndarray]:
    """The sentence's FRAMES_PER_SENTENCE frames centred on its speech, and their sound."""
    video = data / "video" / "grid_s1" / f"{name}.mpg"
    frames = list(iter_frames(video, FPS))
    start_s, end_s = speech_span(data / "video" / "grid_s1_align" / f"{name}.align")
    first = round((start_s + end_s) / 2 * FPS - FRAMES_PER_SENTENCE / 2)
    first = min(max(first, 0), len(frames) - FRAMES_PER_SENTENCE)
    audio = stereo_audio(video)
    per_frame = SAMPLE_RATE // FPS
    sound = audio[first * per_frame : (first + FRAMES_PER_SENTENCE) * per_frame]
    assert len(sound) == FRAMES_PER_SENTENCE * per_frame, name
    return [f[CROP] for f in frames[first : first + FRAMES_PER_SENTENCE]], sound


def write_mp4(path: Path, frames: list[np.ndarray], audio: np.ndarray) -> None:
    """MPEG-4 Part 2 (Simple Profile) + AAC-LC stereo in MP4."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=FPS)
        video.time_base = Fraction(1, FPS)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        video.bit_rate = 300_000
        sound = container.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "stereo"
        sound.bit_rate = 48_000
        for k, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            picture.pts = k
            container.mux(video.encode(picture))
        container.mux(video.encode())
        pcm = np.ascontiguousarray((np.clip(audio, -1, 1) * 32767).astype(np.int16))
        for start in range(0, len(pcm), 1024):
            interleaved = pcm[start : start + 1024].reshape(1, -1)  # (1, 2n): L R L R ...
            chunk = av.AudioFrame.from_ndarray(interleaved, "s16", "stereo")
            chunk.sample_rate, chunk.pts = SAMPLE_RATE, start
            container.mux(sound.encode(chunk))
        container.mux(sound.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the sample-data folder (holds video/grid_s1/)")
    args = parser.parse_args()
    frames, sound = [], []
    for name in SENTENCES:
        f, s = sentence(args.data, name)
        frames += f
        sound.append(s)
    write_mp4(HERE / "grid_s1_8s.mp4", frames, np.concatenate(sound))
    (HERE / "licenses").mkdir(exist_ok=True)
    for name, source in COPIED.items():
        shutil.copyfile(args.data / source, HERE / name)
    for path in sorted(HERE.rglob("*")):
        if path.is_file():
            print(f"{path.relative_to(HERE)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
