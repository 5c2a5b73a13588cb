"""The audio front end inference builds from a checkpoint's own audio config: data, never code
(`casync.audio.build` allows only CASync's front ends with plain settings)."""

from __future__ import annotations

from pathlib import Path

from casync.audio.build import build_front_end as build_from_config
from casync.contract import CheckpointError, LoadedGenerator, check_front_end
from casync.plain_settings import SettingsError


def build_front_end(generator: LoadedGenerator, path: str | Path | None = None):
    """The checkpoint's own audio front end, checked against what the network was trained on
    (its cache's front-end description, e.g. the Whisper weights' hash, and its own input size)."""
    config = dict(generator.audio_config)
    path = path or generator.path or "checkpoint"
    try:
        front_end = build_from_config(config, f"checkpoint '{path}'")
    except SettingsError as error:
        raise CheckpointError(str(error)) from None
    check_front_end(
        generator.front_end,
        front_end.describe(),
        f"checkpoint '{path}' was trained on",
        f"the front end its audio config builds here ({config['_target_']})",
        "the network, the checkpoint's audio config and the front end (its weights too) must "
        "agree: infer with the front end the checkpoint was trained with",
    )
    return front_end
