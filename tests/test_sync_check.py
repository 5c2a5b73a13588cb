"""The audio-shift sync check: correlation, window shifting, and verdicts on fake models."""

from __future__ import annotations

import numpy as np
import pytest

from casync.evaluation.lip_landmarks import (
    CORNER_A,
    CORNER_B,
    INNER_LOWER,
    INNER_UPPER,
    LIP_INDICES,
    lmd,
)
from casync.evaluation.sync import (
    block_bootstrap,
    pearson,
    shift_check,
    shift_frames,
    shift_windows,
)

N_FRAMES = 150
FPS = 25.0


def lips(openings: np.ndarray) -> np.ndarray:
    """(N,) inner-lip gaps in px -> (N, 40, 2) lip landmarks of a 40 px wide mouth."""
    angles = np.linspace(0, 2 * np.pi, len(LIP_INDICES), endpoint=False)
    half_height = 8 + openings[:, None] / 2  # the whole mouth opens, not just the inner lips
    x = np.broadcast_to(80 + 20 * np.cos(angles), (len(openings), len(angles)))
    points = np.stack([x, 115 + half_height * np.sin(angles)], axis=-1).astype(np.float32)
    points[:, CORNER_A], points[:, CORNER_B] = (60, 115), (100, 115)
    points[:, INNER_UPPER] = np.stack([np.full_like(openings, 80), 115 - openings / 2], axis=1)
    points[:, INNER_LOWER] = np.stack([np.full_like(openings, 80), 115 + openings / 2], axis=1)
    return points


@pytest.fixture
def audio_windows() -> np.ndarray:
    """(N, 10, 8) per-frame windows whose energy follows a smooth random envelope (~3 frames)."""
    rng = np.random.default_rng(0)
    kernel = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
    envelope = np.convolve(rng.random(N_FRAMES), kernel / kernel.sum(), mode="same")
    noise = rng.standard_normal((N_FRAMES, 10, 8))
    return (envelope[:, None, None] * noise / np.abs(noise).mean()).astype(np.float32)


def energy_model(windows: np.ndarray, lag: int = 0):
    """A fake generator whose mouth opening is a function of the (shifted) window energy."""

    def generate(shift: int) -> np.ndarray:
        energy = np.abs(shift_windows(windows, shift + lag)).mean(axis=(1, 2))
        return lips(2 + 20 * energy)

    return generate


def test_pearson_known_values():
    signal = np.sin(np.linspace(0, 6, 50))
    assert pearson(signal, signal) == pytest.approx(1.0)
    assert pearson(signal, -signal) == pytest.approx(-1.0)
    assert pearson(signal, 3 * signal + 7) == pytest.approx(1.0)
    assert np.isnan(pearson(signal, np.ones(50)))  # constant: undefined
    with_gaps = signal.copy()
    with_gaps[[3, 10]] = np.nan
    assert pearson(with_gaps, signal) == pytest.approx(1.0)  # NaN frames are skipped


def test_shift_frames_rounds_half_away_from_zero():
    assert [shift_frames(s, FPS) for s in (-0.5, -0.2, 0.0, 0.2, 0.5)] == [-13, -5, 0, 5, 13]


def test_shift_windows_replicates_edges_instead_of_wrapping():
    windows = np.arange(6)
    np.testing.assert_array_equal(shift_windows(windows, 2), [0, 0, 0, 1, 2, 3])
    np.testing.assert_array_equal(shift_windows(windows, -2), [2, 3, 4, 5, 5, 5])
    np.testing.assert_array_equal(shift_windows(windows, 0), windows)
    assert shift_windows(np.zeros((6, 10, 8)), 3).shape == (6, 10, 8)


def test_model_that_ignores_audio_has_zero_margin(audio_windows):
    real = energy_model(audio_windows)(0)
    still = lips(np.full(N_FRAMES, 6.0) + np.linspace(0, 1, N_FRAMES))  # moves, but not with audio

    check = shift_check(lambda shift: still, real, FPS)

    assert check.lmd_margin == pytest.approx(0.0, abs=1e-6)
    assert check.correlation_margin == pytest.approx(0.0, abs=1e-6)
    assert not check.follows_audio
    assert [r.shift_frames for r in check.shifts] == [-13, -5, 5, 13]


def test_model_that_follows_audio_has_positive_margin(audio_windows):
    generate = energy_model(audio_windows)
    rng = np.random.default_rng(1)
    real = generate(0) + rng.normal(0, 0.3, (N_FRAMES, len(LIP_INDICES), 2)).astype(np.float32)

    check = shift_check(generate, real, FPS)

    assert check.aligned_correlation > 0.9
    assert check.lmd_margin > 0.2  # px
    assert check.correlation_margin > 0.3
    assert all(r.lmd_margin > 0 and r.correlation_margin > 0 for r in check.shifts)
    assert check.follows_audio


def test_model_lagging_the_audio_does_not_pass(audio_windows):
    real = energy_model(audio_windows)(0)
    late = energy_model(audio_windows, lag=5)  # best when driven 5 frames early

    check = shift_check(late, real, FPS)

    assert check.correlation_margin < 0  # the -0.2 s shift beats "aligned"
    assert not check.follows_audio


def test_no_lips_found_gives_nan_and_no_verdict(audio_windows):
    real = energy_model(audio_windows)(0)
    missing = np.full_like(real, np.nan)

    check = shift_check(lambda shift: missing, real, FPS)

    assert np.isnan(check.aligned_lmd) and np.isnan(check.lmd_margin)
    assert not check.follows_audio and check.evidence == "inconclusive"


def test_frames_mask_scores_only_speech(audio_windows):
    """A real speaker who breathes with the mouth open in a pause: the audio-driven model closes
    it there, which all-frame scores punish; scored on speech frames the model passes."""
    generate = energy_model(audio_windows)
    real = generate(0).copy()
    pause = np.zeros(N_FRAMES, bool)
    pause[60:90] = True
    silent_windows = audio_windows.copy()
    silent_windows[60:90] = 0.0
    follows = energy_model(silent_windows)  # silence in the pause: mouth closed there
    real[pause] = lips(np.full(pause.sum(), 12.0))  # but the real mouth stays open

    on_speech = shift_check(follows, real, FPS, frames=~pause)
    on_all = shift_check(follows, real, FPS)

    assert on_speech.frames == N_FRAMES - 30 and on_all.frames == N_FRAMES
    assert on_speech.follows_audio and on_speech.lmd_margin > 0
    assert on_all.aligned_lmd > on_speech.aligned_lmd  # the pause is where aligned audio loses


def test_shifts_compare_only_frames_whose_shifted_audio_exists(audio_windows):
    generate = energy_model(audio_windows)
    real = generate(0) + np.random.default_rng(2).normal(0, 0.3, (N_FRAMES, 40, 2))

    def has_audio(shift: int) -> np.ndarray:  # a held-out range at the end of its recording
        return np.arange(N_FRAMES) - shift < N_FRAMES

    check = shift_check(generate, real, FPS, has_audio=has_audio)

    early = check.shifts[0]  # -13 frames: the last 13 frames would hear a frozen edge window
    assert (early.shift_frames, early.frames) == (-13, N_FRAMES - 13)
    head = slice(0, N_FRAMES - 13)
    expected = lmd(generate(-13)[head], real[head]) - lmd(generate(0)[head], real[head])
    assert early.lmd_margin == pytest.approx(expected)
    assert check.shifts[-1].frames == N_FRAMES  # +13: audio from earlier frames exists


def test_margin_intervals_say_when_too_few_frames_were_scored(audio_windows):
    """The same noisy speaker and model: 150 frames show that the mouth follows the audio; 20
    frames give positive point margins but intervals that include 0 (inconclusive)."""
    generate = energy_model(audio_windows)
    energy = np.abs(audio_windows).mean(axis=(1, 2))
    noisy_opening = 2 + 20 * energy + np.random.default_rng(1).normal(0, 3.0, N_FRAMES)
    real = lips(np.clip(noisy_opening, 0, None))
    short = np.zeros(N_FRAMES, bool)
    short[40:60] = True

    long_check = shift_check(generate, real, FPS)
    short_check = shift_check(generate, real, FPS, frames=short)

    assert long_check.evidence == "follows"
    assert all(r.lmd_margin_ci[0] > 0 and r.correlation_margin_ci[0] > 0 for r in long_check.shifts)
    assert short_check.lmd_margin > 0 and short_check.correlation_margin > 0
    assert short_check.evidence == "inconclusive"
    assert any(
        r.correlation_margin_ci[0] < 0 < r.correlation_margin_ci[1] for r in short_check.shifts
    )
    for r in short_check.shifts:  # each interval holds its point estimate
        assert r.lmd_margin_ci[0] <= r.lmd_margin <= r.lmd_margin_ci[1]


def test_margin_intervals_of_models_that_do_not_follow(audio_windows):
    real = energy_model(audio_windows)(0)
    still = lips(np.full(N_FRAMES, 6.0) + np.linspace(0, 1, N_FRAMES))

    ignores = shift_check(lambda shift: still, real, FPS)
    lags = shift_check(energy_model(audio_windows, lag=5), real, FPS)

    assert ignores.evidence == "does not follow"
    assert all(r.lmd_margin_ci == pytest.approx((0.0, 0.0), abs=1e-6) for r in ignores.shifts)
    assert lags.evidence == "does not follow"
    assert lags.shifts[1].correlation_margin_ci[1] < 0  # -0.2 s: clearly better than "aligned"


def test_block_bootstrap_resamples_runs_of_neighbouring_frames():
    rows = block_bootstrap(23, 5, 200)
    assert rows.shape == (200, 23) and rows.min() >= 0 and rows.max() <= 22
    runs = rows[:, :20].reshape(200, 4, 5)
    assert (np.diff(runs, axis=-1) == 1).all()  # each block is 5 consecutive frames
    assert len({tuple(r) for r in rows}) > 190  # and the rows differ
