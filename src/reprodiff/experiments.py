"""The book's policy (one same-image rule, one quality classifier per dataset) and the drivers of the
studies that need no module of their own: architectures and samplers (and a model along its training),
inverse problems, guidance.

Drivers exist so chapters narrate instead of looping: the loops over models, samplers and step
counts live here, tested, and every returned number carries its measurement statement. The regime
sweeps are in :mod:`reprodiff.regimes`, why models agree in :mod:`reprodiff.agreement`, the explorer
in :mod:`reprodiff.explore`, run-time estimates in :mod:`reprodiff.estimate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch

from . import checks
from .denoisers import Guided
from .inverse import gaussian_posterior_mean, measure, pseudo_inverse, reconstruct, residual_norm
from .metrics import (Descriptor, QualityClassifier, RPComparison, RPMatrix, SameImageRule, Score, Scores,
                      compare_rp, get_descriptor, paired_similarity, psnr, rp_matrix, rp_score, same_image_rule,
                      within_label_similarity)
from .profiles import SAME_IMAGE_QUANTILE, reference_split
from .sampling import Samples, generate, network_calls
from .training import training_data

__all__ = ["book_rule", "quality_classifier", "sample_models", "SamplerStudy", "sampler_study", "stochastic_control",
           "InverseStudy", "inverse_study", "dps_sensitivity", "choose_zeta", "GuidanceStudy", "guidance_study",
           "SharedNullControl", "shared_null_control", "TrainingProgress", "training_progress"]


def book_rule(dataset: str, descriptor: str | Descriptor = "pixel", profile: str = "cpu") -> SameImageRule:
    """The book's one same-image rule for ``dataset`` and ``descriptor``: every chapter's RP and GL use it.

    SSCD keeps the paper's 0.6. The pixel descriptor is calibrated on the dataset's reference split
    (:func:`reprodiff.profiles.reference_split`: the largest training set of the book's sweep and its
    held-out images; ``profile`` picks the sweep) at the book's quantile,
    :data:`reprodiff.profiles.SAME_IMAGE_QUANTILE`.
    """
    desc = get_descriptor(descriptor)
    if getattr(desc, "fixed_threshold", None) is not None:  # nothing to load
        return same_image_rule(torch.zeros(0), torch.zeros(0), desc, dataset=dataset)
    train, held = training_data(reference_split(dataset, profile))
    return same_image_rule(train.images, held.images, desc, SAME_IMAGE_QUANTILE, dataset=dataset)


def quality_classifier(dataset: str, profile: str = "cpu") -> tuple[QualityClassifier, float, float]:
    """A :class:`~reprodiff.metrics.QualityClassifier` fitted on ``dataset``'s reference training set
    (:func:`reprodiff.profiles.reference_split` under ``profile``).

    Returns ``(classifier, accuracy, confidence)`` where the last two are measured on the held-out
    images: the real-data ceiling of the confidence a set of samples can reach. At most 5,000
    training images are used (all of the digits; a pixel MLP is a weak judge of CIFAR-10, which its
    printed accuracy makes plain).
    """
    train, held = training_data(reference_split(dataset, profile))
    train = train.select(torch.arange(min(len(train), 5000)))  # enough for a rating; CIFAR-10 would take long
    clf = QualityClassifier.fitted(train.images, train.labels)  # fitted once per cache
    return clf, clf.accuracy(held.images, held.labels), clf.confidence(held.images)


def sample_models(models: Mapping[str, torch.nn.Module], seeds: Sequence[int] | range, shape: Sequence[int], *,
                  sampler: str = "heun", steps: int = 18, batch_size: int = 256, progress: bool = False,
                  **kwargs) -> list[Samples]:
    """Sample every model from the same seeds with the same sampler; one :class:`Samples` per model."""
    return [generate(m, seeds, shape, sampler=sampler, steps=steps, name=name, batch_size=batch_size,
                     progress=progress, **kwargs) for name, m in models.items()]


@dataclass
class SamplerStudy:
    """RP of one model's samples under several samplers and step counts against a fine reference."""

    rows: list[dict]
    reference: Samples
    threshold: float
    threshold_rule: str

    def curve(self, sampler: str) -> tuple[list[int], list[float], list[float], list[float]]:
        """``(network_calls, rp, lower, upper)`` for one sampler, by increasing step count."""
        r = [row for row in self.rows if row["sampler"] == sampler]
        return ([x["nfe"] for x in r], [x["rp"] for x in r], [x["lower"] for x in r], [x["upper"] for x in r])

    def table(self) -> str:
        """Rows: sampler; columns: steps; cells: RP / median similarity to the reference."""
        steps = sorted({r["steps"] for r in self.rows})
        lines = ["sampler     " + "".join(f"{s:>12d}" for s in steps) + "   (steps; cell = RP / median similarity)"]
        for sampler in dict.fromkeys(r["sampler"] for r in self.rows):
            cells = {r["steps"]: r for r in self.rows if r["sampler"] == sampler}
            lines.append(f"{sampler:10s}  " + "".join(f"{cells[s]['rp']:5.2f} / {cells[s]['median']:.3f}" if s in cells
                                                      else " " * 12 for s in steps))
        return "\n".join(lines)

    def min_nfe(self, sampler: str, level: float) -> int | None:
        """Fewest network calls at which ``sampler`` reaches RP >= ``level`` against the reference."""
        hits = [row["nfe"] for row in self.rows if row["sampler"] == sampler and row["rp"] >= level]
        return min(hits) if hits else None

    def min_nfe_range(self, sampler: str, level: float, rule: SameImageRule) -> tuple[int | None, int | None]:
        """:meth:`min_nfe` across ``rule``'s threshold interval: ``(fewest, most)``, the network calls at
        which ``sampler`` first reaches RP >= ``level`` at the interval's lower end (the most lenient
        threshold) and at its upper end (the strictest; ``None`` where it never does)."""
        rows = [row for row in self.rows if row["sampler"] == sampler]
        if not rows:
            raise ValueError(f"no sampler {sampler!r} in this study (it has {sorted({r['sampler'] for r in self.rows})})")
        ranges = [(row["nfe"], rule.rp_range(row["similarities"])) for row in rows]
        lenient = [nfe for nfe, (_, hi) in ranges if hi >= level]
        strict = [nfe for nfe, (lo, _) in ranges if lo >= level]
        return (min(lenient) if lenient else None, min(strict) if strict else None)

    def similarities(self, sampler: str, steps: int) -> torch.Tensor:
        """The seed-pair similarities of ``sampler`` at ``steps`` steps to the reference, ``(n,)``."""
        for row in self.rows:
            if row["sampler"] == sampler and row["steps"] == steps:
                return row["similarities"]
        raise ValueError(f"no row for {sampler!r} at {steps} steps in this study")


def sampler_study(model: torch.nn.Module, seeds: Sequence[int] | range, shape: Sequence[int], *,
                  samplers: Sequence[str], step_counts: Sequence[int], threshold: float, threshold_rule: str,
                  descriptor: str | Descriptor = "pixel", reference_steps: int = 200,
                  batch_size: int = 256) -> SamplerStudy:
    """How few steps keep a sampler reproducing the ODE's own answer?

    The reference is Heun with ``reference_steps`` steps (an accurate ODE solution); each sampler at
    each step count is scored against it with the given threshold.
    """
    ref = generate(model, seeds, shape, sampler="heun", steps=reference_steps, name=f"heun-{reference_steps}",
                   batch_size=batch_size)
    rows = []
    for sampler in samplers:
        for steps in step_counts:
            s = generate(model, seeds, shape, sampler=sampler, steps=steps, name=f"{sampler}-{steps}",
                         batch_size=batch_size)
            score = rp_score(s, ref, descriptor, threshold=threshold, threshold_rule=threshold_rule)
            rows.append(dict(sampler=sampler, steps=steps, nfe=network_calls(sampler, steps), rp=score.value,
                             lower=score.ci[0], upper=score.ci[1], median=float(score.similarities.median()),
                             similarities=score.similarities))
    return SamplerStudy(rows, ref, threshold, threshold_rule)


def stochastic_control(model_a: torch.nn.Module, model_b: torch.nn.Module, seeds: Sequence[int] | range,
                       shape: Sequence[int], *, threshold: float, threshold_rule: str, steps: int = 18,
                       descriptor: str | Descriptor = "pixel", batch_size: int = 256,
                       names: tuple[str, str] = ("A", "B")) -> tuple[Score, Score, list[Samples]]:
    """Same initial noise, but a stochastic sampler that injects fresh noise at every step.

    Returns ``(rp between the two models, rp of model A with itself under two noise streams,
    [A stream 1, A stream 2, B stream 2])``. Each model draws its own injected noise, as it would
    in practice; the initial noise is shared exactly as in the deterministic experiments.
    """
    kw = dict(sampler="euler-ancestral", steps=steps, batch_size=batch_size)
    a1 = generate(model_a, seeds, shape, step_noise_stream=1, name=f"{names[0]} (injected noise 1)", **kw)
    a2 = generate(model_a, seeds, shape, step_noise_stream=2, name=f"{names[0]} (injected noise 2)", **kw)
    b2 = generate(model_b, seeds, shape, step_noise_stream=3, name=f"{names[1]} (injected noise 3)", **kw)
    between = rp_score(a2, b2, descriptor, threshold=threshold, threshold_rule=threshold_rule)
    within = rp_score(a1, a2, descriptor, threshold=threshold, threshold_rule=threshold_rule)
    return between, within, [a1, a2, b2]


# ----------------------------------------------------------------------------- inverse problems (chapter 7)


@dataclass
class InverseStudy:
    """One inverse problem solved by several models from the same noise, with its baselines.

    ``reconstructions``: model -> deterministic DPS reconstructions (reconstruction k from seed k's
    noise answers measurement k of ground truth k). ``baselines``: what the models are read beside:
    closed forms that use no diffusion model (``A^+ y``, the Gaussian posterior mean) and the same
    DPS from the same noise with a closed-form denoiser as the prior (``priors`` of
    :func:`inverse_study`: the Gaussian denoiser, D*). ``controls``: RP of the first model with itself
    from *other* initial noise (same measurement), and of the stochastic solver between models and
    within one model. ``sample_mean``: the average of the first model's reconstructions from
    ``posterior_samples`` initial noises (a Monte Carlo estimate of its posterior mean), None for one;
    it may cover only the first images (``posterior_seeds`` of :func:`inverse_study`), and its
    :attr:`psnr` and :attr:`residual` are then over those images: compare it through
    :meth:`posterior_psnr` and :meth:`psnr_gap`, which score everything on the same images.
    ``noise_floor``: the mean norm of the measurement noise, ``||y - A x_true||``.
    """

    task: str
    truth: torch.Tensor
    measurement: torch.Tensor
    reconstructions: dict[str, Samples]
    baselines: dict[str, Samples]
    rp: RPMatrix
    vs_baselines: dict[str, list[Score]]
    controls: dict[str, Score]
    psnr: dict[str, float]
    residual: dict[str, float]
    noise_floor: float
    zeta: float = float("nan")
    sample_mean: Samples | None = None

    @property
    def model_rp(self) -> torch.Tensor:
        """RP of every pair of models, ``(M * (M - 1) / 2,)``."""
        m = len(self.reconstructions)
        return torch.tensor([self.rp.values[i, j].item() for i in range(m) for j in range(i + 1, m)])

    def pair_rp(self, a: str, b: str) -> tuple[float, float, float]:
        """RP of models ``a`` and ``b`` with its Wilson 95% interval, ``(value, lower, upper)``."""
        i, j = self.rp.labels.index(a), self.rp.labels.index(b)
        return self.rp.values[i, j].item(), self.rp.lower[i, j].item(), self.rp.upper[i, j].item()

    def _images(self) -> dict[str, torch.Tensor]:
        images = {k: s.images for k, s in {**self.reconstructions, **self.baselines}.items()}
        if self.sample_mean is not None:
            images[self.sample_mean.name] = self.sample_mean.images
        return images

    def psnr_gap(self, a: str, b: str) -> tuple[float, float, float]:
        """Mean per-image PSNR of ``a`` minus that of ``b`` (names of :attr:`psnr`), in dB, with a normal
        95% interval over the images (paired by image): ``(mean, lower, upper)``. When one of them is a
        :attr:`sample_mean` on the first images only, both are scored on those images."""
        images = self._images()
        n = min(len(images[a]), len(images[b]))
        d = psnr(images[a][:n], self.truth[:n]) - psnr(images[b][:n], self.truth[:n])
        half = 1.96 * float(d.std()) / len(d) ** 0.5
        return float(d.mean()), float(d.mean()) - half, float(d.mean()) + half

    def posterior_psnr(self) -> dict[str, float]:
        """Mean PSNR (dB) on the images :attr:`sample_mean` covers (the first ``posterior_seeds``) of the
        first model's one sample, the sample mean and the Gaussian posterior mean, in that order: the
        like-for-like comparison of the PSNR gap. Raises ValueError without a sample mean."""
        if self.sample_mean is None:
            raise ValueError("no sample mean: run inverse_study with posterior_samples > 1")
        n, images = len(self.sample_mean), self._images()
        names = (next(iter(self.reconstructions)), self.sample_mean.name, "Gaussian posterior mean")
        return {k: float(psnr(images[k][:n], self.truth[:n]).mean()) for k in names}

    def pair_similarities(self) -> dict[str, torch.Tensor]:
        """Seed-paired similarities for the survival curves: every model pair pooled, the first model
        against each baseline, and the controls."""
        names = list(self.reconstructions)
        first = self.reconstructions[names[0]]
        curves = {"model vs model (all pairs)": torch.cat([
            paired_similarity(self.reconstructions[a], self.reconstructions[b], self.rp.descriptor)
            for i, a in enumerate(names) for b in names[i + 1:]])}
        curves.update({f"{names[0]} vs {b}": paired_similarity(first, s, self.rp.descriptor)
                       for b, s in self.baselines.items()})
        curves.update({k: v.similarities for k, v in self.controls.items()})
        return curves

    def table(self) -> str:
        """Per model and baseline (and the sample mean): mean PSNR to the ground truth, mean measurement
        residual, the residual over the noise floor, and RP with the first model."""
        first = list(self.reconstructions)[0]
        lines = [f"{self.task}: {len(self.truth)} held-out images, zeta {self.zeta:g}",
                 f"measurement noise floor ||noise|| = {self.noise_floor:.3f}",
                 f"{'':28s}{'PSNR (dB)':>10s}{'||y - A x||':>13s}{'/ floor':>9s}   RP with {first}"]

        def row(name: str, rp: str) -> str:
            return (f"{name:28s}{self.psnr[name]:10.1f}{self.residual[name]:13.3f}"
                    f"{self.residual[name] / self.noise_floor:9.2f}   {rp}").rstrip()
        for i, name in enumerate(self.reconstructions):
            lines.append(row(name, "" if i == 0 else (f"{self.rp.values[0, i]:.2f} [{self.rp.lower[0, i]:.2f}, "
                                                      f"{self.rp.upper[0, i]:.2f}]")))
        for name, scores in self.vs_baselines.items():
            s = scores[0]
            lines.append(row(name, f"{s.value:.2f} [{s.ci[0]:.2f}, {s.ci[1]:.2f}]"))
        if self.sample_mean is not None and len(self.sample_mean) < len(self.truth):
            name, n = self.sample_mean.name, len(self.sample_mean)
            lines.append(f"{name:28s}{self.psnr[name]:10.1f}{self.residual[name]:13.3f}{'':9s}   "
                         f"on images 0-{n - 1} only")
        elif self.sample_mean is not None:
            lines.append(row(self.sample_mean.name, ""))
        return "\n".join(lines)


def inverse_study(models: Mapping[str, torch.nn.Module], op, truth: torch.Tensor, prior: torch.nn.Module, *,
                  rule: SameImageRule, noise_std: float, zeta: float, steps: int = 20, task: str = "",
                  descriptor: str | Descriptor = "pixel", batch_size: int = 256,
                  priors: Mapping[str, torch.nn.Module] | None = None, posterior_samples: int = 1,
                  posterior_seeds: int = 0) -> InverseStudy:
    """Measure ``truth`` with ``op`` (noise ``noise_std``; image k's noise from seed k) and solve it with
    every model from the same noise (seed k for image k), plus the baselines and controls of
    :class:`InverseStudy`. ``prior`` is the Gaussian denoiser whose prior the posterior-mean baseline uses;
    ``priors`` (name -> denoiser, e.g. the Gaussian denoiser and D*) are solved with the same DPS from the
    same noise and join the baselines; ``posterior_samples`` K > 1 averages the first model's
    reconstructions from K initial noises (noise streams 0 and 7, 8, ...: stream 7 is the
    other-noise control) into :attr:`InverseStudy.sample_mean`, on the first ``posterior_seeds`` images
    (0, the default: all of them; the other-noise control always covers all)."""
    if int(posterior_samples) < 1:
        raise ValueError(f"posterior_samples must be an integer >= 1, got {posterior_samples!r}")
    checks.first_count("posterior_seeds", posterior_seeds, len(truth), "the number of images")
    shape = tuple(truth.shape[1:])
    seeds = torch.arange(len(truth))
    y = measure(op, truth, noise_std, seeds)
    kw = dict(zeta=zeta, steps=steps, batch_size=batch_size)
    recs = {name: reconstruct(m, op, y, seeds, shape, name=name, **kw) for name, m in models.items()}
    baselines = {"A^+ y (least squares)": Samples(pseudo_inverse(op, y, shape), seeds, "A^+ y (least squares)"),
                 "Gaussian posterior mean": Samples(gaussian_posterior_mean(op, y, prior, noise_std, shape), seeds,
                                                    "Gaussian posterior mean")}
    baselines.update({name: reconstruct(d, op, y, seeds, shape, name=name, **kw) for name, d in (priors or {}).items()})
    rp = rp_matrix(list(recs.values()), descriptor, threshold=rule)
    vs = {b: [rp_score(r, s, descriptor, threshold=rule) for r in recs.values()] for b, s in baselines.items()}
    names = list(models)
    first, second = models[names[0]], models[names[1]]
    other = reconstruct(first, op, y, seeds, shape, noise_stream=7, name=f"{names[0]} (other noise)", **kw)
    stoch = [reconstruct(m, op, y, seeds, shape, step_noise_stream=k, name=f"{n} (stochastic {k})", **kw)
             for m, n, k in ((first, names[0], 1), (first, names[0], 2), (second, names[1], 3))]
    controls = {"same model, other noise": rp_score(recs[names[0]], other, descriptor, threshold=rule),
                "stochastic, between models": rp_score(stoch[1], stoch[2], descriptor, threshold=rule),
                "stochastic, same model": rp_score(stoch[0], stoch[1], descriptor, threshold=rule)}
    everything = {**recs, **baselines}
    mean = None
    if posterior_samples > 1:
        n = posterior_seeds or len(truth)
        draws = [recs[names[0]].images[:n], other.images[:n]] + [
            reconstruct(first, op, y[:n], seeds[:n], shape, noise_stream=7 + k, **kw).images
            for k in range(1, int(posterior_samples) - 1)]
        k = int(posterior_samples)
        mean = Samples(torch.stack(draws[:k]).mean(0), seeds[:n], f"{names[0]}, mean of {k}")
        everything[mean.name] = mean
    floor = float(residual_norm(op, truth, y).mean())
    return InverseStudy(task or str(op), truth, y, recs, baselines, rp, vs, controls,
                        {k: float(psnr(s.images, truth[:len(s)]).mean()) for k, s in everything.items()},
                        {k: float(residual_norm(op, s.images, y[:len(s)]).mean()) for k, s in everything.items()},
                        floor, float(zeta), mean)


def dps_sensitivity(model_a: torch.nn.Module, model_b: torch.nn.Module, op, truth: torch.Tensor, *,
                    rule: SameImageRule, noise_std: float, zetas: Sequence[float], step_counts: Sequence[int],
                    descriptor: str | Descriptor = "pixel", batch_size: int = 256,
                    seeds: Sequence[int] | torch.Tensor | None = None) -> dict[tuple[float, int], dict]:
    """RP between two models and their mean PSNR and residual, for every ``(zeta, steps)``.

    ``seeds``: image k's measurement noise and initial noise (default 0, 1, ...); give images that
    are not scored elsewhere other seeds too. Returns ``{(zeta, steps): {"rp": Score, "psnr": float,
    "residual": float, "floor": float}}`` (PSNR and residual averaged over both models; ``floor``, the
    mean norm of the measurement noise, is the same in every entry)."""
    shape = tuple(truth.shape[1:])
    seeds = torch.arange(len(truth)) if seeds is None else torch.as_tensor(list(seeds))
    if len(seeds) != len(truth):
        raise ValueError(f"{len(seeds)} seeds for {len(truth)} images: one seed per image")
    y = measure(op, truth, noise_std, seeds)
    floor = float(residual_norm(op, truth, y).mean())
    out = {}
    for zeta in zetas:
        for steps in step_counts:
            a, b = (reconstruct(m, op, y, seeds, shape, zeta=zeta, steps=steps, batch_size=batch_size)
                    for m in (model_a, model_b))
            out[(zeta, steps)] = dict(
                rp=rp_score(a, b, descriptor, threshold=rule),
                psnr=float((psnr(a.images, truth).mean() + psnr(b.images, truth).mean()) / 2),
                residual=float((residual_norm(op, a.images, y).mean() + residual_norm(op, b.images, y).mean()) / 2),
                floor=floor)
    return out


def choose_zeta(sensitivity: Mapping[tuple[float, int], dict], steps: int) -> float:
    """The step scale whose ``steps``-step reconstructions (an entry of :func:`dps_sensitivity`) explain
    the measurement closest to its noise level: mean residual over noise floor nearest 1 (the
    smaller scale on a tie). An exact posterior sample's residual ``y - A x`` is distributed like the
    measurement noise itself (given ``y``, the sample and the truth are exchangeable), so the criterion
    asks for a posterior sampler's fit and never looks at the ground truth."""
    grid = sorted((z, abs(r["residual"] / r["floor"] - 1)) for (z, k), r in sensitivity.items() if k == steps)
    if not grid:
        raise ValueError(f"the sensitivity grid has no {steps}-step entry")
    return min(grid, key=lambda zg: (zg[1], zg[0]))[0]


@dataclass
class GuidanceStudy:
    """Class-conditional models sampled with classifier-free guidance at several scales ``w``, all
    from the same seeds and labels. Per scale: every model's samples, RP of every pair of models,
    each model's label accuracy (the book's digit classifier) and within-label similarity
    (:func:`~reprodiff.metrics.within_label_similarity`), and, when a closed-form ``reference`` was
    given, each model's RP to it."""

    scales: list[float]
    samples: dict[float, dict[str, Samples]]
    rp: dict[float, dict[tuple[str, str], Score]]
    accuracy: dict[float, dict[str, float]]
    similarity: dict[float, dict[str, float]]
    reference: dict[float, dict[str, Score]] | None = None
    reference_name: str = ""
    reference_samples: dict[float, Samples] = field(default_factory=dict)

    def mean_rp(self, w: float) -> float:
        """RP averaged over the pairs of models at scale ``w``."""
        return sum(s.value for s in self.rp[w].values()) / len(self.rp[w])

    def table(self) -> str:
        names = list(self.samples[self.scales[0]])
        ref = bool(self.reference)
        lines = [f"{'w':>5s}  {'RP between':>10s}  {'label':>8s}  {'within-label':>12s}" + (f"  {'RP to':>10s}" if ref else ""),
                 f"{'':5s}  {'models':>10s}  {'accuracy':>8s}  {'similarity':>12s}"
                 + (f"  {self.reference_name[:10]:>10s}" if ref else "")]
        for w in self.scales:
            acc = sum(self.accuracy[w].values()) / len(names)
            sim = sum(self.similarity[w].values()) / len(names)
            row = f"{w:5g}  {self.mean_rp(w):10.2f}  {acc:8.2f}  {sim:12.3f}"
            if ref:
                row += f"  {sum(s.value for s in self.reference[w].values()) / len(names):10.2f}"
            lines.append(row)
        return "\n".join(lines) + f"\n(means over the {len(names)} models, RP between models over their pairs)"


def guidance_study(models: Mapping[str, torch.nn.Module], seeds: Sequence[int] | range, labels: torch.Tensor,
                   shape: Sequence[int], scales: Sequence[float], rule: SameImageRule, classifier: QualityClassifier,
                   *, reference: torch.nn.Module | None = None, reference_name: str = "reference",
                   sampler: str = "heun", steps: int = 18, batch_size: int = 256,
                   descriptor: str | Descriptor = "pixel", progress: bool = False) -> GuidanceStudy:
    """Sample every class-conditional model (and the optional closed-form ``reference``) with
    classifier-free guidance at each scale in ``scales``, from the same ``seeds`` and ``labels``.

    Every model is checked to be class-conditional before any sampling (:class:`~reprodiff.denoisers.Guided`).
    """
    from tqdm.auto import tqdm

    if len(models) < 2:
        raise ValueError("a guidance study compares at least two models")
    scales = [float(w) for w in scales]
    for m in (*models.values(), *([reference] if reference is not None else [])):
        for w in scales:
            Guided(m, w)  # unconditional model or bad scale: fail here, before sampling
    desc = get_descriptor(descriptor)
    names = list(models)
    out = GuidanceStudy(scales, {}, {}, {}, {}, {} if reference is not None else None, reference_name)
    for w in tqdm(scales, desc="guidance scales", disable=not progress):
        kw = dict(labels=labels, sampler=sampler, steps=steps, batch_size=batch_size)
        # w = 0 samples the bare model (Guided returns it unchanged), which the sample cache can keep
        s = {n: generate(m if w == 0 else Guided(m, w), seeds, shape, name=f"{n}, w={w:g}", **kw)
             for n, m in models.items()}
        out.samples[w] = s
        out.rp[w] = {(a, b): rp_score(s[a], s[b], desc, threshold=rule)
                     for i, a in enumerate(names) for b in names[i + 1:]}
        out.accuracy[w] = {n: classifier.accuracy(x.images, labels) for n, x in s.items()}
        out.similarity[w] = {n: within_label_similarity(x, desc) for n, x in s.items()}
        if reference is not None:
            ref = generate(Guided(reference, w), seeds, shape, name=f"{reference_name}, w={w:g}", **kw)
            out.reference_samples[w] = ref
            out.reference[w] = {n: rp_score(x, ref, desc, threshold=rule) for n, x in s.items()}
    return out


@dataclass
class SharedNullControl:
    """Guidance with each model's own unconditional estimate against one shared estimate (chapter 6).

    ``rp[w][kind][(a, b)]``: RP of models ``a`` and ``b`` at guidance scale ``w`` from the same seeds
    and labels, ``kind`` ``"own null"`` (:class:`~reprodiff.denoisers.Guided`) or ``"shared null"``
    (:class:`~reprodiff.conditioning.SharedNullGuided` with the null-label estimate of model ``shared``);
    each :class:`~reprodiff.metrics.Score` keeps its seed-pair similarities. If agreement still falls
    with ``w`` under the shared null, the fall is the amplification of the conditional differences,
    ``(1 + w)`` times; if it no longer falls, it came from the differing unconditional estimates."""

    shared: str
    scales: list[float]
    n_seeds: int
    rp: dict[float, dict[str, dict[tuple[str, str], Score]]]

    KINDS = ("own null", "shared null")

    def mean_rp(self, w: float, kind: str) -> float:
        """RP at scale ``w`` under ``kind``, averaged over the pairs of models."""
        scores = self.rp[w][kind]
        return sum(s.value for s in scores.values()) / len(scores)

    def median(self, w: float, kind: str, pair: tuple[str, str]) -> tuple[float, float, float]:
        """The median seed-pair similarity of ``pair`` at scale ``w`` under ``kind`` and its bootstrap 95% interval."""
        from .metrics import bootstrap_ci

        sims = self.rp[w][kind][pair].similarities
        return (float(sims.median()), *bootstrap_ci(sims, statistic="median"))

    def table(self, short: Mapping[str, str] | None = None) -> str:
        """One row per scale and pair of models: RP (95% interval) and median similarity (bootstrap 95%
        interval) with each model's own null estimate and with the shared one (``short`` names the models)."""
        pairs = list(self.rp[self.scales[0]]["own null"])
        short = short or {n: n for p in pairs for n in p}
        head = "".join(f"{f'RP, {k}':>19s}" for k in self.KINDS) + "".join(f"{f'median, {k}':>23s}" for k in self.KINDS)
        lines = [f"{'w':>4s}  {'pair':12s}" + head]
        for w in self.scales:
            for p in pairs:
                cells = "".join(f"{self.rp[w][k][p].interval():>19s}" for k in self.KINDS)
                cells += "".join("{:>23s}".format("{:.3f} [{:.3f},{:.3f}]".format(*self.median(w, k, p)))
                                 for k in self.KINDS)
                lines.append(f"{w:4g}  {short[p[0]] + ' vs ' + short[p[1]]:12s}" + cells)
        return "\n".join(lines) + (f"\n(shared null: {self.shared}'s null-label estimate; first {self.n_seeds} seeds; "
                                   f"at w = 0 the null is not used, so the two columns are one run)")


def shared_null_control(models: Mapping[str, torch.nn.Module], shared: str, seeds: Sequence[int] | range,
                        labels: torch.Tensor, shape: Sequence[int], scales: Sequence[float], rule: SameImageRule, *,
                        own: Mapping[float, Mapping[str, Samples]] | None = None, sampler: str = "heun",
                        steps: int = 18, batch_size: int = 256,
                        descriptor: str | Descriptor = "pixel") -> SharedNullControl:
    """Sample every class-conditional model at each guidance scale twice from the same ``seeds`` and
    ``labels`` (``labels[i]`` for ``seeds[i]``): guided by its own null-label estimate, and by the
    null-label estimate of ``models[shared]`` (:class:`~reprodiff.conditioning.SharedNullGuided`); score
    RP of every pair under both (:class:`SharedNullControl`).

    ``own``: samples already drawn with each model's own null, ``own[w][name]`` (e.g. a
    :class:`GuidanceStudy`'s ``samples``; they must hold ``seeds``), used instead of sampling again.
    The shared model's shared-null samples are its own-null ones (the same estimate), and at ``w = 0``
    the null is not used, so neither is sampled twice. Every wrapper is built, and so every model and
    scale checked, before any sampling.
    """
    if shared not in models:
        raise ValueError(f"the shared null model {shared!r} is not one of the models ({', '.join(models)})")
    if len(models) < 2:
        raise ValueError("the control compares at least two models")
    scales = [float(w) for w in scales]
    seeds = list(seeds)
    labels = torch.as_tensor(labels)
    if labels.shape != (len(seeds),):
        raise ValueError(f"one label per seed: {len(seeds)} seeds, labels shaped {tuple(labels.shape)}")
    from .conditioning import SharedNullGuided

    guided = {w: {n: Guided(m, w) for n, m in models.items()} for w in scales}
    shared_guided = {w: {n: SharedNullGuided(m, models[shared], w) for n, m in models.items()} for w in scales}
    desc = get_descriptor(descriptor)
    kw = dict(labels=labels, sampler=sampler, steps=steps, batch_size=batch_size)
    names = list(models)
    out = SharedNullControl(shared, scales, len(seeds), {})
    for w in scales:
        mine = {n: own[w][n].select(seeds) if own is not None and w in own and n in own[w]
                else generate(models[n] if w == 0 else guided[w][n], seeds, shape, name=f"{n}, w={w:g}", **kw)
                for n in names}
        theirs = {n: mine[n] if w == 0 or n == shared
                  else generate(shared_guided[w][n], seeds, shape, name=f"{n}, w={w:g}, {shared}'s null", **kw)
                  for n in names}
        out.rp[w] = {kind: {(a, b): rp_score(s[a], s[b], desc, threshold=rule)
                            for i, a in enumerate(names) for b in names[i + 1:]}
                     for kind, s in zip(SharedNullControl.KINDS, (mine, theirs))}
    return out


# ----------------------------------------------------------------------------- a model along its training (chapter 2)
@dataclass
class TrainingProgress:
    """One model's held-out x0 error and its RP to reference models' samples at each training step it
    saved (its ``snapshots`` and the finished model), beside the references' own x0 errors.

    ``errors[i]``: x0 error at each of ``sigmas`` at ``steps[i]``; ``rp[name]``: one RP score per
    step against the reference ``name``'s samples from the same seeds; ``reference_errors[name]``: the
    reference model's x0 error at ``sigmas``."""

    name: str
    steps: list[int]
    sigmas: tuple[float, ...]
    errors: list[list[float]]
    rp: dict[str, Scores]
    reference_errors: dict[str, list[float]]

    def rp_range(self, i: int) -> tuple[float, float]:
        """The lowest and highest RP to a reference at ``steps[i]``."""
        values = [scores[i].value for scores in self.rp.values()]
        return min(values), max(values)

    def error_at(self, sigma: float) -> tuple[list[float], tuple[float, float]]:
        """The model's x0 error at ``sigma`` per step, and the references' range at that sigma."""
        i = self.sigmas.index(sigma)
        refs = [e[i] for e in self.reference_errors.values()]
        return [e[i] for e in self.errors], (min(refs), max(refs))

    def headline(self, between_references: tuple[float, float], sigma: float = 0.5) -> str:
        """x0 error at ``sigma`` and RP to the references from the first saved step to the last, beside
        the references' own error range and ``between_references``, their RP range among themselves."""
        errors, (lo, hi) = self.error_at(sigma)
        first, last = self.rp_range(0), self.rp_range(len(self.steps) - 1)
        return (f"{self.name} along training: x0 error at sigma {sigma:g} {errors[0]:.3f} at step {self.steps[0]:,} -> "
                f"{errors[-1]:.3f} at step {self.steps[-1]:,} (UNets {lo:.3f}-{hi:.3f}); RP to the UNets "
                f"{first[0]:.2f}-{first[1]:.2f} -> {last[0]:.2f}-{last[1]:.2f} "
                f"(between UNets {between_references[0]:.2f}-{between_references[1]:.2f})")

    def median_range(self, i: int) -> tuple[float, float]:
        """The lowest and highest median seed-pair similarity to a reference at ``steps[i]`` (threshold-free)."""
        values = [float(scores[i].similarities.median()) for scores in self.rp.values()]
        return min(values), max(values)

    def compare_steps(self, rule: SameImageRule, i: int = -1, j: int = -2) -> list[RPComparison]:
        """For each reference, RP at ``steps[i]`` against RP at ``steps[j]`` across ``rule``'s threshold
        interval, medians beside (:func:`reprodiff.metrics.compare_rp`): did agreement still change?"""
        return [compare_rp(rule, scores[i].similarities, scores[j].similarities,
                           (f"to {ref}: step {self.steps[i]:,}", f"step {self.steps[j]:,}"))
                for ref, scores in self.rp.items()]

    def table(self) -> str:
        """Step, x0 error at each sigma and RP to each reference: one row per step, then the references.
        Each step's row ends with the range of its median similarities to the references."""
        sig = " / ".join(f"{s:g}" for s in self.sigmas)
        lines = [f"{self.name}: x0 error on held-out images at sigma {sig}; RP to " + ", ".join(self.rp)
                 + "; median similarity to them"]
        for i, k in enumerate(self.steps):
            lo, hi = self.rp_range(i)
            m_lo, m_hi = self.median_range(i)
            lines.append(f"  step {k:>5,}: " + " / ".join(f"{e:.3f}" for e in self.errors[i])
                         + f"; RP {lo:.2f}-{hi:.2f} (" + ", ".join(f"{s[i].value:.2f}" for s in self.rp.values())
                         + f"); median {m_lo:.3f}-{m_hi:.3f}")
        for name, errors in self.reference_errors.items():
            lines.append(f"  {name}: " + " / ".join(f"{e:.3f}" for e in errors))
        return "\n".join(lines)


def training_progress(config, references: Mapping[str, tuple[torch.nn.Module, Samples]], heldout: torch.Tensor,
                      seeds: Sequence[int] | range, shape: Sequence[int], rule: SameImageRule, *,
                      descriptor: str | Descriptor = "pixel", sigmas: Sequence[float] = (0.1, 0.5, 2.0),
                      sampler: str = "heun", steps: int = 18, batch_size: int = 256,
                      name: str | None = None) -> TrainingProgress:
    """Load ``config``'s model at every step it saved (``config.snapshots`` and ``config.steps``), measure
    its x0 error on ``heldout`` images (:func:`reprodiff.denoisers.x0_error`) and sample it from
    ``seeds``; score RP against each reference's samples (``references``: name -> (model, samples from
    the same seeds and sampler)), whose x0 errors are measured beside. Does agreement track how well
    a model denoises? This puts the two side by side along one training run."""
    from .denoisers import x0_error
    from .training import load_model

    if not config.snapshots:
        raise ValueError(f"{config.name} saved no snapshots: train it with snapshots=(...) to follow its training")
    if not references:
        raise ValueError("training_progress needs at least one reference model")
    desc = get_descriptor(descriptor)
    name = name or config.name
    at = [*sorted(config.snapshots), config.steps]
    errors, rp = [], {r: Scores() for r in references}
    for k in at:
        model = load_model(config, step=None if k == config.steps else k)
        errors.append(x0_error(model, heldout, sigmas))
        s = generate(model, seeds, shape, sampler=sampler, steps=steps, batch_size=batch_size, name=f"{name} step {k}")
        for r, (_, ref) in references.items():
            rp[r].append(rp_score(s, ref, desc, threshold=rule))
    reference_errors = {r: x0_error(m, heldout, sigmas) for r, (m, _) in references.items()}
    return TrainingProgress(name, at, tuple(sigmas), errors, rp, reference_errors)
