"""Ping-pong frame order and seamless paste-back (feathered alpha, colour matching)."""

from __future__ import annotations

import cv2
import numpy as np

from casync.face import cut_crop, params_to_transform, stored_mask
from casync.inference import Blender, ping_pong


def test_ping_pong_turns_without_jump_or_freeze():
    order = ping_pong(20, 5)
    assert order.tolist() == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3]
    assert np.abs(np.diff(ping_pong(500, 37))).max() == 1  # every step moves exactly one frame
    assert ping_pong(7, 100).tolist() == list(range(7))  # shorter audio: stop with it
    assert ping_pong(4, 1).tolist() == [0, 0, 0, 0]


def _scene():
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), np.uint8), (0, 0), 3)
    transform = params_to_transform(np.array([160.0, 130.0, 150.0, 0.1]), 160)
    return frame, transform


def test_paste_back_changes_only_the_feathered_region():
    frame, transform = _scene()
    blender = Blender(stored_mask(160), feather=5.0, color_match=False)
    generated = np.full((160, 160, 3), 255.0, np.float32)
    out = blender(frame, generated, cut_crop(frame, transform, 160), transform)
    size = (frame.shape[1], frame.shape[0])
    reach = cv2.warpAffine(blender.alpha, transform, size, flags=cv2.WARP_INVERSE_MAP) > 0
    reach = cv2.dilate(reach.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert np.array_equal(out[~reach], frame[~reach])  # bit-exact away from the mouth
    assert (out[reach] != frame[reach]).mean() > 0.5  # and the mouth region did change
    # Soft edge: along a row through the mouth the change ramps up instead of jumping.
    change = np.abs(out.astype(int) - frame).sum(-1)[150]
    assert np.abs(np.diff(change)).max() < 0.5 * change.max()


def test_colour_matching_removes_a_cast_in_the_ring():
    frame, transform = _scene()
    source = cut_crop(frame, transform, 160)
    cast = np.clip(source.astype(np.float32) + np.array([40.0, -10.0, 5.0]), 0, 255)
    blender = Blender(stored_mask(160))
    matched = blender.match_colour(cast, source)
    ring = blender.ring
    before = np.abs(cast[ring].mean(0) - source[ring].mean(0)).max()
    after = np.abs(matched[ring].mean(0) - source[ring].mean(0)).max()
    assert before > 15 and after < 2
