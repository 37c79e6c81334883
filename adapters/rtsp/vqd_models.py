"""What a video-quality diagnosis says: the checks, their thresholds, verdicts and baselines.

The data of `adapters.rtsp.vqd`, apart from the picture arithmetic, so settings and
storage code can name a check or a threshold without loading the image checks.
"""

import math
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Check", "Diagnosis", "SceneReference", "Verdict", "VqdBaseline", "VqdThresholds"]

GreyFrame = npt.NDArray[np.uint8]


class Check(StrEnum):
    """The name of one diagnosis, as stored and shown to maintainers."""

    SIGNAL_LOSS = "signal_loss"
    FROZEN = "frozen"
    OCCLUSION = "occlusion"
    SNOW = "snow"
    BLUR = "blur"
    TOO_DARK = "too_dark"
    TOO_BRIGHT = "too_bright"
    LOW_CONTRAST = "low_contrast"
    COLOUR_CAST = "colour_cast"
    SCENE_CHANGE = "scene_change"


class VqdThresholds(BaseModel):
    """Where each diagnosis draws the line. Defaults suit 8-bit pictures scaled to 320 px."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    analysis_width: int = Field(
        320, ge=64, le=1920, title="Analysis width", description="Pictures wider are scaled down."
    )
    black_max_luma: int = Field(
        20, ge=0, le=255, description="A pixel this dark (grey level) counts as black screen."
    )
    blue_screen_margin: int = Field(
        80, ge=1, le=255, description="A pixel whose blue exceeds red and green by this much."
    )
    signal_loss_min_fraction: float = Field(
        0.98, gt=0, le=1, description="Signal loss when this share of the picture is black/blue."
    )
    frozen_pixel_delta: int = Field(
        6, ge=0, le=255, description="A pixel changed between frames by more than this moved."
    )
    frozen_max_changed: float = Field(
        0.0005,
        ge=0,
        le=1,
        description="Frozen when no pair of consecutive frames changed more than this share.",
    )
    blur_min_sharpness: float = Field(
        12.0,
        ge=0,
        description="Without a learned baseline: blurred when the Laplacian std is below this.",
    )
    blur_min_ratio: float = Field(
        0.55,
        gt=0,
        le=1,
        description="With a learned baseline: blurred below this share of the usual sharpness.",
    )
    dark_max_luma: float = Field(40, ge=0, le=255, description="Too dark below this mean luma.")
    bright_min_luma: float = Field(
        215, ge=0, le=255, description="Too bright above this mean luma."
    )
    contrast_min_std: float = Field(
        15, ge=0, le=128, description="Low contrast below this luma standard deviation."
    )
    cast_max_factor: float = Field(
        1.5,
        gt=0,
        description="Colour cast above this ratio of Lab a/b mean offset to a/b spread.",
    )
    cast_min_offset: float = Field(
        10,
        ge=0,
        description="Lab a/b mean offset (0..~128) below which no cast is reported at all.",
    )
    occlusion_block_std: float = Field(
        3.0, ge=0, description="A 16x16 block with a luma std below this counts as uniform."
    )
    occlusion_max_fraction: float = Field(
        0.7, gt=0, le=1, description="Occlusion when this share of blocks is uniform."
    )
    occlusion_min_entropy: float = Field(
        2.0, ge=0, le=8, description="Occlusion when the luma histogram entropy (bits) is below."
    )
    snow_max_ratio: float = Field(
        0.4,
        gt=0,
        le=1,
        description="Snow when this share of the picture's variance is pixel-scale detail.",
    )
    scene_min_correlation: float = Field(
        0.5,
        ge=-1,
        le=1,
        description="Scene changed when correlation with the reference thumbnail is below.",
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """One diagnosis: the measured `score`, the `threshold`, whether the picture passed."""

    name: Check
    score: float
    threshold: float
    ok: bool
    explanation: str
    #: False when the check could not judge (e.g. frozen with one frame); then ok is True.
    judged: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", Check(self.name))
        if not (math.isfinite(self.score) and math.isfinite(self.threshold)):
            raise ValueError("Verdict score and threshold must be finite")
        if not self.judged and not self.ok:
            raise ValueError("a check that could not judge cannot fail")
        if not self.explanation:
            raise ValueError("Verdict needs an explanation")


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Every verdict of one burst; `faults` names the ones that failed, worst first."""

    verdicts: tuple[Verdict, ...]
    faults: tuple[Check, ...] = ()
    #: Measured sharpness (Laplacian std at analysis size), for `learn_baseline`.
    sharpness: float | None = None

    def __post_init__(self) -> None:
        failed = tuple(v.name for v in self.verdicts if not v.ok)
        if self.faults and self.faults != failed:
            raise ValueError("Diagnosis.faults must list the failed verdicts in order")
        object.__setattr__(self, "faults", failed)

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.faults

    def verdict(self, name: Check | str) -> Verdict:
        """The verdict of one check; KeyError if it did not run."""
        for verdict in self.verdicts:
            if verdict.name == name:
                return verdict
        raise KeyError(name)

    def explain(self) -> str:
        """The failed verdicts' explanations, one sentence each ("" when healthy)."""
        return "; ".join(v.explanation for v in self.verdicts if not v.ok)


@dataclass(frozen=True, slots=True)
class VqdBaseline:
    """What a camera's picture usually looks like, learned from its healthy bursts."""

    sharpness: float
    samples: int = 1

    def __post_init__(self) -> None:
        if not math.isfinite(self.sharpness) or self.sharpness < 0 or self.samples < 1:
            raise ValueError("VqdBaseline needs a finite sharpness >= 0 and samples >= 1")


@dataclass(frozen=True, slots=True, eq=False)
class SceneReference:
    """A small blurred grey thumbnail of the scene a camera is meant to show."""

    thumbnail: GreyFrame = field(repr=False)

    def __post_init__(self) -> None:
        if self.thumbnail.ndim != 2 or self.thumbnail.dtype != np.uint8:
            raise ValueError("SceneReference.thumbnail must be a 2-D uint8 array")
