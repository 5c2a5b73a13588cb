"""`python -m casync.demo` (`make demo`): the whole product on one clip of a speaker.

preprocess the clip -> fine-tune `experiment=demo_cpu` on its first 75 % -> evaluate on the held-out
last 25 % -> lip-sync the clip to other speech -> a side-by-side video (source | generated). Each
step is the real entry point's typed function on its own composed config; everything lands in
`output_dir`. The demo ends by saying plainly whether the model beat the still-mouth baseline on
LMD and whether its audio-shift margin is positive (`casync.demo_report`).
"""

from __future__ import annotations

import os

# As in casync.infer: idle OpenMP workers must not spin on a small, busy CPU. Before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging
import shutil
import sys
import time
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import casync.run_dir  # noqa: F401  (registers the resolvers hydra.run.dir uses)
from casync.cli import command
from casync.media import MediaError, MediaFileNotFoundError
from casync.media.side_by_side import side_by_side, trim_audio, trim_video

log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """Compose conf/<name>.yaml as its own command would (no Hydra run dir)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(name, overrides=overrides)


def quoted(path: Path) -> str:
    """A path as a Hydra override value (quotes keep commas, spaces and '=' literal)."""
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


def require_file(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise MediaFileNotFoundError(
            path,
            f"no such {what} file",
            "Set VIDEO=/AUDIO= (or video=/driving_audio=) to files that exist",
        )
    return path.resolve()


# -- the pipeline --------------------------------------------------------------------------------
class Steps:
    """Runs named steps, timing each and printing a banner (the demo's progress)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.seconds = total, 0, {}

    def __call__(self, name: str, function, *args, **kwargs):
        self.done += 1
        print(f"\n==> [{self.done}/{self.total}] {name}", flush=True)
        started = time.perf_counter()
        result = function(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - started, 1)
        print(f"    {name}: {self.seconds[name]:.1f} s", flush=True)
        return result


def demo(cfg: DictConfig) -> dict:
    """Run the demo; returns {"files", "verdict", "metrics", "seconds", "quick"} (also written to
    `output_dir`/demo_summary.json). Raises MediaError for missing or unreadable inputs."""
    from casync.demo_report import summarize, write_summary
    from casync.evaluate import evaluate
    from casync.infer import infer
    from casync.preprocess import preprocess
    from casync.train import train

    options = cfg.demo
    out = Path(cfg.output_dir).expanduser().resolve()
    video, audio = (
        require_file(cfg.video, "video"),
        require_file(cfg.driving_audio, "driving audio"),
    )
    out.mkdir(parents=True, exist_ok=True)
    steps = Steps(total=6 if options.quick else 5)
    if options.quick:
        video, audio = steps(
            "trim the inputs (quick mode)", trim_inputs, options, video, audio, out / "input"
        )

    cache, run = out / "cache", out / "train"
    speaker = speaker_overrides(options.speaker, video, cache, out / "logs")
    front_end = f"audio={options.front_end}"
    steps("preprocess", preprocess, compose_config("preprocess", [*speaker, front_end]))
    steps("fine-tune", train, train_config(options, speaker, front_end, run))
    checkpoint = trained_checkpoint(run)
    evaluate_cfg = evaluate_config(options, speaker, checkpoint, out)
    results = steps("evaluate on the held-out range", evaluate, evaluate_cfg)

    lipsync = out / "lipsync.mp4"
    infer_cfg = infer_config(options, checkpoint, video, audio, lipsync, cache)
    synthesis = steps(f"lip-sync {video.name} to {audio.name}", infer, infer_cfg)
    frames, fps = int(synthesis["frames"]), float(synthesis["fps"])
    side = (video, lipsync, audio, out / "side_by_side.mp4", frames, fps)
    comparison = steps("side-by-side video", side_by_side, *side)

    videos = (lipsync, comparison)
    summary = summarize(options.quick, (video, audio), checkpoint, videos, results, steps.seconds)
    write_summary(summary, out / "demo_summary.json")
    return summary


# -- the steps' inputs ---------------------------------------------------------------------------
def trim_inputs(options: DictConfig, video: Path, audio: Path, inputs: Path) -> tuple[Path, Path]:
    """Quick mode: the first `quick_video_s` of the video and `quick_audio_s` of the audio."""
    inputs.mkdir(exist_ok=True)
    preprocessing = compose_config("preprocess", [f"speaker.name={options.speaker}"])
    fps = preprocessing.preprocess.fps  # trimmed at the rate preprocessing decodes at
    return (
        trim_video(video, inputs / f"{video.stem}_trimmed.mp4", options.quick_video_s, fps),
        trim_audio(audio, inputs / f"{audio.stem}_trimmed.wav", options.quick_audio_s),
    )


def speaker_overrides(name: str, video: Path, cache: Path, log_dir: Path) -> list[str]:
    """The demo speaker (one video, the demo's cache and logs), as preprocess/train/evaluate
    take it."""
    return [
        f"speaker.name={name}",
        f"speaker.videos=[{quoted(video)}]",
        f"paths.cache_dir={quoted(cache)}",
        f"paths.log_dir={quoted(log_dir)}",
    ]


def train_config(options: DictConfig, speaker: list[str], front_end: str, run: Path) -> DictConfig:
    """The fine-tune's config, writing to `run` (emptied first)."""
    shutil.rmtree(run, ignore_errors=True)  # a previous demo's checkpoints must not be picked up
    overrides = [*options.train, front_end, *(options.quick_train if options.quick else [])]
    return compose_config("train", [*speaker, f"paths.output_dir={quoted(run)}", *overrides])


def trained_checkpoint(run: Path) -> Path:
    checkpoint = run / "checkpoints" / "last.ckpt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"training wrote no {checkpoint}: see {run}")
    return checkpoint


def evaluate_config(
    options: DictConfig, speaker: list[str], checkpoint: Path, out: Path
) -> DictConfig:
    overrides = [f"checkpoint={quoted(checkpoint)}", f"paths.output_dir={quoted(out)}"]
    return compose_config("evaluate", [*speaker, *overrides, *options.evaluate])


def infer_config(
    options: DictConfig, checkpoint: Path, video: Path, audio: Path, output: Path, cache: Path
) -> DictConfig:
    return compose_config(
        "infer",
        [
            f"checkpoint={quoted(checkpoint)}",
            f"video={quoted(video)}",
            f"driving_audio={quoted(audio)}",
            f"output={quoted(output)}",
            f"paths.cache_dir={quoted(cache)}",
            *options.infer,
        ],
    )


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="demo")
def hydra_main(cfg: DictConfig) -> None:
    from casync.contract import CheckpointError
    from casync.data.cache import CacheError
    from casync.demo_report import verdict_lines

    try:
        summary = demo(cfg)
    except (MediaError, CacheError, CheckpointError, FileNotFoundError) as error:
        log.error("%s", error)
        sys.exit(1)
    print("\n==> CASync demo: done")
    for name, path in summary["files"].items():
        print(f"    {name:<20} {path}")
    print(f"    step times (s): {summary['seconds']}")
    print()
    for line in verdict_lines(summary):
        print(line)


main = command(hydra_main)


if __name__ == "__main__":
    main()
