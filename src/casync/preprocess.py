"""`python -m casync.preprocess speaker=<name> [audio=mel]` (or `speaker.name=bob
'speaker.videos=[a.mp4,b.mov]'`, no file): a speaker's videos -> its cache.

`main()` composes conf/preprocess.yaml; `preprocess(cfg)` does the work and is what tests call.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

import casync.run_dir  # noqa: F401  (registers the resolvers hydra.run.dir uses)
from casync.audio.frontend import AudioFrontEnd
from casync.data.cache import validate_name
from casync.data.pipeline import PipelineSettings, build_cache

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def build_front_end(audio_cfg: DictConfig) -> AudioFrontEnd:
    """`instantiate(cfg.audio)`, checking that the front end yields `audio.feature_dim` features.

    `feature_dim` is passed only to front ends that take it (the mel front end derives it from
    n_mels); either way it must match what the front end produces."""
    target = get_class(audio_cfg._target_)
    excluded = [] if "feature_dim" in inspect.signature(target).parameters else ["feature_dim"]
    kwargs = {k: v for k, v in audio_cfg.items() if k not in ("_target_", *excluded)}
    front_end = target(**OmegaConf.to_container(OmegaConf.create(kwargs), resolve=True))
    if "feature_dim" in audio_cfg and int(audio_cfg.feature_dim) != front_end.feature_dim:
        raise ValueError(
            f"audio.feature_dim={audio_cfg.feature_dim} but {audio_cfg._target_} produces "
            f"{front_end.feature_dim}-d features: fix the audio config"
        )
    return front_end


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
    front_end = build_front_end(cfg.audio)
    config = OmegaConf.to_container(cfg, resolve=False)
    summary = build_cache(cfg.paths.cache_dir, speaker, videos, front_end, settings, config)
    print(f"cache ready: {Path(summary['root'])} ({summary['sources']})")
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="preprocess")
def main(cfg: DictConfig) -> None:
    from casync.cli import exit_on_bad_input

    with exit_on_bad_input():
        preprocess(cfg)


if __name__ == "__main__":
    main()
