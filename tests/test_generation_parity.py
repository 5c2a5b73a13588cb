"""One generation path (`casync.contract.CropGenerator`): evaluation and the synthesizer turn the
same crops, audio windows and reference into the same generated pixels."""

from __future__ import annotations

import numpy as np
import torch

from casync.contract import CropGenerator, load_generator, save_generator_checkpoint
from casync.data.cache import open_cache
from casync.evaluation.runner import HeldOutGenerator, composite, held_out_range
from casync.inference import Synthesizer
from casync.model import CASyncNet

MEL = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10, "feature_dim": 80}
TINY = {"width_multiplier": 0.25, "audio_feature_dim": 80, "audio_window": 10}


def test_evaluation_and_the_synthesizer_generate_identical_crops(s1_cache, tmp_path):
    root, speaker = s1_cache
    torch.manual_seed(0)
    path = tmp_path / "tiny.ckpt"
    save_generator_checkpoint(path, CASyncNet(**TINY), TINY, MEL)
    held = held_out_range(open_cache(root, speaker), 0.25)
    n = 12
    real, masks = held.crops()[:n], held.masks()[:n]
    windows, reference = held.windows()[:n], held.closed_mouth_crops()[:1]
    evaluated = HeldOutGenerator(
        load_generator(path).net, reference, np.zeros(n, np.int64), batch_size=n
    )(real, masks, windows)

    synth = Synthesizer(load_generator(path), progress=False)
    generated = synth._generate(real, synth._mask, windows, reference)
    assert generated.dtype == np.uint8 and generated.shape == real.shape
    np.testing.assert_array_equal(composite(real, generated, masks), evaluated)
    assert not np.array_equal(evaluated, real)  # the network did paint the mouth region

    # The cache's stored mask is the synthesizer's region: the same network inputs either way.
    np.testing.assert_array_equal(masks[0], synth._mask)
    # Another batch size may move a rounding tie by one level (oneDNN blocks by batch), no more.
    alone = CropGenerator(synth.net)(real[:3], masks[:3], windows[:3], reference)
    assert np.abs(alone.astype(int) - generated[:3]).max() <= 1
