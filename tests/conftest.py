"""Shared fixtures.

- `media_dir`: the media the tests run on, carried by the repository (tests/media/; its README
  gives each file's source, licence and measured facts). Read them; copy one to a temporary
  folder when a step must modify it. Nothing outside the repository is read: the sample-data
  folder some configs default to (`paths.sample_dir`) points nowhere during tests.
- `s1_cache`: (cache root, speaker name) of a real cache made once per test session from a copy
  of grid_s1_8s.mp4 with `audio=mel` (200 frames: with the default split, frames 0-139 train and
  150-199 validation). Read it, never modify it: copy it if a test must.
- `compose_config(name, overrides)`: the real `conf/<name>.yaml`, composed as its command would
  (import it from conftest in module-level helpers; the `compose` fixture is the same function).
- `preprocess_settings(**changes)`: `PipelineSettings` from conf/preprocess.yaml.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download weights

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = str(REPO / "conf")
MEDIA_DIR = REPO / "tests" / "media"
CLIP = "grid_s1_8s.mp4"  # the 8 s talking-head clip most tests use
# conf/paths' sample_dir (where speaker=aoc/grid and the benchmarks find their clips) is not the
# tests' to read: a test that reaches it through a config fails here as on a fresh clone.
os.environ["CASYNC_SAMPLE_DIR"] = str(MEDIA_DIR / "no-sample-data-in-tests")


def compose_config(
    name: str, overrides: list[str] | None = None, hydra: bool = False
) -> DictConfig:
    """Compose conf/<name>.yaml with `overrides` (no run dir is created); `hydra=True` keeps the
    `hydra` node, with its interpolations (the run dir) resolvable."""
    import casync.run_dir  # noqa: F401  (the resolvers hydra.run.dir uses)

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra_compose(name, overrides=list(overrides or []), return_hydra_config=hydra)
    if hydra:
        HydraConfig.instance().set_config(cfg)
    return cfg


def network_inputs(batch: int):
    """(masked crops, mask, mel windows, reference) for a 160 px CASync with 80-d audio, seeded."""
    import torch

    torch.manual_seed(1)
    return (
        torch.rand(batch, 3, 160, 160),
        torch.ones(batch, 1, 160, 160),
        torch.randn(batch, 10, 80),
        torch.rand(batch, 3, 160, 160),
    )


def preprocess_settings(**changes):
    """`PipelineSettings` from conf/preprocess.yaml (the defaults live there), with `changes`."""
    from omegaconf import OmegaConf

    from casync.data.pipeline import PipelineSettings

    settings = OmegaConf.to_container(compose_config("preprocess").preprocess, resolve=True)
    return PipelineSettings(**(settings | changes))


@pytest.fixture
def compose():
    """`compose(name, overrides, hydra=False)`: see `compose_config`."""
    return compose_config


@pytest.fixture(scope="session")
def media_dir() -> Path:
    return MEDIA_DIR


@pytest.fixture(scope="session")
def s1_cache(media_dir, tmp_path_factory) -> tuple[Path, str]:
    from casync.preprocess import preprocess

    work = tmp_path_factory.mktemp("s1_cache")
    video = shutil.copy(media_dir / CLIP, work / CLIP)
    cfg = compose_config(
        "preprocess",
        [
            "speaker.name=s1",  # no conf/speaker file needed
            "audio=mel",
            f"paths.cache_dir={work / 'cache'}",
            f"speaker.videos=[{video}]",
        ],
    )
    preprocess(cfg)
    return work / "cache", "s1"


@pytest.fixture(autouse=True)
def root_log_handlers_restored():
    """A command run in-process (Hydra's `main`, `logging.basicConfig`) attaches handlers to the
    root logger that write to that test's captured stderr, which pytest closes after the test:
    every later log line (a server thread's, Lightning's) would print a "Logging error" trace
    there. Each test leaves the root logger's handlers and level as it found them."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)  # pytest's own capture handlers come and go by phase
    root.setLevel(level)
