"""ONNX export of the generator (face encoder + audio CNN + fusion + UNet) and onnxruntime parity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from casync.contract import load_generator, save_generator_checkpoint
from casync.inference.onnx_export import OnnxGenerator, main
from casync.model import CASyncNet

MEL = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10, "feature_dim": 80}
TINY = {"audio_feature_dim": 80, "audio_window": 10, "width_multiplier": 0.25}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(checkpoint, onnx path) made by the export command."""
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    save_generator_checkpoint(folder / "tiny.ckpt", CASyncNet(**TINY), TINY, MEL)
    main([str(folder / "tiny.ckpt"), str(folder / "out" / "generator.onnx")])
    return folder / "tiny.ckpt", folder / "out" / "generator.onnx"


def test_export_writes_a_checked_graph_with_the_whole_generator(exported):
    model = onnx.load(str(exported[1]))
    assert [i.name for i in model.graph.input] == ["masked", "mask", "audio", "reference"]
    assert [o.name for o in model.graph.output] == ["crop"]
    ops = {node.op_type for node in model.graph.node}
    assert {"Conv", "MatMul", "Softmax", "Sigmoid"} <= ops  # UNet convs and cross-attention


def test_onnxruntime_matches_torch_at_several_batch_sizes(exported):
    net = load_generator(exported[0]).net
    session = OnnxGenerator(exported[1], threads=2)
    for batch in (1, 3):  # the batch axis is dynamic
        inputs = net.example_inputs(batch)
        with torch.inference_mode():
            expected = net(*inputs).numpy()
        got = session(*[x.numpy() for x in inputs])
        assert got.shape == (batch, 3, 160, 160)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    # It is the network, not a constant: other audio gives another crop.
    inputs = [x.numpy() for x in net.example_inputs(1)]
    other = [*inputs[:2], np.random.default_rng(1).normal(size=inputs[2].shape), inputs[3]]
    assert np.abs(session(*inputs) - session(*other)).max() > 1e-4
