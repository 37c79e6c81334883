"""Video-quality diagnosis (VQD): pure functions over decoded pictures.

Each check returns a `Verdict` with the number it measured, the threshold it
compared against and a sentence a maintainer can read. `diagnose` runs the
whole bundle over one probe's burst. Pictures are scaled down to
`VqdThresholds.analysis_width` first: every check here is about the picture
as a whole, and a 320-pixel-wide picture costs a tenth of a 1080p one.

Only cheap forms are used: one grey conversion shared by every check, the
Laplacian on CV_16S with meanStdDev (not CV_64F + var), block statistics by
reshaping, a 64-pixel thumbnail for scene comparison.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from types import MappingProxyType
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from adapters.rtsp.models import BgrFrame
from adapters.rtsp.vqd_models import (
    Check,
    Diagnosis,
    SceneReference,
    Verdict,
    VqdBaseline,
    VqdThresholds,
)

__all__ = [
    "Check",
    "Diagnosis",
    "SceneReference",
    "Verdict",
    "VqdBaseline",
    "VqdThresholds",
    "blur",
    "colour_cast",
    "diagnose",
    "frozen",
    "learn_baseline",
    "low_contrast",
    "occlusion",
    "scene_change",
    "scene_reference",
    "signal_loss",
    "snow",
    "too_bright",
    "too_dark",
]

GreyFrame = npt.NDArray[np.uint8]
_THUMB_WIDTH = 64
_BLOCK = 16


def _check_frame(frame: BgrFrame) -> None:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or frame.size == 0:
        raise ValueError("a frame must be a non-empty HxWx3 uint8 BGR array")


class _Picture:
    """One frame scaled for analysis, with the intermediate results checks share."""

    def __init__(self, frame: BgrFrame, width: int) -> None:
        _check_frame(frame)
        height, current = frame.shape[:2]
        if current > width:
            size = (width, max(1, round(height * width / current)))
            frame = cast(BgrFrame, cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
        self.bgr = frame

    @cached_property
    def grey(self) -> GreyFrame:
        return cast(GreyFrame, cv2.cvtColor(self.bgr, cv2.COLOR_BGR2GRAY))

    @cached_property
    def luma(self) -> tuple[float, float]:
        mean, std = cv2.meanStdDev(self.grey)
        return float(mean[0, 0]), float(std[0, 0])

    @cached_property
    def sharpness(self) -> float:
        _, std = cv2.meanStdDev(cv2.Laplacian(self.grey, cv2.CV_16S, ksize=3))
        return float(std[0, 0])

    @cached_property
    def lab(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """(mean a, mean b) offsets from neutral and (std a, std b)."""
        mean, std = cv2.meanStdDev(cv2.cvtColor(self.bgr, cv2.COLOR_BGR2Lab))
        return (
            (float(mean[1, 0]) - 128.0, float(mean[2, 0]) - 128.0),
            (float(std[1, 0]), float(std[2, 0])),
        )

    @cached_property
    def thumbnail(self) -> GreyFrame:
        height, width = self.grey.shape
        size = (_THUMB_WIDTH, max(1, round(height * _THUMB_WIDTH / width)))
        small = cv2.resize(self.grey, size, interpolation=cv2.INTER_AREA)
        return cast(GreyFrame, cv2.GaussianBlur(small, (3, 3), 0))


def _verdict(name: Check, score: float, threshold: float, ok: bool, good: str, bad: str) -> Verdict:
    return Verdict(name, round(score, 4), threshold, ok, good if ok else bad)


# --- single-picture checks: (picture, thresholds, baseline, reference) -> Verdict ---


def _signal_loss(picture: _Picture, t: VqdThresholds) -> Verdict:
    grey = picture.grey
    blue, green, red = cv2.split(picture.bgr)
    other = cv2.max(green, red)
    blue_screen = cv2.subtract(blue, other) >= t.blue_screen_margin
    lost = (grey <= t.black_max_luma) | blue_screen
    share = float(np.count_nonzero(lost)) / grey.size
    return _verdict(
        Check.SIGNAL_LOSS,
        share,
        t.signal_loss_min_fraction,
        share < t.signal_loss_min_fraction,
        f"picture present: {share:.0%} black/blue screen",
        f"signal loss: {share:.1%} of the picture is black or blue screen "
        f"(limit {t.signal_loss_min_fraction:.0%})",
    )


def _blur(picture: _Picture, t: VqdThresholds, baseline: VqdBaseline | None) -> Verdict:
    sharpness = picture.sharpness
    if baseline is not None and baseline.sharpness > 0:
        ratio = sharpness / baseline.sharpness
        return _verdict(
            Check.BLUR,
            ratio,
            t.blur_min_ratio,
            ratio >= t.blur_min_ratio,
            f"sharp: {ratio:.0%} of this camera's usual sharpness",
            f"blurred: sharpness {sharpness:.1f} is {ratio:.0%} of this camera's usual "
            f"{baseline.sharpness:.1f} (limit {t.blur_min_ratio:.0%})",
        )
    return _verdict(
        Check.BLUR,
        sharpness,
        t.blur_min_sharpness,
        sharpness >= t.blur_min_sharpness,
        f"sharp: Laplacian std {sharpness:.1f}",
        f"blurred: Laplacian std {sharpness:.1f} below {t.blur_min_sharpness:g} "
        "(no learned baseline for this camera)",
    )


def _too_dark(picture: _Picture, t: VqdThresholds) -> Verdict:
    mean = picture.luma[0]
    return _verdict(
        Check.TOO_DARK,
        mean,
        t.dark_max_luma,
        mean >= t.dark_max_luma,
        f"brightness fine: mean luma {mean:.0f}",
        f"too dark: mean luma {mean:.0f} below {t.dark_max_luma:g}",
    )


def _too_bright(picture: _Picture, t: VqdThresholds) -> Verdict:
    mean = picture.luma[0]
    return _verdict(
        Check.TOO_BRIGHT,
        mean,
        t.bright_min_luma,
        mean <= t.bright_min_luma,
        f"brightness fine: mean luma {mean:.0f}",
        f"too bright: mean luma {mean:.0f} above {t.bright_min_luma:g}",
    )


def _low_contrast(picture: _Picture, t: VqdThresholds) -> Verdict:
    std = picture.luma[1]
    return _verdict(
        Check.LOW_CONTRAST,
        std,
        t.contrast_min_std,
        std >= t.contrast_min_std,
        f"contrast fine: luma std {std:.1f}",
        f"low contrast: luma std {std:.1f} below {t.contrast_min_std:g}",
    )


def _hue_name(mean_a: float, mean_b: float) -> str:
    """Name the direction of a Lab a/b offset: "green", "yellow-green", "magenta-blue"..."""
    a_name = "magenta" if mean_a > 0 else "green"
    b_name = "yellow" if mean_b > 0 else "blue"
    a_size, b_size = abs(mean_a), abs(mean_b)
    if a_size < b_size / 2:
        return b_name
    if b_size < a_size / 2:
        return a_name
    return f"{b_name}-{a_name}" if b_size >= a_size else f"{a_name}-{b_name}"


def _colour_cast(picture: _Picture, t: VqdThresholds) -> Verdict:
    # The cast factor K = D / M: how far the average colour sits from neutral
    # (D) compared with how widely the colours spread (M). A scene with many
    # colours averages out; a tinted picture has its whole mass off-centre.
    (mean_a, mean_b), (std_a, std_b) = picture.lab
    offset = math.hypot(mean_a, mean_b)
    spread = math.hypot(std_a, std_b)
    factor = offset / max(spread, 1.0)
    hue = _hue_name(mean_a, mean_b)
    ok = offset < t.cast_min_offset or factor <= t.cast_max_factor
    return _verdict(
        Check.COLOUR_CAST,
        factor,
        t.cast_max_factor,
        ok,
        f"colour balanced: cast factor {factor:.2f} (a/b offset {offset:.1f})",
        f"colour cast towards {hue}: factor {factor:.2f} above {t.cast_max_factor:g} "
        f"(Lab a {mean_a:+.1f}, b {mean_b:+.1f}, spread {spread:.1f})",
    )


def _occlusion(picture: _Picture, t: VqdThresholds) -> Verdict:
    grey = picture.grey
    rows, cols = grey.shape[0] // _BLOCK, grey.shape[1] // _BLOCK
    if rows and cols:
        blocks = grey[: rows * _BLOCK, : cols * _BLOCK].reshape(rows, _BLOCK, cols, _BLOCK)
        block_std = blocks.std(axis=(1, 3))
        uniform = float(np.count_nonzero(block_std < t.occlusion_block_std)) / block_std.size
    else:
        uniform = 1.0 if picture.luma[1] < t.occlusion_block_std else 0.0
    histogram = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel() / grey.size
    nonzero = histogram[histogram > 0]
    entropy = float(-(nonzero * np.log2(nonzero)).sum())
    covered = uniform >= t.occlusion_max_fraction
    flat = entropy < t.occlusion_min_entropy
    reason = (
        f"{uniform:.0%} of the picture is uniform (limit {t.occlusion_max_fraction:.0%})"
        if covered
        else f"luma entropy {entropy:.2f} bits below {t.occlusion_min_entropy:g}"
    )
    return _verdict(
        Check.OCCLUSION,
        uniform,
        t.occlusion_max_fraction,
        not (covered or flat),
        f"not covered: {uniform:.0%} uniform, entropy {entropy:.2f} bits",
        f"occluded: {reason}",
    )


def _snow(picture: _Picture, t: VqdThresholds) -> Verdict:
    # White noise keeps ~8/9 of its variance after removing a 3x3 mean; real
    # scenes keep a few percent. The ratio is blind to overall contrast.
    grey = picture.grey
    variance = picture.luma[1] ** 2
    if variance < 1.0:
        return Verdict(Check.SNOW, 0.0, t.snow_max_ratio, True, "no noise: flat picture")
    detail = cv2.subtract(grey, cv2.blur(grey, (3, 3)), dtype=cv2.CV_16S)
    _, std = cv2.meanStdDev(detail)
    ratio = min(1.0, float(std[0, 0]) ** 2 / variance)
    return _verdict(
        Check.SNOW,
        ratio,
        t.snow_max_ratio,
        ratio <= t.snow_max_ratio,
        f"no snow: {ratio:.0%} of the variance is pixel-scale",
        f"snow noise: {ratio:.0%} of the picture's variance is pixel-scale noise "
        f"(limit {t.snow_max_ratio:.0%})",
    )


def _correlation(first: GreyFrame, second: GreyFrame) -> float:
    a = first.astype(np.float32).ravel()
    b = second.astype(np.float32).ravel()
    a -= a.mean()
    b -= b.mean()
    norm = math.sqrt(float(a @ a) * float(b @ b))
    if norm < 1e-6:
        # A uniform picture is only "the same scene" as another uniform picture.
        return 1.0 if float(a @ a) < 1e-6 and float(b @ b) < 1e-6 else 0.0
    return float(a @ b) / norm


def _scene_change(picture: _Picture, t: VqdThresholds, reference: SceneReference) -> Verdict:
    thumb = picture.thumbnail
    expected = reference.thumbnail
    if thumb.shape != expected.shape:
        expected = cast(GreyFrame, cv2.resize(expected, (thumb.shape[1], thumb.shape[0])))
    correlation = _correlation(thumb, expected)
    return _verdict(
        Check.SCENE_CHANGE,
        correlation,
        t.scene_min_correlation,
        correlation >= t.scene_min_correlation,
        f"scene as expected: correlation {correlation:.2f} with the reference",
        f"scene changed (camera moved or view blocked): correlation {correlation:.2f} "
        f"with the reference, below {t.scene_min_correlation:g}",
    )


_PictureCheck = Callable[[_Picture, VqdThresholds], Verdict]

#: The exposure and colour checks, which need nothing but the picture.
_PICTURE_CHECKS: Mapping[Check, _PictureCheck] = MappingProxyType(
    {
        Check.TOO_DARK: _too_dark,
        Check.TOO_BRIGHT: _too_bright,
        Check.LOW_CONTRAST: _low_contrast,
        Check.COLOUR_CAST: _colour_cast,
    }
)


# --- multi-frame checks ---


def _frozen(pictures: Sequence[_Picture], t: VqdThresholds) -> Verdict:
    if len(pictures) < 2:
        return Verdict(
            Check.FROZEN,
            0.0,
            t.frozen_max_changed,
            True,
            f"not judged: {len(pictures)} frame(s), two needed",
            judged=False,
        )
    changed = 0.0
    for before, after in itertools.pairwise(pictures):
        if before.grey.shape != after.grey.shape:
            changed = 1.0  # the resolution changed: the picture is certainly live
            break
        moved = cv2.absdiff(before.grey, after.grey) > t.frozen_pixel_delta
        changed = max(changed, float(np.count_nonzero(moved)) / moved.size)
    return _verdict(
        Check.FROZEN,
        changed,
        t.frozen_max_changed,
        changed > t.frozen_max_changed,
        f"live: up to {changed:.2%} of the picture changed between frames",
        f"frozen picture: {len(pictures)} consecutive frames, at most {changed:.3%} "
        f"changed (limit {t.frozen_max_changed:.3%})",
    )


def _signal_loss_burst(
    pictures: Sequence[_Picture], t: VqdThresholds, expected_frames: int | None
) -> Verdict:
    if not pictures:
        return Verdict(
            Check.SIGNAL_LOSS, 1.0, t.signal_loss_min_fraction, False, "signal loss: no frame"
        )
    verdict = _signal_loss(pictures[-1], t)
    if verdict.ok and expected_frames is not None and len(pictures) < expected_frames:
        return Verdict(
            Check.SIGNAL_LOSS,
            verdict.score,
            verdict.threshold,
            False,
            f"signal loss: the stream stopped after {len(pictures)} of {expected_frames} frames",
        )
    return verdict


# --- public API ---


def _pictures(frames: Sequence[BgrFrame], t: VqdThresholds) -> list[_Picture]:
    return [_Picture(frame, t.analysis_width) for frame in frames]


def signal_loss(
    frames: Sequence[BgrFrame],
    thresholds: VqdThresholds | None = None,
    *,
    expected_frames: int | None = None,
) -> Verdict:
    """No frame, a black or blue screen, or fewer frames than the stream should give."""
    t = thresholds or VqdThresholds()
    return _signal_loss_burst(_pictures(frames, t), t, expected_frames)


def frozen(frames: Sequence[BgrFrame], thresholds: VqdThresholds | None = None) -> Verdict:
    """Consecutive frames (almost) identical: the encoder is stuck on one picture."""
    t = thresholds or VqdThresholds()
    return _frozen(_pictures(frames, t), t)


def blur(
    frame: BgrFrame, thresholds: VqdThresholds | None = None, baseline: VqdBaseline | None = None
) -> Verdict:
    """Out of focus: Laplacian std against the camera's baseline, else an absolute floor."""
    t = thresholds or VqdThresholds()
    return _blur(_Picture(frame, t.analysis_width), t, baseline)


def too_dark(frame: BgrFrame, thresholds: VqdThresholds | None = None) -> Verdict:
    """Mean luma below the floor."""
    t = thresholds or VqdThresholds()
    return _too_dark(_Picture(frame, t.analysis_width), t)


def too_bright(frame: BgrFrame, thresholds: VqdThresholds | None = None) -> Verdict:
    """Mean luma above the ceiling (glare, iris stuck open)."""
    t = thresholds or VqdThresholds()
    return _too_bright(_Picture(frame, t.analysis_width), t)


def low_contrast(frame: BgrFrame, thresholds: VqdThresholds | None = None) -> Verdict:
    """Luma standard deviation below the floor (fog, a washed-out picture)."""
    t = thresholds or VqdThresholds()
    return _low_contrast(_Picture(frame, t.analysis_width), t)


def colour_cast(frame: BgrFrame, thresholds: VqdThresholds | None = None) -> Verdict:
    """The picture's average colour far from neutral in Lab space, relative to its spread."""
    t = thresholds or VqdThresholds()
    return _colour_cast(_Picture(frame, t.analysis_width), t)


def occlusion(frame: BgrFrame, thresholds: VqdThresholds | None = None) -> Verdict:
    """A large uniform area or a near-empty histogram: the lens is covered."""
    t = thresholds or VqdThresholds()
    return _occlusion(_Picture(frame, t.analysis_width), t)


def snow(frame: BgrFrame, thresholds: VqdThresholds | None = None) -> Verdict:
    """Snow noise: most of the picture's energy at the finest scale."""
    t = thresholds or VqdThresholds()
    return _snow(_Picture(frame, t.analysis_width), t)


def scene_reference(frame: BgrFrame, thresholds: VqdThresholds | None = None) -> SceneReference:
    """Remember what `frame` shows, for later `scene_change` checks."""
    t = thresholds or VqdThresholds()
    return SceneReference(_Picture(frame, t.analysis_width).thumbnail.copy())


def scene_change(
    frame: BgrFrame, reference: SceneReference, thresholds: VqdThresholds | None = None
) -> Verdict:
    """The camera no longer shows its reference scene (turned, moved, blocked)."""
    t = thresholds or VqdThresholds()
    return _scene_change(_Picture(frame, t.analysis_width), t, reference)


def diagnose(
    frames: Sequence[BgrFrame],
    thresholds: VqdThresholds | None = None,
    baseline: VqdBaseline | None = None,
    reference: SceneReference | None = None,
    *,
    expected_frames: int | None = None,
) -> Diagnosis:
    """Run every check over one burst; single-picture checks look at the last frame.

    With no frame at all, only signal loss is reported. The last frame is the
    one the decoder had the most time to settle on. Scene change runs only
    with a `reference`; blur uses `baseline` when given.
    """
    t = thresholds or VqdThresholds()
    pictures = _pictures(frames, t)
    loss = _signal_loss_burst(pictures, t, expected_frames)
    if not pictures:
        return Diagnosis((loss,))
    last = pictures[-1]
    # Worst first, so `Diagnosis.faults[0]` is what a maintainer should read first.
    verdicts = [
        loss,
        _frozen(pictures, t),
        _occlusion(last, t),
        _snow(last, t),
        _blur(last, t, baseline),
    ]
    verdicts.extend(check(last, t) for check in _PICTURE_CHECKS.values())
    if reference is not None:
        verdicts.append(_scene_change(last, t, reference))
    return Diagnosis(tuple(verdicts), sharpness=last.sharpness)


def learn_baseline(
    baseline: VqdBaseline | None, diagnosis: Diagnosis, *, window: int = 20
) -> VqdBaseline | None:
    """Fold a healthy burst's sharpness into the camera's baseline (a running mean).

    Faulty bursts teach nothing: a camera that drifts out of focus must not
    learn its blur as normal. The mean weighs the last `window` samples.
    """
    if window < 1:
        raise ValueError("window must be >= 1")
    if not diagnosis.ok or diagnosis.sharpness is None:
        return baseline
    if baseline is None:
        return VqdBaseline(diagnosis.sharpness, 1)
    samples = min(baseline.samples + 1, window)
    sharpness = baseline.sharpness + (diagnosis.sharpness - baseline.sharpness) / samples
    return VqdBaseline(sharpness, baseline.samples + 1)
