"""Export the CASync generator (face encoder + audio CNN + fusion + UNet decoder) to ONNX and run
it with onnxruntime.

    python -m casync.inference.onnx_export CHECKPOINT.ckpt OUT.onnx

Inputs (float32, batch axis dynamic): masked (B,3,S,S), mask (B,1,S,S), audio (B,W,D) and, for
models built with a reference, reference (B,3,S,S). Output: crop (B,3,S,S) in [0, 1].
The audio front end (log-mel or HuBERT) stays outside the graph, as in `Synthesizer`.

`export_halves` writes the same network as two graphs, as `CASyncNet.encode_face` and `decode`
split it (the int8 path runs them, so a looping source's face features can be reused): the face
encoder (masked, mask[, reference] -> bottleneck, skip0..skipN) and the rest (bottleneck,
skip0..skipN, audio -> crop).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from casync.model import CASyncNet

OPSET = 17


def input_names(net: CASyncNet) -> list[str]:
    return ["masked", "mask", "audio"] + (["reference"] if net.use_reference else [])


def export_onnx(
    net: CASyncNet, path: str | Path, opset: int = OPSET, names: list[str] | None = None
) -> Path:
    """Write `net` (eval mode, CPU, fp32) to `path` with a dynamic batch axis; checks the graph.
    `names`: the inputs' names, for another network with `example_inputs` (the benchmark's peer)."""
    net = net.eval().cpu()
    names = names or input_names(net)
    return _export(net, net.example_inputs(2), path, names, ["crop"], opset)


class FaceHalf(nn.Module):
    """`CASyncNet.encode_face` with flat outputs (ONNX has no lists)."""

    def __init__(self, net: CASyncNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        bottleneck, skips = self.net.encode_face(*inputs)
        return bottleneck, *skips


class DecoderHalf(nn.Module):
    """`CASyncNet.decode` with flat inputs: bottleneck, skip0..skipN (high-res first), audio."""

    def __init__(self, net: CASyncNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, bottleneck: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return self.net.decode(bottleneck, list(rest[:-1]), rest[-1])


def feature_names(net: CASyncNet) -> list[str]:
    """The face encoder's outputs: bottleneck, then one skip per decoder block (high-res first)."""
    return ["bottleneck"] + [f"skip{i}" for i in range(len(net.decoder.up_blocks))]


def export_halves(net: CASyncNet, folder: str | Path, opset: int = OPSET) -> tuple[Path, Path]:
    """Write `net` as two graphs in `folder` (face.onnx, decode.onnx); see the module doc."""
    net = net.eval().cpu()
    masked, mask, audio, *reference = net.example_inputs(2)
    faces = input_names(net)
    faces.remove("audio")
    features = feature_names(net)
    face = _export(FaceHalf(net), (masked, mask, *reference), Path(folder) / "face.onnx",
                   faces, features, opset)  # fmt: skip
    with torch.inference_mode():
        bottleneck, skips = net.encode_face(masked, mask, *reference)
    decode = _export(DecoderHalf(net), (bottleneck, *skips, audio), Path(folder) / "decode.onnx",
                     [*features, "audio"], ["crop"], opset)  # fmt: skip
    return face, decode


def _export(module, inputs, path, names: list[str], outputs: list[str], opset: int) -> Path:
    """torch.onnx.export with a dynamic batch axis on every input and output; checks the graph."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {name: {0: "batch"} for name in [*names, *outputs]}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # TorchScript-exporter deprecation chatter
        torch.onnx.export(
            module,
            tuple(inputs),
            str(path),
            input_names=names,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,  # the TorchScript exporter: no onnxscript dependency
        )
    onnx.checker.check_model(onnx.load(str(path)))
    return path


class OnnxGenerator:
    """An exported graph on onnxruntime, numpy in/out: called, the whole generator's signature
    and its crop; `run` gives every output (the face half's features)."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default (all cores)
        # Idle workers sleep instead of spinning (as OMP_WAIT_POLICY=PASSIVE does for torch): with
        # spinning, decoding and x264 threads lose the cores; ~2x slower on a busy 2-core box.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        return self.run(*inputs)[0]

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        feeds = {
            name: np.ascontiguousarray(x, np.float32)
            for name, x in zip(self.names, inputs, strict=True)
        }
        return self.session.run(None, feeds)


def main(argv: list[str] | None = None) -> None:
    from casync.contract import load_generator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("output")
    args = parser.parse_args(argv)
    generator = load_generator(args.checkpoint)
    path = export_onnx(generator.net, args.output)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
