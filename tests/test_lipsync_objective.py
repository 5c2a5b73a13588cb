"""The lip-sync objective that selects checkpoints and sweep trials (`val/sync/objective`),
measured by the evaluation's own functions on the validation frames of a real cache: it ranks
an oracle above a good model above a still mouth above a model that ignores the audio, and
where val/psnr alone ranks a pair wrongly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_evaluate import IgnoresAudioNet, OracleNet
from torchmetrics.image import PeakSignalNoiseRatio

from casync.contract import network_inputs
from casync.data import CASyncDataModule, open_cache
from casync.evaluation.lipsync import CORRELATION_FLOOR, SHARPNESS_FLOOR, WORST_RATIO, objective
from casync.evaluation.runner import HeldOut
from casync.training.lipsync import sync_scores


class BlurredOracleNet(OracleNet):
    """The oracle's frame, softened: a good model (follows the audio, a little blurred)."""

    def decode(self, bottleneck, skips, audio):
        frames = super().decode(bottleneck, skips, audio)
        kernel = torch.ones(3, 1, 3, 3) / 9
        return torch.nn.functional.conv2d(frames, kernel, padding=1, groups=3)


class DarkerOracleNet(OracleNet):
    """The oracle's frame 15 % darker: in sync, a tone off (inference pastes only the mask
    region, but val/psnr compares the whole output crop)."""

    def decode(self, bottleneck, skips, audio):
        return super().decode(bottleneck, skips, audio) * 0.85


class UnsyncedNet(OracleNet):
    """A real, sharp, moving mouth from 1.5 s away: lips that ignore the audio they are given."""

    def decode(self, bottleneck, skips, audio):
        rows = [(self.index[w.tobytes()] + 37) % len(self.crops) for w in audio.cpu().numpy()]
        return self.crops[rows]


class AverageMouthNet(OracleNet):
    """The mean of every crop of the source, whatever the audio: what a pixel loss drives a model
    to when the audio tells it nothing (a blurred, half-open, still mouth)."""

    def decode(self, bottleneck, skips, audio):
        return self.crops.mean(dim=0, keepdim=True).expand(len(audio), -1, -1, -1)


def val_psnr(net: torch.nn.Module, data: CASyncDataModule) -> float:
    """val/psnr as `CASyncSystem.validation_step` computes it: the network's output against the
    target over the whole crop, on the DataModule's validation batches."""
    metric = PeakSignalNoiseRatio(data_range=1.0)
    for batch in data.val_dataloader():
        masked, mask = network_inputs(batch["target"], batch["mask"])
        with torch.no_grad():
            prediction = net(masked, mask, batch["audio"], batch.get("reference"))
        metric(prediction.clamp(0, 1), batch["target"])
    return float(metric.compute())


@pytest.fixture(scope="module")
def ranked(s1_cache) -> dict[str, dict[str, float]]:
    root, speaker = s1_cache
    source = open_cache(root, speaker).sources[0]
    data = CASyncDataModule(str(root), [speaker], batch_size=16, num_workers=0)
    data.setup("validate")
    held = HeldOut(data)  # frames 150-199, what validation sees
    nets = {
        "oracle": OracleNet(source.crops, source.audio),
        "good": BlurredOracleNet(source.crops, source.audio),
        "still_mouth": IgnoresAudioNet(),
        "ignores_audio": UnsyncedNet(source.crops, source.audio),
        "average_mouth": AverageMouthNet(source.crops, source.audio),
        "darker": DarkerOracleNet(source.crops, source.audio),
    }
    results, known = {}, None
    for name, net in nets.items():
        scores, known = sync_scores(held, net, shifts_s=[-0.2, 0.2], known=known)
        results[name] = scores | {"psnr": val_psnr(net, data)}
    return results


def test_objective_ranks_oracle_good_still_mouth_then_audio_ignoring(ranked):
    objective_of = {name: scores["objective"] for name, scores in ranked.items()}
    order = ["oracle", "good", "still_mouth", "ignores_audio"]
    assert [objective_of[n] for n in order] == sorted(objective_of[n] for n in order), ranked
    assert len({objective_of[n] for n in order}) == 4
    assert objective_of["oracle"] == pytest.approx(0.0, abs=1e-6)
    assert ranked["still_mouth"]["lmd_ratio"] == pytest.approx(1.0)  # the still mouth itself
    # in sync but a tone off beats the average mouth, which ignores the audio
    assert objective_of["darker"] < objective_of["average_mouth"] < objective_of["still_mouth"]
    # the good model pays no guard; LMD alone puts the unsynced real mouth (0.81x) above the
    # still one, and the correlation guard is what orders that pair
    assert objective_of["good"] == pytest.approx(ranked["good"]["lmd_ratio"])
    assert ranked["ignores_audio"]["lmd_ratio"] < 1.0 < objective_of["ignores_audio"]
    assert ranked["ignores_audio"]["opening_corr"] < 0.5 < ranked["good"]["opening_corr"]
    assert ranked["oracle"]["lmd_margin"] > 0 and ranked["still_mouth"]["lmd_margin"] == 0


def test_what_val_psnr_alone_ranks(ranked):
    """PSNR over the crop (what sweeps and checkpoints selected by before) on the same models:
    it orders the oracle, the good model, the still mouth and the unsynced mouth as the
    objective does, but ranks the average mouth, which ignores the audio, above the model that
    follows it exactly a tone darker (it compares the whole output crop; inference pastes only
    the mouth region)."""
    psnr = {name: scores["psnr"] for name, scores in ranked.items()}
    assert psnr["oracle"] > psnr["good"] > psnr["still_mouth"] > psnr["ignores_audio"], psnr
    assert psnr["average_mouth"] > psnr["darker"], psnr


def test_objective_arithmetic_and_undefined_scores():
    assert objective(0.5, 0.9, 0.8) == pytest.approx(0.5)
    assert objective(0.5, 0.2, 0.8) == pytest.approx(0.5 + CORRELATION_FLOOR - 0.2)
    assert objective(0.5, 0.9, 0.1) == pytest.approx(0.5 + SHARPNESS_FLOOR - 0.1)
    assert objective(0.5, 0.9, 3.0) == pytest.approx(0.5)  # sharper than real: no reward, no cost
    worst = WORST_RATIO + CORRELATION_FLOOR + SHARPNESS_FLOOR
    assert objective(float("nan"), float("nan"), float("nan")) == pytest.approx(worst)
    assert objective(9.0, 0.9, 0.8) == pytest.approx(WORST_RATIO)  # capped: finite for Optuna


def test_validation_scores_are_deterministic_and_reuse_the_real_lips(s1_cache):
    root, speaker = s1_cache
    source = open_cache(root, speaker).sources[0]
    data = CASyncDataModule(str(root), [speaker], num_workers=0)
    held = HeldOut(data).limit(30)
    assert len(held) == 30 and held.val == [range(150, 180)]
    net = BlurredOracleNet(source.crops, source.audio)
    first, known = sync_scores(held, net, shifts_s=[0.2])
    again, _ = sync_scores(held, net, shifts_s=[0.2], known=known)
    fresh, _ = sync_scores(held, net, shifts_s=[0.2])
    assert first == again == fresh
    assert np.isfinite(first["objective"]) and set(known) == {"real", "still_mouth"}
