"""Video-quality diagnosis on synthetic pictures with known faults."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from adapters.rtsp import vqd
from adapters.rtsp.models import BgrFrame
from adapters.rtsp.vqd import Check, Diagnosis, Verdict, VqdBaseline, VqdThresholds


def street(seed: int = 1, width: int = 640, height: int = 360, shift: int = 0) -> BgrFrame:
    """A textured, colourful, mid-brightness picture: what a healthy camera sees."""
    rng = np.random.default_rng(seed)
    base = np.zeros((height, width, 3), np.float32)
    # Real scenes vary mostly in brightness and only a little in colour.
    for cells, weight, tint in ((4, 70.0, 12.0), (16, 35.0, 6.0), (64, 15.0, 3.0)):
        shape = (cells * height // width + 1, cells)
        luma = rng.uniform(-1, 1, shape).astype(np.float32)
        chroma = rng.uniform(-1, 1, (*shape, 3)).astype(np.float32)
        layer = weight * luma[..., None] + tint * chroma
        base += cv2.resize(layer, (width, height), interpolation=cv2.INTER_CUBIC)
    picture = np.clip(base + 120, 0, 255).astype(np.uint8)
    for index in range(12):  # buildings, cars: hard edges of several colours
        x, y = int(rng.integers(0, width - 80)), int(rng.integers(0, height - 60))
        grey = int(rng.integers(40, 220))
        colour = tuple(int(np.clip(grey + c, 0, 255)) for c in rng.integers(-40, 41, 3))
        cv2.rectangle(picture, (x, y), (x + 40 + index * 3, y + 30 + index * 2), colour, -1)
    cv2.circle(picture, (100 + shift, 200), 25, (40, 40, 220), -1)  # something moving
    return picture


def as_frame(picture: object) -> BgrFrame:
    """OpenCV's result typed as the frames VQD takes."""
    return np.asarray(picture, dtype=np.uint8)


def gaussian(frame: BgrFrame, sigma: float) -> BgrFrame:
    return as_frame(cv2.GaussianBlur(frame, (0, 0), sigma))


def burst(count: int = 6, step: int = 8) -> list[BgrFrame]:
    return [street(shift=i * step) for i in range(count)]


def uniform(bgr: tuple[int, int, int], width: int = 640, height: int = 360) -> BgrFrame:
    return np.full((height, width, 3), bgr, np.uint8)


def test_healthy_burst_passes_every_check() -> None:
    frames = burst()
    reference = vqd.scene_reference(frames[0])
    diagnosis = vqd.diagnose(frames, reference=reference, expected_frames=6)
    assert diagnosis.ok, diagnosis.explain()
    assert {v.name for v in diagnosis.verdicts} == set(Check)
    assert diagnosis.explain() == ""
    assert diagnosis.sharpness is not None and diagnosis.sharpness > 12


def test_no_frame_is_signal_loss_only() -> None:
    diagnosis = vqd.diagnose([])
    assert diagnosis.faults == (Check.SIGNAL_LOSS,)
    assert "no frame" in diagnosis.explain()


def test_black_screen_is_signal_loss_and_too_dark() -> None:
    diagnosis = vqd.diagnose([uniform((0, 0, 0))] * 3)
    assert diagnosis.faults[0] is Check.SIGNAL_LOSS
    assert {Check.TOO_DARK, Check.LOW_CONTRAST, Check.OCCLUSION} <= set(diagnosis.faults)
    loss = diagnosis.verdict(Check.SIGNAL_LOSS)
    assert loss.score == 1.0 and loss.threshold == 0.98


def test_blue_screen_is_signal_loss() -> None:
    verdict = vqd.signal_loss([uniform((255, 0, 0))])
    assert not verdict.ok
    assert "blue" in verdict.explanation


def test_dark_street_at_night_is_too_dark_but_not_signal_loss() -> None:
    night = (street().astype(np.float32) * 0.25).astype(np.uint8)
    assert vqd.signal_loss([night]).ok
    dark = vqd.too_dark(night)
    assert not dark.ok and dark.score < 40


def test_stream_that_stops_early_is_signal_loss() -> None:
    verdict = vqd.signal_loss(burst(2), expected_frames=8)
    assert not verdict.ok
    assert "2 of 8" in verdict.explanation


def test_frozen_sequence_is_frozen_and_moving_one_is_not() -> None:
    still = street()
    frozen = vqd.frozen([still.copy() for _ in range(5)])
    assert not frozen.ok and frozen.score == 0.0
    assert vqd.frozen(burst()).ok


def test_frozen_tolerates_encoder_noise_but_not_motion() -> None:
    rng = np.random.default_rng(3)
    still = street()
    noisy = [
        np.clip(still.astype(np.int16) + rng.integers(-2, 3, still.shape), 0, 255).astype(np.uint8)
        for _ in range(4)
    ]
    assert not vqd.frozen(noisy).ok


def test_frozen_needs_two_frames() -> None:
    verdict = vqd.frozen([street()])
    assert verdict.ok and not verdict.judged


@pytest.mark.parametrize("sigma", [2.0, 4.0])
def test_gaussian_blur_is_caught_against_the_learned_baseline(sigma: float) -> None:
    sharp = burst()
    baseline = vqd.learn_baseline(None, vqd.diagnose(sharp))
    assert baseline is not None
    blurred = [gaussian(frame, sigma) for frame in sharp]
    verdict = vqd.blur(blurred[-1], baseline=baseline)
    assert not verdict.ok
    assert verdict.score < 0.55
    assert "usual" in verdict.explanation
    assert vqd.blur(sharp[-1], baseline=baseline).ok


def test_heavy_blur_is_caught_without_a_baseline() -> None:
    verdict = vqd.blur(gaussian(street(), 8))
    assert not verdict.ok
    assert "no learned baseline" in verdict.explanation


def test_learn_baseline_ignores_faulty_bursts_and_averages_healthy_ones() -> None:
    healthy = vqd.diagnose(burst())
    assert healthy.sharpness is not None
    first = vqd.learn_baseline(None, healthy)
    assert first == VqdBaseline(healthy.sharpness, 1)
    blurred = vqd.diagnose([gaussian(f, 4) for f in burst()], baseline=first)
    assert not blurred.ok
    assert vqd.learn_baseline(first, blurred) is first
    second = Diagnosis(healthy.verdicts, sharpness=healthy.sharpness + 10)
    learned = vqd.learn_baseline(first, second)
    assert learned is not None
    assert learned.samples == 2
    assert learned.sharpness == pytest.approx(healthy.sharpness + 5)


def test_brightness_checks() -> None:
    bright = np.clip(street().astype(np.int16) + 140, 0, 255).astype(np.uint8)
    assert not vqd.too_bright(bright).ok
    assert vqd.too_bright(street()).ok
    assert vqd.too_dark(street()).ok


def test_washed_out_picture_is_low_contrast() -> None:
    foggy = (street().astype(np.float32) * 0.1 + 150).astype(np.uint8)
    verdict = vqd.low_contrast(foggy)
    assert not verdict.ok and verdict.score < 15
    assert vqd.low_contrast(street()).ok


def test_colour_shifted_picture_has_a_cast() -> None:
    shifted = street().astype(np.int16)
    shifted[..., 2] += 60  # red up
    shifted[..., 0] -= 40  # blue down
    tinted = np.clip(shifted, 0, 255).astype(np.uint8)
    verdict = vqd.colour_cast(tinted)
    assert not verdict.ok, verdict.explanation
    assert verdict.score > 1.5
    assert vqd.colour_cast(street()).ok


def test_neutral_grey_has_no_cast_but_green_does() -> None:
    assert vqd.colour_cast(uniform((128, 128, 128))).ok
    green = vqd.colour_cast(uniform((35, 142, 107)))
    assert not green.ok and "green" in green.explanation


def test_solid_colour_is_occlusion() -> None:
    diagnosis = vqd.diagnose([uniform((35, 142, 107))] * 2)
    assert Check.OCCLUSION in diagnosis.faults
    assert Check.COLOUR_CAST in diagnosis.faults
    assert diagnosis.verdict(Check.SIGNAL_LOSS).ok  # a coloured picture is not a lost signal


def test_lens_mostly_covered_is_occlusion() -> None:
    covered = street()
    covered[:, : int(640 * 0.8)] = (60, 60, 60)
    verdict = vqd.occlusion(covered)
    assert not verdict.ok
    assert verdict.score >= 0.7
    assert vqd.occlusion(street()).ok


def test_noise_is_snow() -> None:
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (360, 640), dtype=np.uint8)
    verdict = vqd.snow(as_frame(cv2.cvtColor(noise, cv2.COLOR_GRAY2BGR)))
    assert not verdict.ok and verdict.score > 0.4
    assert vqd.snow(street()).ok
    assert vqd.snow(uniform((90, 90, 90))).ok


def test_moved_camera_is_a_scene_change() -> None:
    reference = vqd.scene_reference(street())
    moved = np.roll(street(), 200, axis=1)
    verdict = vqd.scene_change(moved, reference)
    assert not verdict.ok
    assert verdict.score < 0.5
    assert vqd.scene_change(street(shift=16), reference).ok


def test_reference_from_another_resolution_still_compares() -> None:
    reference = vqd.scene_reference(street(width=1280, height=720))
    assert vqd.scene_change(street(), reference).ok


def test_large_frames_are_scaled_down_before_analysis() -> None:
    big = as_frame(cv2.resize(street(), (1920, 1080)))
    verdict = vqd.occlusion(big)
    assert verdict.ok


def test_thresholds_are_configurable_and_strict() -> None:
    strict = VqdThresholds(dark_max_luma=200)
    assert not vqd.too_dark(street(), strict).ok
    with pytest.raises(ValueError, match="extra"):
        VqdThresholds.model_validate({"no_such_threshold": 1})
    with pytest.raises(ValueError):
        VqdThresholds(signal_loss_min_fraction=1.5)


def test_verdict_and_frame_validation() -> None:
    with pytest.raises(ValueError):
        Verdict(Check.BLUR, float("nan"), 1.0, True, "x")
    with pytest.raises(ValueError):
        Verdict(Check.FROZEN, 0.0, 1.0, False, "x", judged=False)
    with pytest.raises(ValueError):
        vqd.snow(np.zeros((10, 10), np.uint8))


def test_diagnosis_lists_faults_worst_first() -> None:
    diagnosis = vqd.diagnose([uniform((0, 0, 0))] * 2)
    order = list(Check)
    assert list(diagnosis.faults) == sorted(diagnosis.faults, key=order.index)
    assert diagnosis.explain().startswith("signal loss")
