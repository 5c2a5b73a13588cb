"""Shared fixtures.

- `sample_dir`: the read-only sample media (../shared/data, or $CASYNC_SAMPLE_DIR).
- `aoc_cache`: (cache root, speaker name) of a real cache made once per test session from a copy
  of aoc_8s.mp4 with `audio=mel` (200 frames: with the default split, frames 0-139 train and
  150-199 validation). Read it, never modify it: copy it if a test must.
- `preprocess_config(...)`: the real `conf/preprocess.yaml`, composed with overrides.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download weights

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")
SAMPLE_DIR = Path(
    os.environ.get(
        "CASYNC_SAMPLE_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
).resolve()


def preprocess_config(overrides: list[str]) -> DictConfig:
    """Compose conf/preprocess.yaml (no Hydra run dir is created)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("preprocess", overrides=overrides)


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not (SAMPLE_DIR / "video" / "aoc_8s.mp4").is_file():
        pytest.fail(f"sample media not found at {SAMPLE_DIR}: set CASYNC_SAMPLE_DIR")
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def aoc_cache(sample_dir, tmp_path_factory) -> tuple[Path, str]:
    from casync.preprocess import preprocess

    work = tmp_path_factory.mktemp("aoc_cache")
    video = shutil.copy(sample_dir / "video" / "aoc_8s.mp4", work / "aoc_8s.mp4")
    cfg = preprocess_config(
        [
            "speaker=aoc",
            "audio=mel",
            f"paths.cache_dir={work / 'cache'}",
            f"speaker.videos=[{video}]",
        ]
    )
    preprocess(cfg)
    return work / "cache", "aoc"
