"""CASyncNet: shapes, gradients, conditioning on audio and on the crop, and the paper's budget."""

import json
import subprocess
import sys

import pytest
import torch

from casync.model import CASyncNet
from casync.model.complexity import model_complexity

TINY = dict(width_multiplier=0.25, audio_feature_dim=80, audio_window=10)


@pytest.fixture(scope="module")
def tiny_net() -> CASyncNet:
    torch.manual_seed(0)
    return CASyncNet(**TINY)


def test_output_shape_and_range(tiny_net):
    out = tiny_net(*tiny_net.example_inputs(batch_size=2))
    assert out.shape == (2, 3, 160, 160)
    assert out.min() >= 0 and out.max() <= 1


def test_gradients_reach_every_trainable_parameter(tiny_net):
    tiny_net.zero_grad()
    tiny_net(*tiny_net.example_inputs(batch_size=2)).mean().backward()
    without = [
        n for n, p in tiny_net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0
    ]
    assert without == []


def test_output_depends_on_audio(tiny_net):
    masked, mask, audio, reference = tiny_net.example_inputs(1)
    with torch.no_grad():
        a = tiny_net(masked, mask, audio, reference)
        b = tiny_net(masked, mask, torch.randn_like(audio) * 3, reference)
    inside = mask.bool().expand_as(a)
    assert (a - b)[inside].abs().mean() > 1e-4


def test_output_outside_mask_depends_on_input_crop(tiny_net):
    masked, _, audio, reference = tiny_net.example_inputs(1)
    mask = torch.zeros(1, 1, 160, 160)
    mask[..., 80:, 40:120] = 1  # lower-centre region regenerated
    changed = masked.clone()
    changed[..., :40, :40] = 1 - changed[..., :40, :40]  # edit a corner far from the mask
    with torch.no_grad():
        a = tiny_net(masked * (1 - mask), mask, audio, reference)
        b = tiny_net(changed * (1 - mask), mask, audio, reference)
    assert (a - b)[..., :40, :40].abs().mean() > 1e-4


def test_reference_is_required_when_configured(tiny_net):
    masked, mask, audio, _ = tiny_net.example_inputs(1)
    with pytest.raises(ValueError, match="use_reference"):
        tiny_net(masked, mask, audio)


def test_without_reference_input():
    net = CASyncNet(**TINY, use_reference=False)
    masked, mask, audio = net.example_inputs(1)
    assert net(masked, mask, audio).shape == (1, 3, 160, 160)


def test_mismatched_decoder_is_a_clear_error():
    with pytest.raises(ValueError, match="one entry per skip"):
        CASyncNet(decoder_channels=(64, 32))


def test_full_model_matches_paper_budget():
    """The paper's headline: 19.79M trainable parameters and 4.08 GMACs per 160x160 frame."""
    net = CASyncNet()
    measured = model_complexity(net, net.example_inputs(1))
    assert measured["params_m"] == pytest.approx(19.79, rel=0.01)
    assert measured["gmacs"] == pytest.approx(4.08, rel=0.03)
    assert sum(p["params_m"] for p in measured["parts"].values()) == pytest.approx(
        measured["params_m"]
    )


@pytest.mark.slow
def test_profile_cli_writes_json_and_figure(tmp_path):
    out = tmp_path / "profile.json"
    figure = tmp_path / "fig.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "casync.profile",
            "model=casync_tiny",
            "audio=mel",
            f"output={out}",
            f"figure={figure}",
            "throughput.seconds=0.2",
            "batch_size=2",
            f"hydra.run.dir={tmp_path}/run",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    tiny = CASyncNet(**TINY)
    expected = model_complexity(tiny, tiny.example_inputs(1))
    assert data["params_m"] == pytest.approx(expected["params_m"])
    assert data["gmacs"] == pytest.approx(expected["gmacs"])
    assert set(data["parts"]) == {"face_encoder", "audio_encoder", "fusion", "decoder"}
    assert figure.stat().st_size > 10_000 and figure.read_bytes()[:4] == b"\x89PNG"
    assert "LatentSync" in result.stdout and "CASync (this build)" in result.stdout


@pytest.mark.parametrize("batch", [1, 5])
def test_audio_conv_as_matmul_equals_conv1d(batch):
    from torch import nn

    from casync.model.audio_encoder import conv1d_as_matmul

    torch.manual_seed(0)
    for bias in (False, True):
        conv = nn.Conv1d(24, 16, 3, padding=1, bias=bias)
        x = torch.randn(batch, 24, 10)
        torch.testing.assert_close(conv1d_as_matmul(x, conv), conv(x), rtol=1e-5, atol=1e-5)
