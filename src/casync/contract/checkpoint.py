"""Checkpoints: the generator contract, what inference needs to reproduce training, loaded safely
(`weights_only=True`).

A CASync checkpoint is a Lightning `.ckpt` whose `hyper_parameters` hold the network config
(`model`) and the audio front-end config (`audio`), and whose `casync` entry holds the
`GeneratorContract`: the cache's frame rate, crop size, sample rate and crop-box smoothing, and
every training source's reference crop with that source's id and content hash, and the
`describe()` of the front end its cache's audio windows were made with. It is written
here (`GeneratorContract.to_extras`, from the training data by `generator_contract`) and read
here (`load_generator`); nothing else derives these settings. EMA weights (`ema_net.*`) win over
raw weights (`net.*`).

Format 1 (older checkpoints) shipped one reference and the frame rate: it still loads, its
reference naming no source and its smoothing the preprocessing default of its time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from casync.atomic import atomic_path
from casync.audio.frontend import SAMPLE_RATE
from casync.model import CASyncNet

FORMAT_VERSION = 3  # 2: sample rate, smoothing, one reference per source; 3: front-end describe()
FORMAT_1_SMOOTHING = 1.5  # what format-1 checkpoints were preprocessed with (not stored then)


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or incompatible with this CASync."""


@dataclass(frozen=True)
class SourceReference:
    """A training source's reference crop (its closed-mouth training frame)."""

    source_id: str | None  # None: a format-1 checkpoint's single reference (names no source)
    sha256: str | None  # the source file's content hash (the cache's `sources[].sha256`)
    crop: np.ndarray  # (S, S, 3) uint8


@dataclass
class GeneratorContract:
    """Everything inference needs to feed the network what training fed it."""

    fps: float
    crop_size: int
    sample_rate: int = SAMPLE_RATE
    smoothing: float = FORMAT_1_SMOOTHING
    references: list[SourceReference] = field(default_factory=list)
    front_end: dict | None = None  # the cache's front-end `describe()` (None before format 3)

    def to_extras(self) -> dict:
        """The checkpoint's `casync` entry (plain tensors, strings and numbers: weights_only)."""
        references = [
            {"source_id": r.source_id, "sha256": r.sha256, "crop": _tensor(r.crop)}
            for r in self.references
        ]
        return {
            "format": FORMAT_VERSION,
            "fps": float(self.fps),
            "crop_size": int(self.crop_size),
            "sample_rate": int(self.sample_rate),
            "smoothing": float(self.smoothing),
            "references": references,
            "reference": references[0]["crop"] if references else None,  # format-1 readers
            "front_end": None if self.front_end is None else dict(self.front_end),
        }

    @classmethod
    def from_extras(cls, extras: dict, crop_size: int) -> GeneratorContract:
        if extras.get("format", 1) < 2:  # one reference, no smoothing, 16 kHz
            ref = extras.get("reference")
            refs = [] if ref is None else [SourceReference(None, None, _crop(ref))]
            fps = float(extras.get("fps", 25.0))  # format 1 always wrote it; 25 before that
            return cls(fps, int(extras.get("crop_size", crop_size)), references=refs)
        references = [
            SourceReference(r["source_id"], r["sha256"], _crop(r["crop"]))
            for r in extras["references"]
        ]
        return cls(
            float(extras["fps"]),
            int(extras["crop_size"]),
            int(extras["sample_rate"]),
            float(extras["smoothing"]),
            references,
            extras.get("front_end"),  # format 3
        )


def _tensor(crop: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(crop, dtype=np.uint8))


def _crop(tensor: torch.Tensor) -> np.ndarray:
    crop = tensor.numpy()
    if crop.shape[0] == 3 and crop.shape[-1] != 3:
        crop = crop.transpose(1, 2, 0)  # (3, S, S) -> (S, S, 3)
    return np.ascontiguousarray(crop)


def generator_contract(data) -> GeneratorContract:
    """The contract of a run trained on `data` (a `CASyncDataModule`): its caches' settings and
    each source's closed-mouth training frame, the reference `data.reference=closed_mouth`
    trains with."""
    keys = ("fps", "crop_size", "sample_rate", "smoothing")
    settings = {c.speaker: {k: c.meta["settings"][k] for k in keys} for c in data.caches}
    first = next(iter(settings.values()))
    if any(s != first for s in settings.values()):
        raise ValueError(
            f"the speakers' caches were preprocessed with different settings {settings}: "
            "preprocess them all with the same preprocess.fps/crop_size/sample_rate/smoothing"
        )
    frames = data.closed_mouth_frames()
    references = [
        SourceReference(source.id, source.info["sha256"], np.array(source.crops[frame]))
        for source, frame in zip(data.sources, frames, strict=True)
    ]
    return GeneratorContract(
        float(first["fps"]), int(first["crop_size"]), int(first["sample_rate"]),
        float(first["smoothing"]), references, dict(data.audio_meta),
    )  # fmt: skip


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
    without a contract: 25 fps, the net's crop size, no reference."""
    checkpoint = {
        "hyper_parameters": {"model": dict(model_config), "audio": dict(audio_config)},
        "state_dict": {f"net.{k}": v.detach().cpu() for k, v in net.state_dict().items()},
        "casync": (contract or GeneratorContract(25.0, net.image_size)).to_extras(),
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


def check_resumable(path: str | Path, model_config: dict) -> None:
    """`ckpt_path=` must be a readable checkpoint of this run's network: one line naming the
    file and the model settings that differ (not one line per mismatched tensor)."""
    trained = _model_config(read_checkpoint(path), path)
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
        net = CASyncNet(**model_config)
    except TypeError as error:
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
    )
