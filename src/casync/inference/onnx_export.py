"""Export the CASync generator (face encoder + audio CNN + fusion + UNet decoder) to ONNX and run
it with onnxruntime.

    python -m casync.inference.onnx_export CHECKPOINT.ckpt OUT.onnx

Inputs (float32, batch axis dynamic): masked (B,3,S,S), mask (B,1,S,S), audio (B,W,D) and, for
models built with a reference, reference (B,3,S,S). Output: crop (B,3,S,S) in [0, 1].
The audio front end (log-mel or HuBERT) stays outside the graph, as in `Synthesizer`.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

from casync.model import CASyncNet

OPSET = 17


def input_names(net: CASyncNet) -> list[str]:
    return ["masked", "mask", "audio"] + (["reference"] if net.use_reference else [])


def export_onnx(
    net: CASyncNet, path: str | Path, opset: int = OPSET, names: list[str] | None = None
) -> Path:
    """Write `net` (eval mode, CPU, fp32) to `path` with a dynamic batch axis; checks the graph.
    `names`: the inputs' names, for another network with `example_inputs` (the benchmark's peer)."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval().cpu()
    names = names or input_names(net)
    axes = {name: {0: "batch"} for name in [*names, "crop"]}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # TorchScript-exporter deprecation chatter
        torch.onnx.export(
            net,
            net.example_inputs(2),
            str(path),
            input_names=names,
            output_names=["crop"],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,  # the TorchScript exporter: no onnxscript dependency
        )
    onnx.checker.check_model(onnx.load(str(path)))
    return path


class OnnxGenerator:
    """The exported generator on onnxruntime: same call signature as `CASyncNet`, numpy in/out."""

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
        feeds = {
            name: np.ascontiguousarray(x, np.float32)
            for name, x in zip(self.names, inputs, strict=True)
        }
        return self.session.run(["crop"], feeds)[0]


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
