"""The noise space as a code that models share, and what that is good for (chapter 9).

* :class:`NoiseExplorer`: an ipywidgets explorer (seed, models, sampler, steps; class label and
  guidance scale when a model is class-conditional) that samples every chosen model from the same
  noise and shows the images side by side. Its callbacks are plain methods, so tests drive it
  without a browser.
* :func:`slerp` and :func:`interpolation_study`: spherical interpolation between two initial noises,
  sampled by every model: is the noise-to-image map smooth, and is it the same map?
* :func:`label_agreement`: the noise as a shared code for *what* is drawn: how often two models
  draw the same class from the same noise, against the same pairs from different noises.
* :func:`proxy_study`: a cheap model as a proxy for an expensive one: choose seeds with the cheap
  model, generate only those with the expensive one; how often it pays, and what it saves.
* :func:`replication_audit`: GL as a privacy check: the samples of a model that are copies of a
  training image by the book's same-image rule, each with the training image it copies.
* :func:`reference_row` and :class:`ReferenceExplorer` (chapter 4): a sweep model's stored sample
  beside its closed-form references' from the same seed and its nearest training image, one seed
  and N at a time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from .denoisers import Guided, class_count
from .metrics import SameImageRule, Score, get_descriptor, gl_score, paired_similarity, rp_score, wilson_ci
from .sampling import SAMPLERS, Samples, generate, generate_from_noise, noise_for_seeds

__all__ = ["slerp", "NoiseExplorer", "InterpolationStudy", "interpolation_study", "label_agreement",
           "ProxyStudy", "proxy_study", "Audit", "replication_audit", "reference_row", "ReferenceExplorer"]


def slerp(a: torch.Tensor, b: torch.Tensor, t: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noises ``a`` and ``b`` (same shape), one frame per ``t``
    in [0, 1]: ``(len(t), *a.shape)``. Unlike a straight line, the path keeps the norm a Gaussian
    noise of this dimension has (a straight midpoint is ~30% too short), so every frame is a
    plausible initial noise."""
    if a.shape != b.shape:
        raise ValueError(f"slerp needs two noises of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, *([1] * a.dim()))
    if (t < 0).any() or (t > 1).any():
        raise ValueError("interpolation weights t lie in [0, 1]")
    a64, b64 = a.double(), b.double()
    cos = (a64 * b64).sum() / (a64.norm() * b64.norm())
    omega = torch.arccos(cos.clamp(-1, 1))
    if omega.abs() < 1e-6:  # (nearly) the same noise: a straight line is the arc
        out = (1 - t) * a64 + t * b64
    else:
        out = (torch.sin((1 - t) * omega) * a64 + torch.sin(t * omega) * b64) / torch.sin(omega)
    return out.to(a.dtype)


class NoiseExplorer:
    """Same noise, every model, side by side: an ipywidgets explorer.

    ``models``: name -> denoiser (all for ``shape`` images). Widgets: ``seed`` (IntSlider),
    ``chosen`` (SelectMultiple of model names), ``sampler`` (Dropdown of the deterministic samplers),
    ``steps`` (IntSlider), and, when any model is class-conditional, ``label`` and ``guidance``
    (the classifier-free guidance scale; unconditional models ignore both). :meth:`images` samples
    the current choice; :meth:`update` redraws the figure in ``out``; :attr:`widget` is the box
    to display.
    """

    EMPTY = "choose at least one model"

    def __init__(self, models: Mapping[str, torch.nn.Module], shape: Sequence[int], *, max_seed: int = 999,
                 steps: int = 18, max_steps: int = 40) -> None:
        import ipywidgets as widgets

        if not models:
            raise ValueError("the explorer needs at least one model")
        self.models = dict(models)
        self.shape = tuple(shape)
        self.classes = {name: class_count(m) for name, m in self.models.items()}
        deterministic = [name for name, spec in SAMPLERS.items() if not spec.stochastic]
        self.seed = widgets.IntSlider(value=0, min=0, max=max_seed, description="seed")
        self.chosen = widgets.SelectMultiple(options=list(self.models), value=tuple(self.models),
                                             description="models", rows=min(8, len(self.models)))
        self.sampler = widgets.Dropdown(options=deterministic, value="heun", description="sampler")
        self.steps = widgets.IntSlider(value=steps, min=2, max=max_steps, description="steps")
        controls = [self.seed, self.sampler, self.steps]
        n_classes = [c for c in self.classes.values() if c is not None]
        self.label = self.guidance = None
        if n_classes:
            self.label = widgets.Dropdown(options=list(range(min(n_classes))), value=0, description="label")
            self.guidance = widgets.FloatSlider(value=1.0, min=0.0, max=4.0, step=0.5, description="guidance")
            controls += [self.label, self.guidance]
        self.out = widgets.Output()
        for w in controls + [self.chosen]:
            w.observe(self.update, "value")
        self.widget = widgets.VBox([widgets.HBox([widgets.VBox(controls), self.chosen]), self.out])
        self.last: dict[str, torch.Tensor] = {}

    def _denoiser(self, name: str) -> torch.nn.Module:
        model, classes = self.models[name], self.classes[name]
        if classes is None or self.guidance is None:
            return model
        return Guided(model, self.guidance.value, null_label=classes)

    def images(self) -> dict[str, torch.Tensor]:
        """Each chosen model's ``(C, H, W)`` sample from the current seed, sampler and steps."""
        out = {}
        for name in self.chosen.value:
            labels = None if self.classes[name] is None else [self.label.value]
            s = generate(self._denoiser(name), [self.seed.value], self.shape, sampler=self.sampler.value,
                         steps=self.steps.value, labels=labels, name=name)
            out[name] = s.images[0]
        self.last = out
        return out

    def figure(self):
        """One row: the chosen models' samples from the current noise."""
        from .plots import image_grid

        images = self.images()
        what = f"seed {self.seed.value}, {self.sampler.value}, {self.steps.value} steps"
        if self.label is not None:
            what += f", label {self.label.value}, guidance {self.guidance.value:g}"
        return image_grid({what: torch.stack(list(images.values()))} if images else {what: torch.zeros(0, *self.shape)},
                          list(images), scale=1.2)

    def update(self, change=None) -> None:
        """Redraw (the widgets call this on every change)."""
        if not self.chosen.value:
            self.last = {}
            with self.out:
                self.out.clear_output(wait=True)
                print(self.EMPTY)
            return
        _redraw(self.out, self.figure)


def _redraw(out, figure) -> None:
    """Show the figure ``figure()`` draws in the ipywidgets ``Output`` ``out``, in place of what it
    showed (every explorer's widget callback)."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    with out:
        out.clear_output(wait=True)
        fig = figure()
        display(fig)
        plt.close(fig)


@dataclass
class InterpolationStudy:
    """``frames[name]``: ``(pairs, len(t), C, H, W)`` samples along the slerp paths between the noises
    of ``pairs`` seed pairs. ``smoothness``: mean similarity of consecutive frames (per model),
    ``(len(t) - 1,)``. ``agreement``: RP between two models at each ``t``, pooled over model pairs and
    paths; its 95% interval is a normal interval over the paths (each path's fraction of agreeing
    model pairs is one observation, since all pairs on a path share its noise)."""

    t: torch.Tensor
    seed_pairs: list[tuple[int, int]]
    frames: dict[str, torch.Tensor]
    smoothness: dict[str, torch.Tensor]
    agreement: list[Score]

    def agreement_among(self, names: Sequence[str], *, rule: SameImageRule, descriptor="pixel") -> list[Score]:
        """:attr:`agreement` over the model pairs within ``names`` only (e.g. one architecture
        family), from the frames already sampled."""
        unknown = [n for n in names if n not in self.frames]
        if unknown or len(names) < 2:
            raise ValueError(f"agreement needs at least two of the sampled models {list(self.frames)}; got {list(names)}")
        return _agreement_along({n: self.frames[n] for n in names}, self.t, rule, get_descriptor(descriptor))


def _agreement_along(frames_by_model: Mapping[str, torch.Tensor], t: torch.Tensor, rule: SameImageRule,
                     desc) -> list[Score]:
    """RP between every two models at each frame ``t``, pooled over model pairs, with a normal 95%
    interval over the paths (the model pairs of one path share its noise: the path is the unit)."""
    names = list(frames_by_model)
    n_paths = len(next(iter(frames_by_model.values())))
    paths = torch.arange(n_paths)
    agreement = []
    for k in range(len(t)):
        sims = torch.stack([paired_similarity(Samples(frames_by_model[x][:, k], paths),
                                              Samples(frames_by_model[y][:, k], paths), desc)
                            for i, x in enumerate(names) for y in names[i + 1:]])  # (model pairs, paths)
        per_path = (sims > rule.threshold).double().mean(0)
        mean = float(per_path.mean())
        half = 1.96 * float(per_path.std()) / n_paths ** 0.5 if n_paths > 1 else 1.0
        agreement.append(Score("RP", mean, (max(0.0, mean - half), min(1.0, mean + half)), n_paths,
                               rule.threshold, rule.rule, desc.name,
                               f"t = {float(t[k]):.2f}, {len(sims)} model pairs", similarities=sims.reshape(-1)))
    return agreement


def interpolation_study(models: Mapping[str, torch.nn.Module], shape: Sequence[int], seed_pairs: Sequence[tuple[int, int]],
                        frames: int, *, rule: SameImageRule, descriptor="pixel", sampler: str = "heun",
                        steps: int = 18, batch_size: int = 256) -> InterpolationStudy:
    """Sample every model along the slerp path between the noises of each seed pair (``frames``
    points from one noise to the other) and measure smoothness and agreement along it."""
    if frames < 2:
        raise ValueError("an interpolation needs at least 2 frames")
    if len(models) < 2:
        raise ValueError("agreement along a path needs at least two models")
    t = torch.linspace(0, 1, frames)
    noises = torch.cat([slerp(noise_for_seeds([a], shape)[0], noise_for_seeds([b], shape)[0], t)
                        for a, b in seed_pairs])  # (pairs * frames, C, H, W), path-major
    out = {name: generate_from_noise(m, noises, sampler=sampler, steps=steps, name=name, batch_size=batch_size)
           for name, m in models.items()}
    frames_by_model = {k: s.images.reshape(len(seed_pairs), frames, *shape) for k, s in out.items()}
    desc = get_descriptor(descriptor)
    smooth = {}
    for name, f in frames_by_model.items():
        a = Samples(f[:, :-1].reshape(-1, *shape), torch.arange(len(seed_pairs) * (frames - 1)))
        b = Samples(f[:, 1:].reshape(-1, *shape), a.seeds)
        smooth[name] = paired_similarity(a, b, desc).reshape(len(seed_pairs), frames - 1).mean(0)
    agreement = _agreement_along(frames_by_model, t, rule, desc)
    return InterpolationStudy(t, list(seed_pairs), frames_by_model, smooth, agreement)


def label_agreement(samples: Mapping[str, Samples], classifier) -> dict[str, float | torch.Tensor]:
    """How often two models draw the same class from the same noise (classifier labels), pooled
    over model pairs, against the same pairs matched to *other* seeds (the chance level for this
    class mix). Returns ``{"same noise": float, "other noise": float, "labels": (M, S) tensor}``."""
    names = list(samples)
    if len(names) < 2:
        raise ValueError("label agreement compares at least two models")
    seeds = samples[names[0]].seeds
    labels = torch.stack([classifier.probabilities(samples[n].by_seed(seeds)).argmax(1) for n in names])
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    same = torch.stack([labels[i] == labels[j] for i, j in pairs]).double().mean()
    shifted = torch.stack([labels[i] == labels[j].roll(1) for i, j in pairs]).double().mean()
    return {"same noise": float(same), "other noise": float(shifted), "labels": labels}


@dataclass
class ProxyStudy:
    """Seeds chosen with a cheap model for a target class, generated with an expensive one.

    ``precision``: fraction of the chosen seeds whose expensive sample is the target class too.
    ``base_rate``: fraction of all seeds whose expensive sample is the target (what choosing seeds
    at random gives). ``rp``: RP between the two models on the chosen seeds. Times are wall-clock
    seconds measured in this run; ``cost_ratio`` = seconds per target image via the proxy (cheap
    model on every seed + expensive model on the chosen ones) / seconds per target image by
    generating every seed with the expensive model and keeping its targets. When the cheap model
    chose no seed (``proxy_study(..., allow_empty=True)``), ``precision`` and ``rp`` are None and the
    expensive model was not run."""

    target: int
    n_seeds: int
    chosen: torch.Tensor
    precision: Score | None
    base_rate: float
    rp: Score | None
    cheap_seconds: float
    expensive_seconds: float
    chosen_seconds: float
    cost_ratio: float

    def summary(self, cheap: str, expensive: str, cost: bool = True) -> str:
        """One line: the proxy's precision for the target class and (``cost``) its cost ratio, a timing
        that differs from run to run, or that it chose nothing."""
        head = f"proxy {cheap} -> {expensive}, class {self.target}: "
        if self.precision is None:
            return head + f"chose no seed of the class among {self.n_seeds}"
        return head + f"precision {self.precision.interval()}" + (f"; cost ratio {self.cost_ratio:.2f}" if cost else "")


def proxy_study(cheap: torch.nn.Module, expensive: torch.nn.Module, shape: Sequence[int], seeds: Sequence[int], *,
                classifier, target: int, rule: SameImageRule, descriptor="pixel", sampler: str = "heun",
                steps: int = 18, batch_size: int = 256, allow_empty: bool = False,
                baseline: ProxyStudy | None = None) -> ProxyStudy:
    """Choose seeds whose cheap sample the classifier calls ``target``; generate them with the
    expensive model; compare with generating every seed expensively (both timed here, so these samples
    bypass the sample cache: an earlier cell that drew the same seeds must not make them look free).
    A cheap model that draws the class on no seed is a ValueError, or with ``allow_empty`` a result
    that says so (a weak proxy, such as a closed form, may choose nothing).

    ``baseline``: an earlier study of the same expensive model on the same seeds and target (a second
    proxy compared with the first); its run of the expensive model over every seed (base rate and
    seconds) is reused instead of sampled again. ValueError when its seeds or target differ, or it
    never ran the expensive model."""
    kw = dict(sampler=sampler, steps=steps, batch_size=batch_size, cache_samples=False)
    seeds = torch.as_tensor(list(seeds))
    if baseline is not None and (baseline.n_seeds != len(seeds) or baseline.target != target
                                 or baseline.precision is None):
        raise ValueError("the baseline study must have run the expensive model on the same seeds and target "
                         f"(it has {baseline.n_seeds} seeds, class {baseline.target}; here {len(seeds)}, class {target})")
    start = time.perf_counter()
    cheap_all = generate(cheap, seeds, shape, name="cheap", **kw)
    cheap_seconds = time.perf_counter() - start
    chosen = seeds[classifier.probabilities(cheap_all.images).argmax(1) == target]
    if len(chosen) == 0:
        if allow_empty:
            return ProxyStudy(target, len(seeds), chosen, None, math.nan, None, cheap_seconds, math.nan, 0.0, math.nan)
        raise ValueError(f"the cheap model drew no image of class {target} in {len(seeds)} seeds")
    start = time.perf_counter()
    exp_chosen = generate(expensive, chosen, shape, name="expensive, chosen seeds", **kw)
    chosen_seconds = time.perf_counter() - start
    if baseline is None:
        start = time.perf_counter()
        exp_all = generate(expensive, seeds, shape, name="expensive", **kw)
        expensive_seconds = time.perf_counter() - start
        base = float((classifier.probabilities(exp_all.images).argmax(1) == target).double().mean())
    else:
        expensive_seconds, base = baseline.expensive_seconds, baseline.base_rate
    hits = int((classifier.probabilities(exp_chosen.images).argmax(1) == target).sum())
    rp = rp_score(Samples(cheap_all.by_seed(chosen), chosen), exp_chosen, descriptor, threshold=rule)
    per_target_proxy = (cheap_seconds + chosen_seconds) / max(hits, 1)
    per_target_direct = expensive_seconds / max(base * len(seeds), 1)
    precision = Score("precision", hits / len(chosen), wilson_ci(hits, len(chosen)), len(chosen), float("nan"),
                      "classifier label", "classifier", f"class {target}")
    return ProxyStudy(target, len(seeds), chosen, precision, base, rp,
                      cheap_seconds, expensive_seconds, chosen_seconds, per_target_proxy / per_target_direct)


@dataclass
class Audit:
    """A model's samples flagged as copies of a training image by the book's same-image rule.

    ``gl``: the GL score (fraction *not* flagged); ``flagged``: seeds of the flagged samples, most
    similar first; ``copies``: ``(len(flagged), C, H, W)`` the training image each one copies."""

    samples: Samples
    gl: Score
    flagged: torch.Tensor
    copies: torch.Tensor


def replication_audit(samples: Samples, train_images: torch.Tensor, *, rule: SameImageRule,
                      descriptor="pixel") -> Audit:
    """GL as a privacy check: which of ``samples`` copy a training image, and which image."""
    score = gl_score(samples, train_images, descriptor, threshold=rule)
    order = torch.argsort(score.similarities, descending=True)
    flagged = order[score.similarities[order] > rule.threshold]
    return Audit(samples, score, samples.seeds[flagged], train_images[score.nearest[flagged]])


def reference_row(sweep, study, size: str, seed: int, n: int, *, references: Sequence[str] = ("D*", "Gaussian"),
                  name: str | None = None):
    """One row of images from stored samples: model ``size`` of ``sweep`` (a
    :class:`reprodiff.regimes.SweepResult`) at N = ``n`` from ``seed``, each reference's sample
    from the same seed (:func:`reprodiff.regimes.reference_study`'s ``study``), and the model
    sample's nearest training image by the sweep's same-image descriptor (GL's neighbour).
    ``name`` titles the model's column (default: ``size``)."""
    from .plots import image_grid

    model = sweep.samples[(size, n)]
    near = sweep.nearest[(size, n)][[int(i) for i, s in enumerate(model.seeds) if int(s) == seed]]
    return image_grid({f"seed {seed}, N={n}": torch.cat([model.by_seed([seed]),
                                                         *(study.samples[(r, n)].by_seed([seed]) for r in references),
                                                         sweep.train_sets[n][near]])},
                      [name or size, *references, "nearest training"], scale=1.3)


class ReferenceExplorer:
    """Stored samples explored by seed and N: :func:`reference_row` for the ``seed`` (IntSlider up
    to ``max_seed``) and ``n`` (SelectionSlider over the sweep's N) chosen; :attr:`widget` is the box
    to display, :meth:`update` redraws it in ``out`` (the sliders call it)."""

    def __init__(self, sweep, study, size: str, *, max_seed: int, references: Sequence[str] = ("D*", "Gaussian"),
                 name: str | None = None) -> None:
        import ipywidgets as widgets

        self.sweep, self.study, self.size, self.references, self.name = sweep, study, size, tuple(references), name
        self.seed = widgets.IntSlider(value=0, min=0, max=max_seed, description="seed")
        self.n = widgets.SelectionSlider(options=list(sweep.n_train), value=sweep.n_train[0], description="N")
        self.out = widgets.Output()
        for w in (self.seed, self.n):
            w.observe(self.update, "value")
        self.widget = widgets.VBox([widgets.HBox([self.seed, self.n]), self.out])

    def figure(self):
        """The row of the current seed and N."""
        return reference_row(self.sweep, self.study, self.size, self.seed.value, self.n.value,
                             references=self.references, name=self.name)

    def update(self, change=None) -> None:
        """Redraw (the sliders call this on every change)."""
        _redraw(self.out, self.figure)
