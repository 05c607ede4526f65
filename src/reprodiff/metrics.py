"""Reproducibility (RP) and generalization (GL) scores, with their descriptors and thresholds.

* **RP score** of models A and B: the fraction of *seed-paired* samples (same initial noise) whose
  descriptor similarity exceeds a threshold (Zhang et al. 2024).
* **GL score** of a model: the fraction of its samples whose *highest* similarity to any training
  image stays at or below a threshold (novel samples).

Descriptors map images to unit vectors so similarity is a cosine. Both scores ask the same
question, "are these two images the same image?", and answer it with **one rule**
(:func:`same_image_rule`): the paper's fixed 0.6 for SSCD (Pizzi et al. 2022); for the offline pixel
descriptor, for which a fixed 0.6 is meaningless (unrelated 8x8 digits already correlate ~0.5), a
threshold calibrated on real data: two images are the same when they are more similar than 99% of
held-out real images are to their *nearest* training image. Every :class:`Score` states its rule,
and proportions carry exact-coverage Wilson intervals (:func:`wilson_ci`).
"""

from __future__ import annotations

import functools
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import torch

from . import checks, runtime
from .data import ResourceUnavailableError, download_file
from .sampling import Samples

__all__ = [
    "Descriptor", "PixelDescriptor", "SSCDDescriptor", "DescriptorUnavailableError", "get_descriptor",
    "Score", "Scores", "paired_similarity", "null_similarity", "calibrate_threshold", "rp_score", "gl_score",
    "nearest_neighbors", "gu_memorization", "paired_error", "bootstrap_ci", "SSCD_THRESHOLD",
    "RPMatrix", "rp_matrix", "pooled_null_threshold", "error_matrix", "resolve_threshold",
    "SameImageRule", "same_image_rule", "wilson_ci", "survival", "RPComparison", "compare_rp",
    "SeedSpread", "seed_spread", "QualityClassifier",
    "psnr", "within_label_similarity", "in_classes",
]

#: the paper's threshold on SSCD cosine similarity, for both RP and GL
SSCD_THRESHOLD = 0.6

#: how far past [-1, 1] a similarity threshold may lie: a threshold calibrated on float32 cosines of
#: identical images (a memorizing model's null) can exceed 1 by a few rounding units
_COSINE_ROUNDING = 1e-4


def _check_threshold(value, name: str = "threshold") -> None:
    """ValueError unless ``value`` is a finite cosine-similarity threshold in [-1, 1] (up to float rounding)."""
    try:
        checks.finite_number(name, value, low=-1 - _COSINE_ROUNDING, high=1 + _COSINE_ROUNDING)
    except ValueError:
        raise ValueError(f"{name} is a cosine-similarity threshold: it must be a finite number in [-1, 1], "
                         f"got {value!r}") from None


class DescriptorUnavailableError(ResourceUnavailableError):
    """A descriptor's weights could not be obtained (typically: offline)."""


class Descriptor(Protocol):
    """Maps images to unit vectors. ``fixed_threshold`` (optional; absent means ``None``) is a similarity
    threshold that comes with the descriptor itself, e.g. the paper's 0.6 for SSCD; a descriptor
    without one has its thresholds calibrated from data (:func:`resolve_threshold`)."""

    name: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images in [-1, 1] -> ``(B, F)`` float32 unit vectors."""


class PixelDescriptor:
    """Each image flattened, centred and normalised: cosine similarity = pixel correlation."""

    name = "pixel"
    #: no threshold of its own: unrelated digits already correlate ~0.5, so thresholds are calibrated
    fixed_threshold = None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        f = images.reshape(images.shape[0], -1).float()
        f = f - f.mean(1, keepdim=True)
        return f / f.norm(dim=1, keepdim=True).clamp_min(1e-8)


SSCD_URL = "https://dl.fbaipublicfiles.com/sscd-copy-detection/sscd_disc_large.torchscript.pt"


class SSCDDescriptor:
    """SSCD copy-detection descriptor (``sscd_disc_large`` TorchScript), as in the paper.

    Images are mapped to [0, 1], gray images repeated to RGB, resized to 320x320 and
    ImageNet-normalised. The weights are downloaded once into the cache; offline the constructor
    raises :class:`DescriptorUnavailableError` before any work is done.
    """

    name = "sscd"
    fixed_threshold = SSCD_THRESHOLD
    fixed_threshold_rule = "the paper's SSCD threshold"

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 64, path: str | Path | None = None) -> None:
        if path:
            self.path = Path(path)
        else:
            from .cache import cache_root

            self.path = cache_root() / "sscd" / "sscd_disc_large.torchscript.pt"
        if not self.path.exists():
            created = [d for d in (self.path.parent, *self.path.parent.parents) if not d.exists()]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.part")
            try:
                download_file(SSCD_URL, tmp)
            except Exception as exc:
                tmp.unlink(missing_ok=True)
                for d in created:  # leave the cache as it was
                    if d.exists() and not any(d.iterdir()):
                        d.rmdir()
                raise DescriptorUnavailableError(
                    f"the SSCD descriptor could not be downloaded from {SSCD_URL} ({type(exc).__name__}: {exc}). "
                    f"It needs internet once (e.g. on Colab); or place the file at {self.path}. "
                    "Offline, use descriptor='pixel' (the cpu profile's calibrated pixel descriptor)."
                ) from exc
            os.replace(tmp, self.path)
        try:
            self.model = torch.jit.load(str(self.path), map_location=device).eval()
        except Exception as exc:
            raise DescriptorUnavailableError(f"the SSCD weights at {self.path} are unreadable ({exc}); delete the file "
                                             "to download them again") from exc
        self.device, self.batch_size = device, batch_size

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images in [-1, 1], C = 1 or 3 -> ``(B, F)`` float32 unit vectors on CPU."""
        mean = torch.tensor([0.485, 0.456, 0.406], device=self.device).reshape(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=self.device).reshape(1, 3, 1, 1)
        out = []
        for chunk in images.split(self.batch_size):
            x = (chunk.to(self.device).float() + 1) / 2
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            x = torch.nn.functional.interpolate(x, size=(320, 320), mode="bilinear", align_corners=False)
            f = self.model((x - mean) / std)
            out.append(torch.nn.functional.normalize(f, dim=1).cpu())
        return torch.cat(out)


@functools.lru_cache(maxsize=None)
def _sscd(device: str) -> "SSCDDescriptor":
    # one TorchScript load per device, however many scores name "sscd"
    return SSCDDescriptor(device)


def get_descriptor(name: str | Descriptor, device: str | torch.device | None = None) -> Descriptor:
    """``"pixel"`` (offline default) or ``"sscd"`` (downloads its weights); a descriptor passes through.

    ``device``: where SSCD embeds; ``None`` (default): the runtime's default device
    (:func:`reprodiff.runtime.default_device`, the GPU when there is one), since the images it embeds
    come back from the samplers on the CPU. The pixel descriptor computes on the images' device."""
    if not isinstance(name, str):
        return name
    if name == "pixel":
        return PixelDescriptor()
    if name == "sscd":
        return _sscd(str(runtime.default_device() if device is None else torch.device(device)))
    raise ValueError(f"unknown descriptor {name!r}; choose 'pixel' or 'sscd'")


# ----------------------------------------------------------------------------- results


@dataclass
class Score:
    """A score with its uncertainty and a statement of how it was measured (printed by ``str``)."""

    name: str
    value: float
    ci: tuple[float, float]
    n: int
    threshold: float
    threshold_rule: str
    descriptor: str
    details: str = ""
    similarities: torch.Tensor | None = field(default=None, repr=False)
    #: GL only: index of each sample's nearest training image (same order as ``similarities``)
    nearest: torch.Tensor | None = field(default=None, repr=False)

    def __str__(self) -> str:
        lo, hi = self.ci
        parts = [f"{self.name} = {self.value:.3f} (95% CI {lo:.3f}-{hi:.3f})", self.details,
                 f"{self.descriptor} descriptor", f"threshold {self.threshold:.3f} ({self.threshold_rule})"]
        return " | ".join(p for p in parts if p)

    def interval(self) -> str:
        """The value and its 95% interval in two decimals, e.g. ``0.68 [0.64, 0.72]`` (for tables)."""
        return f"{self.value:.2f} [{self.ci[0]:.2f}, {self.ci[1]:.2f}]"

    def _repr_pretty_(self, p, cycle) -> None:  # IPython
        p.text(str(self))

    def __float__(self) -> float:
        return float(self.value)


class Scores(list):
    """A list of :class:`Score` that one curve or table row holds (GL per N, RP per guidance scale, ...),
    with the columns a plot and a table read off it."""

    @property
    def values(self) -> list[float]:
        return [s.value for s in self]

    @property
    def lower(self) -> list[float]:
        """The lower ends of the 95% intervals."""
        return [s.ci[0] for s in self]

    @property
    def upper(self) -> list[float]:
        """The upper ends of the 95% intervals."""
        return [s.ci[1] for s in self]

    def band(self) -> tuple[list[float], list[float], list[float]]:
        """``(values, lower, upper)``, what :func:`reprodiff.plots.curve_with_band` draws."""
        return self.values, self.lower, self.upper

    def span(self) -> tuple[float, float]:
        """The smallest and the largest value."""
        values = self.values
        return min(values), max(values)

    def mean(self) -> float:
        return sum(s.value for s in self) / len(self)


def bootstrap_ci(hits: torch.Tensor, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                 statistic: str = "mean") -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (or, with ``statistic="median"``, the median) of
    ``hits`` (a 1-d tensor of 0/1 or reals). The median of an even count is the lower middle value,
    as :meth:`torch.Tensor.median` takes it."""
    if statistic not in ("mean", "median"):
        raise ValueError(f"statistic must be 'mean' or 'median', got {statistic!r}")
    checks.finite_number("level", level, low=0, high=1, low_inclusive=False, high_inclusive=False)
    hits = hits.double().reshape(-1)
    if hits.numel() == 0:
        return (math.nan, math.nan)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(hits.numel(), (n_boot, hits.numel()), generator=g)
    stats = hits[idx].mean(1) if statistic == "mean" else hits[idx].median(1).values
    a = (1 - level) / 2
    q = torch.quantile(stats, torch.tensor([a, 1 - a], dtype=torch.float64))
    return (float(q[0]), float(q[1]))


def wilson_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion of ``k`` hits in ``n`` trials (Wilson 1927).

    Unlike :func:`bootstrap_ci`, which collapses to ``[0, 0]`` when no sample is a hit (every
    resample is all zeros too), it stays honest at the edges: 0 of 256 gives ``[0, 0.0148]``. With
    ``z`` the normal quantile of ``(1 + level) / 2`` and ``p = k / n``::

        centre = (p + z^2 / 2n) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)

    Returns ``(lower, upper)`` within [0, 1]; ``(nan, nan)`` for ``n = 0``.
    """
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise ValueError(f"k and n must be integer counts, got k={k!r}, n={n!r}")
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    checks.finite_number("level", level, low=0, high=1, low_inclusive=False, high_inclusive=False)
    if n == 0:
        return (math.nan, math.nan)
    z = statistics.NormalDist().inv_cdf((1 + level) / 2)
    p, z2 = k / n, z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # at k = 0 (k = n) the lower (upper) end is exactly 0 (1); clamp away the rounding
    return (0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half))


def _proportion_ci(hits: torch.Tensor) -> tuple[float, float]:
    return wilson_ci(int(hits.sum().item()), hits.numel())


@dataclass(frozen=True)
class SameImageRule:
    """The book's one answer to "are these two images the same image?": similarity above ``threshold``.

    RP counts a seed pair as reproduced, and GL counts a sample as a copy of its nearest training
    image, by this same rule. ``rule`` states how the threshold was obtained; ``dataset`` names the
    data it was calibrated on (one rule per descriptor and dataset).
    """

    threshold: float
    rule: str
    descriptor: str
    dataset: str = ""
    #: a calibrated threshold's 95% bootstrap interval (the held-out images resampled); ``None`` when
    #: the threshold is fixed (SSCD's 0.6) or given
    interval: tuple[float, float] | None = None

    def __str__(self) -> str:
        where = f", {self.dataset}" if self.dataset else ""
        spread = f"; 95% bootstrap interval {self.interval[0]:.3f}-{self.interval[1]:.3f}" if self.interval else ""
        return f"same-image threshold [{self.descriptor}{where}]: {self.threshold:.3f} ({self.rule}{spread})"

    def _ends(self) -> torch.Tensor:
        lo, hi = self.interval or (self.threshold, self.threshold)
        return torch.linspace(lo, hi, 21, dtype=torch.float64)

    def rp_range(self, similarities: torch.Tensor) -> tuple[float, float]:
        """RP of these seed-pair similarities at the upper and at the lower end of the threshold's
        interval: ``(lowest, highest)``, the RP a reader could have got from another draw of the
        held-out images (equal when the threshold is fixed)."""
        rp = survival(similarities, self._ends())
        return float(rp.min()), float(rp.max())

    def ordering(self, a: torch.Tensor, b: torch.Tensor) -> str:
        """Whether "RP of ``a`` is above (below) RP of ``b``" holds at every threshold of the
        interval (21 thresholds from its lower to its upper end): ``"higher"`` or ``"lower"``, else
        ``"at the threshold only"`` (the ordering flips, or ties, somewhere inside the interval)."""
        diff = survival(a, self._ends()) - survival(b, self._ends())
        if bool((diff > 0).all()):
            return "higher"
        if bool((diff < 0).all()):
            return "lower"
        return "at the threshold only"


def same_image_rule(train_images: torch.Tensor, heldout: torch.Tensor, descriptor: str | Descriptor = "pixel",
                    quantile: float = 0.99, dataset: str = "") -> SameImageRule:
    """Calibrate the one "same image" threshold of a descriptor on real data.

    A descriptor with a threshold of its own (SSCD: the paper's 0.6) keeps it. Otherwise the
    threshold is the ``quantile`` of the similarity between each ``heldout`` real image and its
    *nearest* image in ``train_images``: two images count as the same only when they are more alike
    than 99% of genuinely different real images ever come to one another (a held-out digit and its
    closest training digit are the most similar *distinct* pair the data offers). The quantile is
    high so that a linear reference such as the Gaussian denoiser, whose samples are blurred
    versions of what a network draws, does not pass as "the same image"; it stays below 1 so that
    one outlier pair of near-duplicate real images does not set it.

    ValueError when ``quantile`` is outside (0, 1), the image sets are empty, differ in shape or
    hold NaN or inf.
    """
    desc = get_descriptor(descriptor)
    checks.finite_number("quantile", quantile, low=0, high=1, low_inclusive=False, high_inclusive=False)
    nearest = None

    def calibrate() -> tuple[float, str]:
        nonlocal nearest
        if len(train_images) == 0 or len(heldout) == 0:
            raise ValueError("the same-image rule needs training images and held-out images (got an empty set)")
        if tuple(train_images.shape[1:]) != tuple(heldout.shape[1:]):
            raise ValueError(f"training images are {tuple(train_images.shape[1:])}, held-out images "
                             f"{tuple(heldout.shape[1:])}: calibrate on one image shape")
        checks.finite_images("train_images", train_images)
        checks.finite_images("heldout", heldout)
        nn = nearest = nearest_neighbors(desc(heldout), desc(train_images))[0][:, 0]
        return (calibrate_threshold(nn, quantile),
                f"{100 * quantile:g}th percentile of {len(heldout):,} held-out real images' similarity to their "
                f"nearest of {len(train_images):,} training images")

    threshold, rule = resolve_threshold(desc, None, calibrate)
    interval = None if nearest is None else quantile_interval(nearest, quantile)
    return SameImageRule(float(threshold), rule, desc.name, dataset, interval)


def quantile_interval(values: torch.Tensor, quantile: float, n_boot: int = 2000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the ``quantile`` of ``values`` (resampled with replacement,
    ``n_boot`` times, from a fixed seed): how far a calibrated threshold, an order statistic of a few
    hundred numbers, could move with another draw of them."""
    v = values.double().reshape(-1)
    if v.numel() == 0:
        raise ValueError("no values to bootstrap")
    g = torch.Generator().manual_seed(seed)
    stats = torch.quantile(v[torch.randint(v.numel(), (n_boot, v.numel()), generator=g)], quantile, dim=1)
    a = (1 - level) / 2
    q = torch.quantile(stats, torch.tensor([a, 1 - a], dtype=torch.float64))
    return (float(q[0]), float(q[1]))


def _unpack(threshold: "float | SameImageRule | None", rule: str | None, desc: Descriptor) -> tuple[float | None, str | None]:
    """The threshold number and its rule from what a score was given (ValueError unless a given
    threshold is a finite cosine in [-1, 1])."""
    if isinstance(threshold, SameImageRule):
        if threshold.descriptor != desc.name:
            raise ValueError(f"the same-image rule was calibrated for the {threshold.descriptor} descriptor, "
                             f"the score uses {desc.name}")
        _check_threshold(threshold.threshold, "the same-image rule's threshold")
        return threshold.threshold, threshold.rule
    if threshold is not None:
        _check_threshold(threshold)
    return threshold, rule


def survival(similarities: torch.Tensor, thresholds: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Fraction of ``similarities`` strictly above each threshold: the RP score as a function of
    its threshold (a threshold-free view; ``survival(s, [t])`` is RP at ``t``).

    ValueError when a similarity or a threshold is NaN or inf."""
    s = similarities.double().reshape(-1)
    t = torch.as_tensor(thresholds, dtype=torch.float64).reshape(-1)
    if s.numel() == 0:
        raise ValueError("no similarities to summarise")
    for name, values in (("similarities", s), ("thresholds", t)):
        bad = checks.nonfinite_rows(values)
        if bad is not None:
            raise ValueError(f"survival needs finite {name}: {int(bad.sum())} of {values.numel()} are NaN or inf "
                             f"(e.g. {values[bad][0].item()})")
    return (s[None, :] > t[:, None]).double().mean(1)


def _members(group: "torch.Tensor | Sequence[torch.Tensor]", side: str) -> list[torch.Tensor]:
    members = [group] if isinstance(group, torch.Tensor) else list(group)
    if not members or any(m.numel() == 0 for m in members):
        raise ValueError(f"compare_rp needs seed-pair similarities on side {side!r} (got an empty set)")
    return [m.double().reshape(-1) for m in members]


@dataclass(frozen=True)
class RPComparison:
    """RP of two sets of seed-pair similarities (or two groups of sets: every model pair of a kind)
    read across a same-image rule's threshold interval, with the median similarity beside.

    Per side: ``rp`` the (lowest, highest) RP of its members at the rule's threshold; ``rp_range``
    the same over every threshold of the interval; ``median`` (lowest member's median, highest
    member's median, lowest lower end, highest upper end of their bootstrap 95% intervals).
    ``verdict``: ``"higher"`` (``"lower"``) when every member of ``a`` has a higher (lower) RP than
    every member of ``b`` at every threshold of the interval; ``"higher at the threshold only"``
    (``"lower ..."``) when that holds at the rule's threshold but not across the interval; ``"tie"``
    when the two sides overlap or tie at the threshold itself. ``median_verdict``: ``"higher"`` or
    ``"lower"`` when the sides' median intervals lie apart, else ``"overlap"``."""

    names: tuple[str, str]
    rp: tuple[tuple[float, float], tuple[float, float]]
    rp_range: tuple[tuple[float, float], tuple[float, float]]
    median: tuple[tuple[float, float, float, float], tuple[float, float, float, float]]
    verdict: str
    median_verdict: str

    @staticmethod
    def _span(lo: float, hi: float, digits: int = 2) -> str:
        return f"{lo:.{digits}f}" if f"{lo:.{digits}f}" == f"{hi:.{digits}f}" else f"{lo:.{digits}f}-{hi:.{digits}f}"

    @classmethod
    def _sides(cls, spans, digits: int, ordered: bool) -> tuple[str, int]:
        """``("a vs b", digits)``; where the two sides are ordered but print alike, with up to four more
        digits."""
        for d in range(digits, digits + 5):
            a, b = (cls._span(*span[:2], d) + (f" [{span[2]:.{d}f}, {span[3]:.{d}f}]" if len(span) == 4 else "")
                    for span in spans)
            if a != b or not ordered:
                break
        return f"{a} vs {b}", d

    def __str__(self) -> str:
        a, b = self.names
        rp, digits = self._sides(self.rp, 2, self.verdict != "tie")
        across, _ = self._sides(self.rp_range, digits, False)
        med, _ = self._sides(self.median, 3, self.median_verdict != "overlap")
        verdict = {"higher": "higher at every threshold of the interval",
                   "lower": "lower at every threshold of the interval",
                   "tie": "a tie at the threshold"}.get(self.verdict, self.verdict)
        medians = "intervals overlap" if self.median_verdict == "overlap" else f"{self.median_verdict}, intervals apart"
        return (f"{a} vs {b}: RP {rp} ({across} across the threshold's interval): {verdict}\n"
                f"    median similarity {med} ({medians})")


def compare_rp(rule: SameImageRule, a: "torch.Tensor | Sequence[torch.Tensor]",
               b: "torch.Tensor | Sequence[torch.Tensor]", names: tuple[str, str] = ("a", "b"),
               n_boot: int = 2000, seed: int = 0) -> RPComparison:
    """Is RP of ``a`` above RP of ``b``, whatever threshold inside ``rule``'s bootstrap interval the
    held-out images had given? ``a`` and ``b``: the seed-pair similarities of one model pair
    (:func:`paired_similarity`, a :class:`Score`'s ``similarities``) or a list of them (a group of
    pairs, e.g. every pair of one kind: each member must then be above each member of the other side).
    The median similarity of every member, with a bootstrap 95% interval (:func:`bootstrap_ci`), comes
    beside: the threshold-free view of the same comparison. See :class:`RPComparison`.

    ValueError when a side is empty or holds an empty set of similarities."""
    sides = (_members(a, names[0]), _members(b, names[1]))
    ends = rule._ends()
    at = [torch.stack([survival(m, [rule.threshold])[0] for m in side]) for side in sides]
    across = [torch.stack([survival(m, ends) for m in side]) for side in sides]  # (members, thresholds)

    def order(x: torch.Tensor, y: torch.Tensor) -> str | None:  # x, y: (members, thresholds)
        if bool((x.min(0).values > y.max(0).values).all()):
            return "higher"
        if bool((x.max(0).values < y.min(0).values).all()):
            return "lower"
        return None

    verdict = order(*across)
    if verdict is None:
        at_threshold = order(at[0][:, None], at[1][:, None])
        verdict = "tie" if at_threshold is None else f"{at_threshold} at the threshold only"
    medians = []
    for side in sides:
        cis = [bootstrap_ci(m, n_boot=n_boot, seed=seed, statistic="median") for m in side]
        values = [float(m.median()) for m in side]
        medians.append((min(values), max(values), min(c[0] for c in cis), max(c[1] for c in cis)))
    if medians[0][2] > medians[1][3]:
        median_verdict = "higher"
    elif medians[0][3] < medians[1][2]:
        median_verdict = "lower"
    else:
        median_verdict = "overlap"
    return RPComparison(tuple(names), tuple((float(r.min()), float(r.max())) for r in at),
                        tuple((float(r.min()), float(r.max())) for r in across), tuple(medians), verdict,
                        median_verdict)


@dataclass
class SeedSpread:
    """One score measured for several independently *trained* model pairs (training seeds)."""

    scores: list[Score]

    @property
    def values(self) -> list[float]:
        return [s.value for s in self.scores]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    def __str__(self) -> str:
        v = self.values
        widest = max(s.ci[1] - s.ci[0] for s in self.scores)
        return (f"{self.scores[0].name} over {len(v)} training-seed pairs: mean {self.mean:.2f}, range "
                f"{min(v):.2f}-{max(v):.2f} (each pair's 95% sampling interval at most {widest:.2f} wide)")


def seed_spread(scores: Sequence[Score]) -> SeedSpread:
    """Collect one score per training-seed pair (ValueError when empty or thresholds differ)."""
    scores = list(scores)
    if not scores:
        raise ValueError("seed_spread needs at least one score")
    if len({(s.threshold, s.descriptor) for s in scores}) > 1:
        raise ValueError("scores in one training-seed spread must share the descriptor and threshold")
    return SeedSpread(scores)


class QualityClassifier:
    """A small classifier of real images (sklearn MLP on pixels) whose confidence rates samples.

    GL says a sample is *novel*; it does not say the sample is a good image: a blurred average of
    digits is novel too. The mean top-class probability this classifier gives a set of images is a
    sample-quality number with a real-data ceiling (its value on held-out real images).
    """

    #: strong L2 (alpha=1): an unregularised MLP is confidently wrong on blurred or averaged digits
    _SETTINGS = dict(hidden_layer_sizes=(128,), alpha=1.0, max_iter=400)

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> None:
        from sklearn.neural_network import MLPClassifier

        if len(images) != len(labels) or len(torch.unique(labels)) < 2:
            raise ValueError("the quality classifier needs one label per image and at least two classes")
        self.shape = tuple(images.shape[1:])
        self.model = MLPClassifier(**self._SETTINGS, random_state=seed)
        self.model.fit(images.reshape(len(images), -1).double().numpy(), labels.numpy())

    @classmethod
    def fitted(cls, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> "QualityClassifier":
        """The classifier of these images and labels, from the cache (``classifiers/`` under
        :func:`reprodiff.cache.cache_root`) when the same fit was stored before, else fitted and stored.

        The fit is deterministic, so the stored classifier is the one fitting would return; the key
        covers the images, labels, seed, settings and scikit-learn's version. A damaged entry is fitted
        again and replaced; a cache that cannot be written only costs the fit next time."""
        import hashlib
        import pickle
        from importlib.metadata import version

        from .cache import atomic_write_bytes, cache_root

        key = hashlib.sha256()
        for part in (images.contiguous().numpy().tobytes(), labels.contiguous().numpy().tobytes(),
                     f"{tuple(images.shape)}|{seed}|{cls._SETTINGS}|{version('scikit-learn')}".encode()):
            key.update(part)
        path = cache_root() / "classifiers" / f"{key.hexdigest()[:20]}.pkl"
        if path.is_file():
            try:
                clf = pickle.loads(path.read_bytes())
                if isinstance(clf, cls):
                    return clf
            except Exception:  # damaged: fitted again below
                pass
        clf = cls(images, labels, seed)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, pickle.dumps(clf))
        except OSError:
            pass
        return clf

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[1:]) != self.shape:
            raise ValueError(f"the classifier was trained on {self.shape} images, got {tuple(images.shape[1:])}")
        return torch.from_numpy(self.model.predict_proba(images.reshape(len(images), -1).double().numpy()))

    def confidence(self, images: torch.Tensor) -> float:
        """Mean top-class probability over ``images``."""
        return float(self.probabilities(images).max(1).values.mean())

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        return float((self.probabilities(images).argmax(1) == labels).double().mean())


def _seed_range(seeds: torch.Tensor) -> str:
    s = sorted(seeds.tolist())
    if s == list(range(s[0], s[-1] + 1)):
        return f"seeds {s[0]}-{s[-1]}"
    return f"{len(s)} seeds"


def _common_seeds(a: Samples, b: Samples) -> torch.Tensor:
    sa, sb = set(a.seeds.tolist()), set(b.seeds.tolist())
    if sa != sb:
        only_a, only_b = sorted(sa - sb)[:5], sorted(sb - sa)[:5]
        raise ValueError(
            f"samples {a.name!r} and {b.name!r} do not share the same seeds (only in the first: {only_a}..., "
            f"only in the second: {only_b}...); RP pairs samples by seed id"
        )
    return torch.tensor(sorted(sa), dtype=torch.int64)


def resolve_threshold(desc: Descriptor, threshold: float | None, calibrate: Callable[[], tuple[float, str]],
                      rule: str | None = None) -> tuple[float, str]:
    """The one rule every score follows to pick its similarity threshold, with its statement.

    * ``threshold`` given: ``(threshold, rule or "given")``;
    * otherwise, a descriptor with a ``fixed_threshold`` (SSCD: the paper's 0.6) uses it, stated by
      its ``fixed_threshold_rule``;
    * otherwise ``calibrate()`` is called (only then: calibrating costs descriptor evaluations) and
      must return ``(threshold, rule)``.

    A user-supplied descriptor without a ``fixed_threshold`` attribute counts as having none.
    """
    if threshold is not None:
        return threshold, rule or "given"
    fixed = getattr(desc, "fixed_threshold", None)
    if fixed is not None:
        return fixed, getattr(desc, "fixed_threshold_rule", f"the {desc.name} descriptor's fixed threshold")
    return calibrate()


def _check_finite(s: Samples, role: str) -> None:
    """ValueError when images of ``s`` hold NaN or inf (they would silently score as 'not the same'
    in RP, turn a calibrated threshold into nan, and count as novel/copies in GL)."""
    bad = checks.nonfinite_rows(s.images)
    if bad is not None:
        seeds = s.seeds[bad].tolist()
        raise ValueError(f"{int(bad.sum())} of {len(s)} samples in {role} {s.name!r} have non-finite pixels "
                         f"(NaN or inf), e.g. seeds {seeds[:5]}; a diverged sampler or model cannot be scored")


def _check_pair(a: Samples, b: Samples) -> torch.Tensor:
    """Checks shared by every seed-paired comparison; returns the common seeds (sorted)."""
    seeds = _common_seeds(a, b)
    if len(seeds) == 0:
        raise ValueError(f"samples {a.name!r} and {b.name!r} are empty: there are no seed pairs to compare")
    if a.images.shape[1:] != b.images.shape[1:]:
        raise ValueError(f"{a.name or 'A'} has {tuple(a.images.shape[1:])} images, {b.name or 'B'} has "
                         f"{tuple(b.images.shape[1:])}: seed-paired similarities compare images of one shape")
    _check_finite(a, "the first set")
    _check_finite(b, "the second set")
    return seeds


def _features(s: Samples, desc: Descriptor) -> torch.Tensor:
    """Descriptors of ``s`` in sorted-seed order, computed once per sample set and descriptor.

    RP matrices and calibrations compare each sample set with many others; SSCD features at
    320x320 are far too costly to recompute for every pair.
    """
    if desc.name not in s.features:
        s.features[desc.name] = desc(s.by_seed(torch.sort(s.seeds).values))
    return s.features[desc.name]


def _paired(a: Samples, b: Samples, desc: Descriptor) -> torch.Tensor:
    return (_features(a, desc) * _features(b, desc)).sum(1)


def _null(a: Samples, b: Samples, desc: Descriptor) -> torch.Tensor:
    sims = _features(a, desc) @ _features(b, desc).T
    off = ~torch.eye(sims.shape[0], dtype=torch.bool)
    return sims[off]


def paired_similarity(a: Samples, b: Samples, descriptor: str | Descriptor = "pixel") -> torch.Tensor:
    """Cosine similarity of each seed's pair, ``(n,)`` in sorted-seed order (pairs by seed id).

    ValueError when the seed sets differ, the image shapes differ or an image is not finite.
    """
    desc = get_descriptor(descriptor)
    _check_pair(a, b)
    return _paired(a, b, desc)


def null_similarity(a: Samples, b: Samples, descriptor: str | Descriptor = "pixel") -> torch.Tensor:
    """Similarities of every *different-seed* pair (i from A, j from B, i != j): the null distribution,
    ``(n * (n - 1),)`` for ``n`` common seeds."""
    desc = get_descriptor(descriptor)
    _check_pair(a, b)
    return _null(a, b, desc)


def within_label_similarity(samples: Samples, descriptor: str | Descriptor = "pixel") -> float:
    """Mean similarity of different-seed samples that share a label, averaged over labels: how alike
    one class's samples are (1 would mean one image per class). Lower is more diverse; compare it with
    the same number for real images of each class."""
    if samples.labels is None:
        raise ValueError(f"samples {samples.name!r} carry no labels")
    desc = get_descriptor(descriptor)
    _check_finite(samples, "samples")
    feats = _features(samples, desc)
    labels = samples.labels[torch.argsort(samples.seeds)]
    means = []
    for c in labels.unique():
        f = feats[labels == c]
        if len(f) > 1:
            sims = f @ f.T
            means.append(sims[~torch.eye(len(f), dtype=torch.bool)].mean())
    if not means:
        raise ValueError("within_label_similarity needs at least two samples of one label")
    return float(torch.stack(means).mean())


def calibrate_threshold(null: torch.Tensor, quantile: float = 0.99) -> float:
    """The ``quantile`` of a null distribution: a pair above it is rarer than ``1 - quantile`` by chance."""
    if null.numel() == 0:
        raise ValueError("cannot calibrate a threshold from an empty null distribution")
    checks.finite_number("quantile", quantile, low=0, high=1)
    return float(torch.quantile(null.double(), quantile))


def rp_score(a: Samples, b: Samples, descriptor: str | Descriptor = "pixel",
             threshold: float | SameImageRule | None = None, null_quantile: float = 0.99,
             threshold_rule: str | None = None) -> Score:
    """Reproducibility score between two sets of samples, paired by seed.

    Args:
        threshold: a similarity above it counts as "the same image": the book's
            :class:`SameImageRule` (what every chapter passes), or a number. ``None``: 0.6 for SSCD
            (the paper's), and for the pixel descriptor the ``null_quantile`` of this pair's
            different-seed similarities (a weaker rule: it tells "related" from "unrelated").
        threshold_rule: how a given threshold was obtained, for the printed statement.

    ValueError when the seed sets or image shapes differ, an image is not finite, the threshold is
    not a finite number in [-1, 1] or ``null_quantile`` not one in [0, 1], or the threshold must be
    calibrated from fewer than 2 seed pairs (there is no different-seed pair then).
    """
    desc = get_descriptor(descriptor)
    threshold, threshold_rule = _unpack(threshold, threshold_rule, desc)
    checks.finite_number("null_quantile", null_quantile, low=0, high=1)
    seeds = _check_pair(a, b)
    sims = _paired(a, b, desc)

    def calibrate() -> tuple[float, str]:
        if len(seeds) < 2:
            raise ValueError(f"rp_score calibrates its threshold from different-seed pairs, which needs at least "
                             f"2 seeds (got {len(seeds)}); pass threshold= for fewer")
        null = _null(a, b, desc)
        return (calibrate_threshold(null, null_quantile),
                f"{100 * null_quantile:g}th percentile of {null.numel():,} different-seed pairs")

    threshold, threshold_rule = resolve_threshold(desc, threshold, calibrate, threshold_rule)
    hits = (sims > threshold).double()
    sampler = a.sampler if a.sampler == b.sampler else f"{a.sampler} vs {b.sampler}"
    return Score("RP", float(hits.mean()), _proportion_ci(hits), len(sims), float(threshold),
                 threshold_rule, desc.name,
                 f"{a.name or 'A'} vs {b.name or 'B'}, {len(sims)} seed pairs ({_seed_range(seeds)}), {sampler}",
                 sims)


def nearest_neighbors(query: torch.Tensor, reference: torch.Tensor, k: int = 1,
                      chunk_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` cosine similarities and indices of unit vectors ``query (B, F)`` in ``reference (N, F)``.

    Chunked over the reference so memory stays ``O(B * chunk)``. Returns ``(values, indices)``,
    each ``(B, k)``, most similar first.
    """
    best_v = torch.full((query.shape[0], k), -math.inf)
    best_i = torch.zeros((query.shape[0], k), dtype=torch.int64)
    for start in range(0, reference.shape[0], chunk_size):
        sims = query @ reference[start:start + chunk_size].T
        v, i = sims.topk(min(k, sims.shape[1]), dim=1)
        allv, alli = torch.cat([best_v, v], 1), torch.cat([best_i, i + start], 1)
        best_v, order = allv.topk(k, dim=1)
        best_i = alli.gather(1, order)
    return best_v, best_i


def gl_score(samples: Samples, train_images: torch.Tensor, descriptor: str | Descriptor = "pixel",
             threshold: float | SameImageRule | None = None, train_features: torch.Tensor | None = None) -> Score:
    """Generalization score: fraction of samples whose nearest training image is *not* a copy.

    A sample is a copy when its highest similarity to any training image exceeds ``threshold``:
    the book's :class:`SameImageRule` (the same rule RP uses, :func:`same_image_rule`), or a number.
    ``None`` only for a descriptor with a threshold of its own (SSCD: 0.6).

    ``train_features``: ``descriptor(train_images)`` when the caller already has it (several
    models scored against one training set need it once). The returned score's ``similarities``
    are each sample's nearest-neighbour similarity, ``nearest`` that neighbour's index.

    ValueError when a sample, a training image (or, when given, a training feature) holds NaN or
    inf; when the training images are not shaped like the samples (``(N, C, H, W)`` against
    ``(B, C, H, W)``); when the threshold is not a finite number in [-1, 1], or missing for a
    descriptor that needs one calibrated.
    """
    desc = get_descriptor(descriptor)
    threshold, given_rule = _unpack(threshold, None, desc)
    _check_finite(samples, "the sample set")
    shape = tuple(samples.images.shape[1:])
    if tuple(train_images.shape[1:]) != shape:
        raise ValueError(f"training images are {tuple(train_images.shape[1:])} each, the samples {shape}: GL "
                         "compares images of one shape")
    # a NaN training image would rank first for every sample (topk puts NaN highest): all "copies"
    if train_features is None:
        checks.finite_images("train_images", train_images)
    else:
        checks.finite_images("train_features", train_features)
    ref = desc(train_images) if train_features is None else train_features
    nn_sim, nn_idx = (t[:, 0] for t in nearest_neighbors(desc(samples.images), ref))

    def calibrate() -> tuple[float, str]:
        raise ValueError(f"the {desc.name} descriptor needs a calibrated GL threshold: pass threshold= (the "
                         "book's rule, same_image_rule(train_images, heldout), or a number)")

    threshold, rule = resolve_threshold(desc, threshold, calibrate, given_rule)
    novel = (nn_sim <= threshold).double()
    return Score("GL", float(novel.mean()), _proportion_ci(novel), len(novel), float(threshold), rule, desc.name,
                 f"{samples.name or 'samples'}: {len(novel)} samples ({_seed_range(samples.seeds)}) vs "
                 f"{train_images.shape[0]} training images, {samples.sampler}", nn_sim, nn_idx)


def psnr(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio of each image against its reference, ``(B,)`` dB, for images in
    [-1, 1] (peak-to-peak 2): ``10 log10(4 / MSE)``; identical images give inf."""
    if images.shape != reference.shape:
        raise ValueError(f"PSNR compares images of one shape, got {tuple(images.shape)} and {tuple(reference.shape)}")
    checks.finite_images("images", images)
    checks.finite_images("reference", reference)
    mse = ((images.double() - reference.double()) ** 2).reshape(len(images), -1).mean(1)
    return 10 * torch.log10(4 / mse)


def gu_memorization(images: torch.Tensor, train_images: torch.Tensor, ratio: float = 1 / 3) -> Score:
    """Threshold-free memorization test of Gu et al.: ``||x - NN1|| / ||x - NN2|| < ratio`` (pixel L2).

    Returns the memorized fraction (needs >= 2 training images).
    """
    if train_images.shape[0] < 2:
        raise ValueError("the nearest/second-nearest ratio needs at least 2 training images")
    checks.finite_number("ratio", ratio, low=0, low_inclusive=False)
    checks.finite_images("images", images)
    checks.finite_images("train_images", train_images)
    q = images.reshape(images.shape[0], -1).double()
    r = train_images.reshape(train_images.shape[0], -1).double()
    d = torch.cdist(q, r)
    two = d.topk(2, dim=1, largest=False).values
    mem = (two[:, 0] / two[:, 1].clamp_min(1e-12) < ratio).double()
    return Score("memorized", float(mem.mean()), _proportion_ci(mem), len(mem), ratio,
                 "nearest / second-nearest L2 distance (Gu et al.)", "pixel-L2",
                 f"{len(mem)} samples vs {r.shape[0]} training images", two[:, 0] / two[:, 1].clamp_min(1e-12))


def paired_error(a: Samples, b: Samples, kind: str = "mse") -> torch.Tensor:
    """Per-seed mean squared (``"mse"``) or absolute (``"mae"``) pixel difference, sorted-seed order."""
    seeds = _common_seeds(a, b)
    diff = a.by_seed(seeds) - b.by_seed(seeds)
    if kind == "mse":
        return diff.pow(2).flatten(1).mean(1)
    if kind == "mae":
        return diff.abs().flatten(1).mean(1)
    raise ValueError("kind must be 'mse' or 'mae'")


@dataclass
class RPMatrix:
    """RP between every pair of models under one shared threshold, with Wilson 95% intervals.

    ``values``, ``lower``, ``upper``: ``(M, M)`` float64, diagonal 1 by definition.
    """

    labels: list[str]
    values: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    threshold: float
    threshold_rule: str
    descriptor: str
    n: int

    def off_diagonal(self) -> torch.Tensor:
        m = len(self.labels)
        return self.values[~torch.eye(m, dtype=torch.bool)]

    def __str__(self) -> str:
        off = self.off_diagonal()
        return (f"RP matrix of {len(self.labels)} models: off-diagonal min {off.min():.3f}, mean {off.mean():.3f}, "
                f"max {off.max():.3f} | {self.n} seed pairs each | {self.descriptor} descriptor | "
                f"threshold {self.threshold:.3f} ({self.threshold_rule})")


def pooled_null_threshold(samples: Sequence[Samples], descriptor: str | Descriptor = "pixel",
                          quantile: float = 0.99) -> tuple[float, str]:
    """One threshold for a whole experiment: the ``quantile`` of different-seed similarities pooled
    over every pair of *different* sample sets."""
    desc = get_descriptor(descriptor)
    m = len(samples)
    null = torch.cat([null_similarity(samples[i], samples[j], desc) for i in range(m) for j in range(i + 1, m)])
    return (calibrate_threshold(null, quantile),
            f"{100 * quantile:g}th percentile of {null.numel():,} different-seed pairs across {m} sample sets")


def rp_matrix(samples: Sequence[Samples], descriptor: str | Descriptor = "pixel",
              threshold: float | SameImageRule | None = None, null_quantile: float = 0.99,
              threshold_rule: str = "given") -> RPMatrix:
    """RP between every pair of sample sets with one shared threshold.

    ``threshold=None``: 0.6 for SSCD; for the pixel descriptor :func:`pooled_null_threshold`.
    Every pair is checked as in :func:`rp_score` (seeds, shapes, finite images).
    """
    desc = get_descriptor(descriptor)
    m = len(samples)
    threshold, threshold_rule = _unpack(threshold, threshold_rule, desc)
    threshold, threshold_rule = resolve_threshold(
        desc, threshold, lambda: pooled_null_threshold(samples, desc, null_quantile), threshold_rule)
    vals, lo, hi = (torch.eye(m, dtype=torch.float64) for _ in range(3))
    n = 0
    for i in range(m):
        for j in range(i + 1, m):
            s = rp_score(samples[i], samples[j], desc, threshold=threshold, threshold_rule=threshold_rule)
            vals[i, j] = vals[j, i] = s.value
            lo[i, j] = lo[j, i] = s.ci[0]
            hi[i, j] = hi[j, i] = s.ci[1]
            n = s.n
    return RPMatrix([s.name for s in samples], vals, lo, hi, float(threshold), threshold_rule, desc.name, n)


def error_matrix(samples: Sequence[Samples], kind: str = "mae") -> torch.Tensor:
    """Median per-seed pixel error (``"mae"`` or ``"mse"``) between every pair: the pixel-space twin of RP."""
    m = len(samples)
    mat = torch.zeros(m, m, dtype=torch.float64)
    for i in range(m):
        for j in range(i + 1, m):
            mat[i, j] = mat[j, i] = paired_error(samples[i], samples[j], kind).median()
    return mat


def in_classes(classifier: QualityClassifier, samples: Samples, classes: Sequence[int]) -> torch.Tensor:
    """Whether ``classifier`` puts each sample of ``samples`` (in their stored order) in one of
    ``classes``: ``(B,)`` bool; its mean is the fraction of samples drawn from those classes."""
    return torch.isin(classifier.probabilities(samples.images).argmax(1), torch.as_tensor(list(classes)))
