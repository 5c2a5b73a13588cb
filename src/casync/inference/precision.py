"""Inference precision: one setting (`fp32` | `bf16` | `int8`) for infer, the Synthesizer and the
stream, resolved against the hardware and turned into a generator callable.

- fp32: the network (channels-last weights, oneDNN's fast layout); on a CPU, a copy whose
  linear layers run as 1x1 convolutions (`inference.pointwise`), sharing the other weights.
- bf16: the network's weights and activations in bfloat16 (CUDA, or a CPU with AVX512-BF16 or
  AMX: without them PyTorch emulates bf16 and is slower than fp32). Output returned as float32.
- int8: the generator exported as two graphs (`onnx_export.export_halves`: the face encoder; the
  audio encoder, fusion and decoder), each statically quantized by ONNX Runtime (QDQ, per-channel
  int8 weights, uint8 activations calibrated on the first batch that half is called with), run
  by onnxruntime on the CPU with VNNI dot products. Only the dense convolutions and the matrix
  products are quantized (`QUANTIZED_OPS`; depthwise convolutions, norms and activations stay
  float32): the others are memory-bound, and the quantize/dequantize pairs around them cost
  more than int8 saves (measured: ~10 % faster and ~3 dB closer to fp32 than quantizing all).
  Quantizing takes about a minute, so the quantized graphs are kept in `cache_dir`, keyed by
  the weights' hash and the recipe (`QUANTIZATION`).

Every precision folds BatchNorm into its convolutions first (`model.fold`; `model.norm=batch`).
Every generator has the network's signature and its two halves, `encode_face` and `decode`
(`CASyncNet`'s), so a looping source's face features can be cached (`inference.face_cache`).

A precision the hardware cannot run fast falls back to fp32 with a logged reason
(`resolve_precision`); a name that is not a precision is an error.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from casync.atomic import atomic_path
from casync.inference.pointwise import pointwise_linears
from casync.model import CASyncNet
from casync.model.fold import folded

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "bf16", "int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # native bf16 dot products on x86
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products (onnxruntime's MLAS)
Generator = Callable[..., torch.Tensor]
HALVES = ("face", "decode")  # the int8 graphs, as `export_halves` writes them
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")  # dense ones only: see `depthwise_convs`
QUANTIZATION = "dense"  # in the stored graphs' names: graphs of another recipe are not reused


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """The precision that will run: `precision`, or fp32 (with a logged reason) where `device`
    lacks the instructions that make it fast. ValueError for an unknown name."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    reason = None
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        reason = f"{torch.cuda.get_device_name(device)} has no bf16 support"
    elif precision == "bf16" and device.type == "cpu" and not cpu_flags() & set(BF16_FLAGS):
        reason = f"this CPU has none of {', '.join(BF16_FLAGS)} (PyTorch would emulate bf16)"
    elif precision == "int8" and device.type != "cpu":
        reason = f"the int8 path runs on onnxruntime's CPU provider, not on {device}"
    elif precision == "int8" and not cpu_flags() & set(INT8_FLAGS):
        reason = f"this CPU has none of {', '.join(INT8_FLAGS)} (int8 would be slower than fp32)"
    if reason is None:
        return precision
    log.warning("precision=%s falls back to fp32: %s", precision, reason)
    return "fp32"


def build_generator(
    net: CASyncNet, precision: str, device: str | torch.device, cache_dir: str | Path | None = None
) -> Generator:
    """A callable with `net`'s signature (tensors on `device`) returning float32 crops, running
    at `resolve_precision(precision, device)` (see the module's notes). The bf16 path converts
    `net`'s own weights (the network is left in fp32 on the other paths)."""
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    net = folded(net)  # BatchNorm into its convolution (model.norm=batch); GroupNorm stays
    if precision == "int8":
        return Int8Generator(net, cache_dir)
    net = net.eval().to(device, memory_format=torch.channels_last)
    if precision == "bf16":
        return Bf16Generator(net)
    return pointwise_linears(net) if device.type == "cpu" else net  # oneDNN's kernels (see there)


class Bf16Generator:
    """The network in bfloat16: inputs cast on the way in, the crop cast back to float32."""

    def __init__(self, net: CASyncNet) -> None:
        self.net = net.to(torch.bfloat16)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.net(*(x.to(torch.bfloat16) for x in inputs)).float()

    def encode_face(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The features in bfloat16 (what `decode` takes)."""
        return self.net.encode_face(*(x.to(torch.bfloat16) for x in inputs if x is not None))

    def decode(self, bottleneck, skips: list[torch.Tensor], audio: torch.Tensor) -> torch.Tensor:
        bf16 = torch.bfloat16
        skips = [x.to(bf16) for x in skips]
        return self.net.decode(bottleneck.to(bf16), skips, audio.to(bf16)).float()


def weights_hash(net: torch.nn.Module) -> str:
    """sha256 of the network's parameters and buffers (names, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


class Int8Generator:
    """ONNX Runtime int8 (static QDQ) of the generator's two halves, each calibrated on its first
    call (see the module doc).

    The quantized graphs are stored in `cache_dir` (a temporary folder when None) as
    `generator-<weights hash>-dense.{face,decode}.int8.onnx` and reused by later runs of the
    weights."""

    def __init__(self, net: CASyncNet, cache_dir: str | Path | None = None) -> None:
        self.net = net.eval().cpu()
        if cache_dir is None:
            self._temp = tempfile.TemporaryDirectory(prefix="casync-int8-")
            cache_dir = self._temp.name
        stem = f"generator-{weights_hash(self.net)[:16]}-{QUANTIZATION}"
        self.paths = {half: Path(cache_dir) / f"{stem}.{half}.int8.onnx" for half in HALVES}
        # Stored graphs open now, not on the first frame (~0.5 s at paper size: a stream's
        # first frame and a short clip would pay it).
        self.sessions = {half: self._open(half) for half in HALVES if self.paths[half].is_file()}

    def __call__(self, masked, mask, audio, reference=None) -> torch.Tensor:
        return self.decode(*self.encode_face(masked, mask, reference), audio)

    def encode_face(self, masked, mask, reference=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        inputs = [masked, mask] + ([reference] if self.net.use_reference else [])
        bottleneck, *skips = self._run("face", inputs)
        return bottleneck, skips

    def decode(self, bottleneck, skips: list[torch.Tensor], audio: torch.Tensor) -> torch.Tensor:
        (crop,) = self._run("decode", [bottleneck, *skips, audio])
        return crop

    def _open(self, half: str):
        from casync.inference.onnx_export import OnnxGenerator

        return OnnxGenerator(self.paths[half], threads=torch.get_num_threads())

    def _run(self, half: str, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        arrays = [x.detach().float().cpu().numpy() for x in inputs]
        if half not in self.sessions:
            quantize_half(self.net, half, self.paths[half], arrays)
            self.sessions[half] = self._open(half)
        outputs = self.sessions[half].run(*arrays)
        return [torch.from_numpy(y).to(inputs[0].device) for y in outputs]


def quantize_half(net: CASyncNet, half: str, path: Path, calibration: list[np.ndarray]) -> Path:
    """Export `net`'s two halves, quantize `half` (face | decode) to `path`, calibrated on one
    batch of that half's inputs."""
    from casync.inference.onnx_export import export_halves

    log.info("quantizing the generator's %s half to int8 (once per checkpoint): %s", half, path)
    with tempfile.TemporaryDirectory(prefix="casync-export-") as work:
        fp32 = dict(zip(HALVES, export_halves(net, work), strict=True))[half]
        return quantize_graph(fp32, path, calibration)


def quantize_generator(
    net: torch.nn.Module, path: Path, calibration: list[np.ndarray], names: list[str] | None = None
) -> Path:
    """Export the whole of `net` (`export_onnx`) and quantize it to `path`, calibrated on one
    batch of its inputs. `names`: the inputs' names for a network other than CASync (the
    benchmark's peer)."""
    from casync.inference.onnx_export import export_onnx

    log.info("quantizing the generator to int8: %s", path)
    with tempfile.TemporaryDirectory(prefix="casync-export-") as work:
        fp32 = export_onnx(net, Path(work) / "generator.onnx", names=names)
        return quantize_graph(fp32, path, calibration)


def quantize_graph(fp32: Path, path: Path, calibration: list[np.ndarray]) -> Path:
    """Quantize the ONNX graph `fp32` statically to `path` (written atomically): int8
    per-channel weights of its dense convolutions and matrix products, uint8 activations whose
    ranges come from running `calibration`, one batch of the graph's inputs in order."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    graph = onnx.load(str(fp32), load_external_data=False).graph
    names = [i.name for i in graph.input]

    class _Batch(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter([dict(zip(names, calibration, strict=True))])

        def get_next(self) -> dict | None:
            return next(self._feeds, None)

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".onnx") as temp:
        quantize_static(
            str(fp32),
            str(temp),
            _Batch(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_exclude=depthwise_convs(graph),
        )
    return path


def depthwise_convs(graph) -> list[str]:
    """The names of `graph`'s grouped convolutions (one filter per input channel group), which
    stay float32: memory-bound, int8 makes them slower once their quantize/dequantize is paid."""
    return [node.name for node in graph.node if is_depthwise(node)]


def is_depthwise(node) -> bool:
    """Whether the ONNX `node` is a grouped convolution."""
    return node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute)
