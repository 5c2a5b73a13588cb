"""The one compatibility check between a checkpoint, a cache and a front end: training (its audio
config against the cache), evaluation (a checkpoint against a cache) and inference (a checkpoint
against the front end it builds) all call `check_front_end`; `check_cache` adds the crop size
and the region mask."""

from __future__ import annotations

import math

import numpy as np

from casync.contract.checkpoint import LoadedGenerator
from casync.contract.record import CheckpointError

# Settings that say nothing about the features: where a front end runs, how it is named.
_NOT_FEATURES = {"_target_", "name", "threads", "device"}


def front_end_name(description: dict) -> str:
    """'mel', 'hubert', 'whisper': a `describe()`'s name, or an audio config's class name."""
    if "name" in description:
        return str(description["name"])
    target = str(description.get("_target_", "?")).rsplit(".", 1)[-1]
    return target.lower().removesuffix("frontend")


def _differ(trained: dict, found: dict) -> list[str]:
    keys = (trained.keys() & found.keys()) - _NOT_FEATURES
    if "model_sha256" in keys:  # the weights' hash names them; their path may differ
        keys.discard("model_name_or_path")
    return sorted(k for k in keys if not _same(trained[k], found[k]))


def _same(a: object, b: object) -> bool:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    return math.isclose(a, b, abs_tol=1e-9) if numbers else a == b


def check_front_end(trained: dict, found: dict, taker: str, found_in: str, fix: str) -> None:
    """The one compatibility check of audio features: `trained` (what a network takes: a
    `LoadedGenerator.front_end` or a run's audio config) against `found` (a front end's
    `describe()`, e.g. a cache's `audio_meta`). Every setting both name must agree, the whole
    description where both are descriptions (a Whisper schedule, compute type, weights hash).
    `taker` says who takes `trained` ("checkpoint 'x' was trained on", "this run uses")."""
    differ = _differ(trained, found)
    if differ or front_end_name(trained) != front_end_name(found):
        shown = differ or sorted((trained.keys() & found.keys()) - _NOT_FEATURES)
        kind = str(trained.get("_target_", front_end_name(trained))).rsplit(".", 1)[-1]
        raise CheckpointError(
            f"{taker} {kind} audio features {_pick(trained, shown)}, but "
            f"{found_in} holds '{front_end_name(found)}' features {_pick(found, shown)}: {fix}"
        )


def _pick(description: dict, keys: list[str]) -> dict:
    return {k: description[k] for k in keys}


def check_cache(
    generator: LoadedGenerator,
    cache_meta: dict,
    cache: str,
    checkpoint: str,
    masks: dict[str, np.ndarray] | None = None,
) -> None:
    """A cache (its `meta.json`, and `masks`: each source's `mask.npy` by source id) holds what
    the checkpoint's network was trained on: the same front end (`check_front_end`), crop size
    and region mask (the network's `mask` input; the checkpoint carries the one it was fed)."""
    speaker = cache_meta.get("speaker", "<name>")
    check_front_end(
        generator.front_end,
        cache_meta["audio"],
        f"checkpoint '{checkpoint}' was trained on",
        f"the cache {cache}",
        f"preprocess the speaker with the checkpoint's front end (python -m casync.preprocess "
        f"speaker={speaker} audio=...), or use a checkpoint trained on this cache",
    )
    if int(cache_meta["crop_size"]) != generator.crop_size:
        raise CheckpointError(
            f"checkpoint '{checkpoint}' makes {generator.crop_size}px crops, the cache "
            f"{cache} holds {cache_meta['crop_size']}px crops"
        )
    for source, mask in (masks or {}).items():
        if not np.array_equal(np.asarray(mask), generator.mask):
            raise CheckpointError(
                f"the cache {cache}: source '{source}' has another region mask than checkpoint "
                f"'{checkpoint}' was trained with ({int(np.sum(mask))} vs "
                f"{int(generator.mask.sum())} pixels to regenerate): preprocess the speaker again "
                "with the code the checkpoint was trained with, or use a checkpoint trained on "
                "this cache"
            )
