"""Reduced precision (bf16, int8) against fp32 on real held-out frames, and the fp32 fallback.

Weights are random (no trained checkpoint ships): what is checked is how far each path's output
moves from the same network's fp32 output. Random weights draw no face in the mouth, so for the
lip landmarks each path's error (reduced - fp32) is added to the real held-out crop inside the
mouth mask, and MediaPipe's lip landmarks on that crop are compared with those on the untouched
crop, against the landmarks' own noise (the same crop after JPEG round trips at q98, q95, q90).
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch

from casync.data.cache import open_cache
from casync.evaluation.lip_landmarks import LipLandmarkExtractor, lmd
from casync.infer import CONFIG_DIR
from casync.inference import precision as precision_module
from casync.inference.precision import build_generator, resolve_precision
from casync.model import CASyncNet

MEL = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10, "feature_dim": 80}
TINY = {"audio_feature_dim": 80, "audio_window": 10, "width_multiplier": 0.25}
FULL = {"audio_feature_dim": 80, "audio_window": 10}  # the paper's size with mel features
# The first 14 validation frames of the default split: the face mesh finds the lips on every one
# of these crops, also after a JPEG q70 round trip or noise in the mouth (on 164-172 it finds none).
HELD_OUT = slice(150, 164)


@pytest.fixture(scope="module")
def held_out(s1_cache):
    """(uint8 crops (N, S, S, 3), mask (S, S), generator inputs) of held-out frames."""
    (source,) = open_cache(*s1_cache).sources
    crops = np.array(source.crops[HELD_OUT])
    mask = np.array(source.mask, np.float32)
    images = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, S, S)
    masks = torch.from_numpy(mask)[None, None].expand(len(crops), -1, -1, -1)
    audio = torch.from_numpy(np.array(source.audio[HELD_OUT], np.float32))  # (N, W, D)
    reference = images[:1].expand(len(crops), -1, -1, -1)
    return crops, mask, (images * (1 - masks), masks, audio, reference)


def outputs(config: dict, precision: str, inputs, cache_dir) -> tuple[np.ndarray, np.ndarray]:
    """(fp32, `precision`) crops (N, S, S, 3) in [0, 1] of one random-weight network."""
    if resolve_precision(precision, "cpu") != precision:
        pytest.skip(f"this CPU cannot run {precision} natively")
    torch.manual_seed(0)
    net = CASyncNet(**config).eval()
    with torch.inference_mode():
        fp32 = net(*inputs)
        reduced = build_generator(net, precision, "cpu", cache_dir)(*inputs)
    assert reduced.dtype == torch.float32 and reduced.shape == fp32.shape
    return fp32.permute(0, 2, 3, 1).numpy(), reduced.permute(0, 2, 3, 1).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-crop PSNR (dB) of [0, 1] images."""
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(axis=1)
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-12))


def jpeg(crops: np.ndarray, quality: int) -> np.ndarray:
    """`crops` after a JPEG round trip at `quality`: measurement noise for the lip landmarks."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    return np.stack([cv2.imdecode(cv2.imencode(".jpg", c, params)[1], 1) for c in crops])


def check_quality(held_out, fp32: np.ndarray, reduced: np.ndarray) -> None:
    crops, mask, _ = held_out
    assert psnr(reduced, fp32).mean() >= 35.0
    assert np.abs(reduced - fp32).max() > 0  # a reduced path really ran
    error = (reduced - fp32) * 255.0 * mask[..., None]  # the precision's error, mouth only
    perturbed = np.clip(crops + error, 0, 255).round().astype(np.uint8)
    with LipLandmarkExtractor() as extract:
        real, moved = extract(crops), extract(perturbed)
        noise = {quality: extract(jpeg(crops, quality)) for quality in (98, 95, 90)}
    assert real.found.sum() >= 8
    # The face mesh may lose a crop only where it is borderline: where a JPEG q90 round trip
    # (measurement noise) loses or finds it too.
    borderline = noise[90].found != real.found
    assert not ((moved.found != real.found) & ~borderline).any()
    # The landmarks' own noise, averaged over three round trips: one draw is a noisy estimate (on
    # these soft crops q98, q95, q90 move the lips 0.43, 0.33, 0.63 px; int8's error 0.35-0.40
    # px, the same error twice as large 0.60, three times 0.81).
    noise_px = np.mean([lmd(found.points, real.points) for found in noise.values()])
    assert lmd(moved.points, real.points) <= max(noise_px, 0.1)


def test_bf16_tiny_matches_fp32_on_held_out_frames(held_out, tmp_path):
    check_quality(held_out, *outputs(TINY, "bf16", held_out[2], tmp_path))


@pytest.mark.slow
def test_bf16_paper_size_matches_fp32_on_held_out_frames(held_out, tmp_path):
    check_quality(held_out, *outputs(FULL, "bf16", held_out[2], tmp_path))


@pytest.mark.slow  # quantizing takes ~30 s (tiny) to ~80 s (paper size) on 2 busy cores
@pytest.mark.parametrize("config", [TINY, FULL], ids=["tiny", "paper_size"])
def test_int8_matches_fp32_on_held_out_frames_and_is_cached(held_out, tmp_path, config):
    check_quality(held_out, *outputs(config, "int8", held_out[2], tmp_path))
    # Two graphs (the face encoder; the rest), reused by the next run of these weights.
    stored = sorted(path.name.split(".", 1)[1] for path in tmp_path.glob("generator-*.int8.onnx"))
    assert stored == ["decode.int8.onnx", "face.int8.onnx"]
    assert all(path.stat().st_size > 0 for path in tmp_path.glob("generator-*.int8.onnx"))
    torch.manual_seed(0)  # the same weights: the stored graphs are opened before the first call
    again = build_generator(CASyncNet(**config).eval(), "int8", "cpu", tmp_path)
    assert sorted(again.sessions) == ["decode", "face"]


def test_int8_quantizes_dense_convolutions_and_keeps_depthwise_ones_float(tmp_path):
    """The quantizer turns the dense convolutions and matrix products into int8 and leaves the
    depthwise convolutions, norms and activations float32 (their quantize/dequantize pairs
    cost more than int8 saves)."""
    import onnx

    from casync.inference.onnx_export import export_onnx
    from casync.inference.precision import is_depthwise, quantize_graph
    from casync.model.blocks import DepthwiseSeparableConv

    class Block(torch.nn.Sequential):
        def example_inputs(self, batch: int) -> tuple[torch.Tensor]:
            return (torch.rand(batch, 8, 16, 16),)

    torch.manual_seed(0)
    block = Block(DepthwiseSeparableConv(8, 16), torch.nn.Conv2d(16, 16, 3, padding=1)).eval()
    fp32 = export_onnx(block, tmp_path / "block.onnx", names=["x"])
    quantized = quantize_graph(fp32, tmp_path / "block.int8.onnx", [np.random.rand(4, 8, 16, 16)
                               .astype(np.float32)])  # fmt: skip
    graph = onnx.load(str(quantized)).graph
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    convs = {  # (depthwise, int8 weights) of every convolution
        (is_depthwise(node), node.input[1] in dequantized)
        for node in graph.node
        if node.op_type == "Conv"
    }
    assert convs == {(True, False), (False, True)}
    # GroupNorm (InstanceNormalization, Mul) and SiLU (Sigmoid, Mul) take float32 inputs, not
    # dequantized int8 ones (quantizing every op makes all of them dequantized).
    elementwise = [
        n for n in graph.node if n.op_type in ("InstanceNormalization", "Sigmoid", "Mul")
    ]
    assert len(elementwise) == 8 and not any(x in dequantized for n in elementwise for x in n.input)


def test_unknown_precision_is_refused_by_name():
    with pytest.raises(ValueError, match=r"precision='fp16': choose one of fp32, bf16, int8"):
        resolve_precision("fp16", "cpu")


def test_a_cpu_without_the_instructions_falls_back_to_fp32_and_says_why(monkeypatch, caplog):
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx2"}))
    with caplog.at_level(logging.WARNING):
        assert resolve_precision("bf16", "cpu") == "fp32"
        assert resolve_precision("int8", "cpu") == "fp32"
    assert "precision=bf16 falls back to fp32: this CPU has none of avx512_bf16" in caplog.text
    assert "precision=int8 falls back to fp32: this CPU has none of avx512_vnni" in caplog.text
    net = build_generator(CASyncNet(**TINY), "bf16", "cpu")
    assert next(net.parameters()).dtype == torch.float32  # the fp32 graph


def test_the_synthesizer_and_infer_config_carry_the_precision(monkeypatch, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from casync.contract import save_generator_checkpoint
    from casync.inference.precision import Bf16Generator
    from casync.inference.synthesizer import Synthesizer

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        assert compose("infer").precision == "fp32"
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset(["avx512_bf16"]))
    save_generator_checkpoint(tmp_path / "tiny.ckpt", CASyncNet(**TINY), TINY, MEL)
    synthesizer = Synthesizer.from_checkpoint(tmp_path / "tiny.ckpt", precision="bf16")
    assert isinstance(synthesizer.net, Bf16Generator)
