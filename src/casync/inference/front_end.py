"""The audio front end inference builds from a checkpoint's own audio config."""

from __future__ import annotations

from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from casync.contract import CheckpointError, LoadedGenerator, check_front_end


def build_front_end(generator: LoadedGenerator, path: str | Path = "checkpoint"):
    """The checkpoint's own audio front end, checked against what the network was trained on
    (its cache's front-end description, e.g. the Whisper weights' hash, and its own input size)."""
    config = dict(generator.audio_config)
    if "_target_" not in config:
        raise CheckpointError(f"checkpoint '{path}': its audio config has no _target_: {config}")
    try:
        front_end = instantiate(config, _convert_="all")
    except InstantiationException as error:  # Hydra hides the front end's own clear message
        raise (error.__cause__ or error) from None
    check_front_end(
        generator.front_end,
        front_end.describe(),
        f"checkpoint '{path}' was trained on",
        f"the front end its audio config builds here ({config['_target_']})",
        "the network, the checkpoint's audio config and the front end (its weights too) must "
        "agree: infer with the front end the checkpoint was trained with",
    )
    return front_end
