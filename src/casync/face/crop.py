"""Crop geometry shared by preprocessing and inference: a similarity transform per frame that maps
the lower face into a `size`x`size` crop, the mask of the region to regenerate, and paste-back.

Crop parameters are (cx, cy, side, angle): the crop centre and side in frame pixels and the head
roll in radians. Transforms are 2x3 affine matrices frame -> crop (cv2.warpAffine convention).
"""

from __future__ import annotations

import cv2
import numpy as np

from casync.face.landmarks import (
    LEFT_CHEEK,
    LEFT_EYE_OUTER,
    RIGHT_CHEEK,
    RIGHT_EYE_OUTER,
    SUBNASALE,
)

# In units of face width (3-D cheek-to-cheek distance, insensitive to yaw and mouth opening).
SIDE_PER_FACE_WIDTH = 1.05
CENTRE_BELOW_SUBNASALE = 0.25
# The region to regenerate, in crop coordinates (fractions of the side): everything below the
# nose, cheek to cheek, with rounded bottom corners so the jaw line blends.
MASK_TOP, MASK_LEFT, MASK_RIGHT, MASK_BOTTOM = 0.30, 0.08, 0.92, 0.98
# Where the lips sit in a crop (fractions of its side): the lip landmarks of 5 minutes of GRID
# talker 1 span y 0.36-0.58 and x 0.30-0.68 (5th-95th percentiles); this box adds a margin.
MOUTH_TOP, MOUTH_LEFT, MOUTH_RIGHT, MOUTH_BOTTOM = 0.30, 0.25, 0.75, 0.65


def crop_params(landmarks: np.ndarray) -> np.ndarray:
    """(478, 3) pixel landmarks -> (4,) float64 (cx, cy, side, angle)."""
    eye_r, eye_l = landmarks[RIGHT_EYE_OUTER, :2], landmarks[LEFT_EYE_OUTER, :2]
    angle = float(np.arctan2(eye_l[1] - eye_r[1], eye_l[0] - eye_r[0]))
    face_width = float(np.linalg.norm(landmarks[LEFT_CHEEK] - landmarks[RIGHT_CHEEK]))
    down = np.array([-np.sin(angle), np.cos(angle)])  # the face's "down" in frame coordinates
    centre = landmarks[SUBNASALE, :2] + CENTRE_BELOW_SUBNASALE * face_width * down
    return np.array([centre[0], centre[1], SIDE_PER_FACE_WIDTH * face_width, angle])


def params_to_transform(params: np.ndarray, size: int) -> np.ndarray:
    """(..., 4) crop parameters -> (..., 2, 3) float32 affine frame -> crop."""
    params = np.asarray(params, dtype=np.float64)
    cx, cy, side, angle = np.moveaxis(params, -1, 0)
    scale = size / side
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    half = size / 2.0
    # Rotate by -angle about the centre, scale, move the centre to the crop centre.
    row0 = np.stack([cos, sin, half - cos * cx - sin * cy], axis=-1)
    row1 = np.stack([-sin, cos, half + sin * cx - cos * cy], axis=-1)
    return np.stack([row0, row1], axis=-2).astype(np.float32)


def transform_points(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """(K, 2) points through one (2, 3) affine."""
    return points[:, :2] @ transform[:, :2].T + transform[:, 2]


def cut_crop(frame: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 crop. Large shrink factors first reduce the frame
    with area averaging, so the crop does not alias."""
    transform = np.asarray(transform, dtype=np.float64)
    shrink = int(1.0 / max(np.hypot(*transform[0, :2]), 1e-6))
    if shrink >= 2:
        height, width = frame.shape[:2]
        frame = cv2.resize(frame, (width // shrink, height // shrink), interpolation=cv2.INTER_AREA)
        # Pixel centres: old = s * new + (s - 1) / 2 per axis; fold that into the transform.
        s = np.array([width / frame.shape[1], height / frame.shape[0]])
        transform = np.concatenate(
            [transform[:, :2] * s, (transform[:, 2] + transform[:, :2] @ ((s - 1) / 2))[:, None]],
            axis=1,
        )
    return cv2.warpAffine(
        frame, transform, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def region_mask(size: int, feather: float = 0.0) -> np.ndarray:
    """(size, size) float32 mask of the region to regenerate: 1 inside, 0 outside.

    The region is fixed in crop coordinates, so its shape tells the network nothing about the
    target mouth. Preprocessing stores the hard mask in the cache (`mask.npy`) and the checkpoint
    carries it from there; `feather` > 0 softens it (see `feathered`)."""
    mask = np.zeros((size, size), np.float32)
    top, bottom = round(MASK_TOP * size), round(MASK_BOTTOM * size)
    left, right = round(MASK_LEFT * size), round(MASK_RIGHT * size)
    radius = round(0.2 * size)
    cv2.rectangle(mask, (left, top), (right - 1, bottom - radius), 1.0, thickness=-1)
    cv2.rectangle(mask, (left + radius, top), (right - 1 - radius, bottom - 1), 1.0, thickness=-1)
    for x in (left + radius, right - 1 - radius):
        cv2.circle(mask, (x, bottom - 1 - radius), radius, 1.0, thickness=-1)
    return feathered(mask, feather) if feather > 0 else mask


def stored_mask(size: int) -> np.ndarray:
    """(size, size) uint8 0/1: the hard region as a cache stores it (`mask.npy`) and a checkpoint
    carries it (the network's `mask` input)."""
    return (region_mask(size) > 0.5).astype(np.uint8)


def feathered(mask: np.ndarray, feather: float) -> np.ndarray:
    """A hard (S, S) mask (1 inside) with its edge softened for blending: eroded by `feather`
    pixels, then Gaussian-blurred with sigma `feather`; 0 wherever the blurred edge does not
    reach."""
    hard = np.asarray(mask, np.float32)
    shrunk = cv2.erode(hard, np.ones((3, 3), np.uint8), iterations=max(1, round(feather)))
    soft = cv2.GaussianBlur(shrunk, (0, 0), sigmaX=feather)
    soft[soft < 1e-3] = 0.0
    return soft


def mouth_box(size: int) -> tuple[slice, slice]:
    """(rows, columns) of the box where the lips sit in a `size` crop."""
    rows = slice(round(MOUTH_TOP * size), round(MOUTH_BOTTOM * size))
    return rows, slice(round(MOUTH_LEFT * size), round(MOUTH_RIGHT * size))


def mouth_box_mask(size: int) -> np.ndarray:
    """(size, size) float32: 1 inside `mouth_box`, 0 elsewhere."""
    mask = np.zeros((size, size), np.float32)
    mask[mouth_box(size)] = 1.0
    return mask


def alpha_support(alpha: np.ndarray) -> np.ndarray:
    """(4, 2) crop-space corners of the box holding every nonzero alpha, one pixel wider for
    bilinear reach (the whole crop when alpha is empty)."""
    rows, cols = np.nonzero(alpha)
    if len(rows) == 0:
        size = alpha.shape[0]
        return np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    x0, y0, x1, y1 = cols.min() - 1, rows.min() - 1, cols.max() + 2, rows.max() + 2
    return np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64)


def paste_back(
    frame: np.ndarray,
    crop: np.ndarray,
    transform: np.ndarray,
    alpha: np.ndarray,
    support: np.ndarray | None = None,
) -> np.ndarray:
    """Warp `crop` (uint8, or float32 in [0, 255]) back into a copy of `frame` and blend with
    `alpha` (crop coordinates, [0, 1]). Only the frame box under `support` (from `alpha_support`,
    computed here when not given) is touched; pixels whose warped alpha is 0 keep their exact
    original values."""
    height, width = frame.shape[:2]
    support = alpha_support(alpha) if support is None else support
    inverse = cv2.invertAffineTransform(np.asarray(transform, np.float64))
    corners = support @ inverse[:, :2].T + inverse[:, 2]  # (4, 2) in the frame
    x0, y0 = np.clip(np.floor(corners.min(0)).astype(int) - 1, 0, [width, height])
    x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + 1, 0, [width, height])
    out = frame.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    local = np.asarray(transform, np.float64).copy()
    local[:, 2] += local[:, :2] @ np.array([x0, y0], np.float64)  # ROI origin -> (0, 0)
    flags, roi = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, (int(x1 - x0), int(y1 - y0))
    warped = cv2.warpAffine(
        np.asarray(crop, np.float32), local, roi, flags=flags, borderMode=cv2.BORDER_REPLICATE
    )
    weight = cv2.warpAffine(np.asarray(alpha, np.float32), local, roi, flags=flags, borderValue=0.0)
    region = out[y0:y1, x0:x1]
    base = region.astype(np.float32)
    # base + (warped - base) * weight, rounded. Where weight is 0 this is base + 0.5, which
    # truncates back to the exact source value; a convex blend of [0, 255] stays in range.
    np.subtract(warped, base, out=warped)
    warped *= weight[..., None]
    warped += base
    warped += 0.5
    np.copyto(region, warped, casting="unsafe")
    return out
