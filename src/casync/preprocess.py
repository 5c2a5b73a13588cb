"""`python -m casync.preprocess speaker=<name> [audio=mel]` (or `speaker.name=bob
'speaker.videos=[a.mp4,b.mov]'`, no file): a speaker's videos -> its cache.

`main()` composes conf/preprocess.yaml; `preprocess(cfg)` does the work and is what tests call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

import casync.run_dir  # noqa: F401  (registers the resolvers hydra.run.dir uses)
from casync.audio.build import build_front_end
from casync.cli import command
from casync.data.cache import validate_name
from casync.data.pipeline import PipelineSettings, build_cache

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def preprocess(cfg: DictConfig) -> dict[str, Any]:
    """Build or update `${paths.cache_dir}/${speaker.name}` -> summary dict
    (root, speaker, sources: {id: processed | skipped | reused})."""
    speaker = validate_name(str(cfg.speaker.name))
    videos = [str(video) for video in cfg.speaker.videos]
    if not videos:
        raise ValueError(
            f"speaker.videos is empty: list {speaker}'s videos, "
            f"speaker.name={speaker} 'speaker.videos=[a.mp4,b.mov]' (or a conf/speaker/ file)"
        )
    settings = PipelineSettings(**OmegaConf.to_container(cfg.preprocess, resolve=True))
    front_end = build_front_end(OmegaConf.to_container(cfg.audio, resolve=True), "audio config")
    config = OmegaConf.to_container(cfg, resolve=False)
    summary = build_cache(cfg.paths.cache_dir, speaker, videos, front_end, settings, config)
    print(f"cache ready: {Path(summary['root'])} ({summary['sources']})")
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="preprocess")
def hydra_main(cfg: DictConfig) -> None:
    from casync.cli import exit_on_bad_input

    with exit_on_bad_input():
        preprocess(cfg)


main = command(hydra_main)


if __name__ == "__main__":
    main()
