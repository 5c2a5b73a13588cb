"""Checkpoints on disk: read safely (`weights_only=True`), checked against the network they
describe, and written atomically.

A CASync checkpoint is a Lightning `.ckpt` whose `hyper_parameters` hold the network config
(`model`) and the audio front-end config (`audio`), and whose `casync` entry holds the
`GeneratorContract` (`contract/record.py`: fps, crop size, sample rate, smoothing, region mask,
references, front end). `load_generator` reads all three into a `LoadedGenerator`. EMA weights
(`ema_net.*`) win over raw weights (`net.*`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from casync.atomic import atomic_path
from casync.audio.frontend import SAMPLE_RATE
from casync.contract.record import (
    FORMAT_1_SMOOTHING,
    CheckpointError,
    GeneratorContract,
    SourceReference,
    default_contract,
)
from casync.model import CASyncNet
from casync.plain_settings import SettingsError, plain_settings

log = logging.getLogger(__name__)


@dataclass
class LoadedGenerator:
    net: CASyncNet
    model_config: dict
    audio_config: dict
    reference: np.ndarray | None  # (S, S, 3) uint8: the first source's reference, or None
    fps: float
    crop_size: int
    sample_rate: int = SAMPLE_RATE
    smoothing: float = FORMAT_1_SMOOTHING
    references: list[SourceReference] = field(default_factory=list)
    front_end_description: dict | None = None  # the training cache's front end (format 3)
    mask: np.ndarray = field(kw_only=True)  # (S, S) uint8, 1 = regenerate: the network's input
    path: str | None = field(default=None, kw_only=True)  # the file it was read from, for messages

    @property
    def front_end(self) -> dict:
        """What the network takes: the `describe()` of the front end its training cache was
        made with (older checkpoints: its audio config), with the network's own feature_dim
        and window."""
        described = self.front_end_description or self.audio_config
        net = self.net
        return {**described, "feature_dim": net.audio_feature_dim, "window": net.audio_window}

    def reference_for(self, sha256: str) -> SourceReference | None:
        """The reference of the training source with this content hash; a format-1
        checkpoint's single reference (it names no source) for any video; else None."""
        for reference in self.references:
            if reference.sha256 is None or reference.sha256 == sha256:
                return reference
        return None


def atomic_torch_save(obj: object, path: str | Path) -> None:
    """Never a half-written checkpoint: write beside `path`, then rename."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_generator_checkpoint(
    path: str | Path,
    net: CASyncNet,
    model_config: dict,
    audio_config: dict,
    contract: GeneratorContract | None = None,
) -> None:
    """A minimal checkpoint that `load_generator` reads (tests, exports, hand-made models);
    without a contract: `default_contract` at the net's crop size."""
    checkpoint = {
        "hyper_parameters": {"model": dict(model_config), "audio": dict(audio_config)},
        "state_dict": {f"net.{k}": v.detach().cpu() for k, v in net.state_dict().items()},
        "casync": (contract or default_contract(net.image_size)).to_extras(),
    }
    atomic_torch_save(checkpoint, path)


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint '{path}' does not exist: pass checkpoint=PATH to a .ckpt written by "
            "`python -m casync.train` (see the run folder's checkpoints/)"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle, zip and unsafe-global errors all land here
        raise CheckpointError(
            f"checkpoint '{path}' could not be read safely ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). Is it a complete CASync "
            ".ckpt? Only weights_only-loadable checkpoints are accepted."
        ) from error


def _model_config(checkpoint: dict, path: str | Path) -> dict:
    hparams = checkpoint.get("hyper_parameters", {})
    if "model" not in hparams or "audio" not in hparams:
        raise CheckpointError(
            f"checkpoint '{path}' has no CASync model/audio config in its hyper_parameters: "
            "it was not written by casync.train"
        )
    return {k: v for k, v in hparams["model"].items() if k != "_target_"}


def check_resumable(
    path: str | Path, model_config: dict, source_hashes: set[str] | None = None
) -> None:
    """`ckpt_path=` must be a readable checkpoint of this run's network: one line naming the
    file and the model settings that differ (not one line per mismatched tensor). A checkpoint
    trained on none of `source_hashes` (this run's videos) is another speaker's run: warned."""
    checkpoint = read_checkpoint(path)
    trained_on = {r.get("sha256") for r in checkpoint.get("casync", {}).get("references", [])}
    if source_hashes and trained_on - {None} and not trained_on & source_hashes:
        log.warning(
            "ckpt_path=%s was trained on none of this run's videos (another speaker's run?): "
            "resuming continues that run on these. To fine-tune from it, use init_from=... instead",
            path,
        )
    trained = _model_config(checkpoint, path)
    wanted = {k: v for k, v in model_config.items() if k != "_target_"}
    differ = {k: (trained.get(k), wanted.get(k)) for k in trained.keys() | wanted.keys()}
    differ = {k: pair for k, pair in differ.items() if pair[0] != pair[1]}
    if differ:
        pairs = ", ".join(f"{k}={a!r} (this run: {b!r})" for k, (a, b) in sorted(differ.items()))
        raise CheckpointError(
            f"checkpoint '{path}' was trained with model {pairs}: resume with the model=... "
            "option it was trained with, or start a new run from it with init_from=..."
        )


def load_generator(path: str | Path, map_location: str = "cpu") -> LoadedGenerator:
    checkpoint = read_checkpoint(path, map_location)
    model_config = _model_config(checkpoint, path)
    try:
        net = CASyncNet(**plain_settings(CASyncNet, model_config, f"checkpoint '{path}'", "model."))
    except (TypeError, SettingsError) as error:
        raise CheckpointError(
            f"checkpoint '{path}' describes a network this CASync cannot build: {error}"
        ) from error
    state = checkpoint["state_dict"]
    prefix = "ema_net." if any(k.startswith("ema_net.") for k in state) else "net."
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    own = net.state_dict()
    wrong = [k for k, v in weights.items() if k in own and own[k].shape != v.shape]
    missing, unexpected = sorted(own.keys() - weights.keys()), sorted(weights.keys() - own.keys())
    if wrong or missing or unexpected:
        first = f"{wrong[0]}: {tuple(weights[wrong[0]].shape)}, " if wrong else ""
        raise CheckpointError(
            f"checkpoint '{path}': its weights do not fit the architecture its own config "
            f"describes (model {model_config}): {len(wrong)} tensors of another shape "
            f"({first}missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    net.load_state_dict(weights)
    contract = GeneratorContract.from_extras(checkpoint.get("casync", {}), net.image_size)
    if contract.sample_rate != SAMPLE_RATE:
        raise CheckpointError(
            f"checkpoint '{path}' was trained on {contract.sample_rate} Hz audio; this CASync's "
            f"front ends take {SAMPLE_RATE} Hz"
        )
    references = contract.references
    return LoadedGenerator(
        net=net.eval(),
        model_config=model_config,
        audio_config=dict(checkpoint["hyper_parameters"]["audio"]),
        reference=references[0].crop if references else None,
        fps=contract.fps,
        crop_size=contract.crop_size,
        sample_rate=contract.sample_rate,
        smoothing=contract.smoothing,
        references=references,
        front_end_description=contract.front_end,
        mask=contract.mask,
        path=str(path),
    )
