"""One validation layer for the numbers and image sets that enter the package's public functions.

A NaN sigma, an infinite guidance scale or one NaN training image does not crash a sampler or a
score: it turns its result into NaN, or into a confident wrong number (``topk`` ranks NaN
highest, so one NaN training image makes every sample a "copy"). Every public entry point checks
its numbers with :func:`finite_number` and its image sets with :func:`finite_images` before any
work, and the samplers check what they return with :func:`finite_output`. The messages name the
argument, its value and the allowed range.

The checks only read: they never convert, copy or reorder what the computation uses, so valid
inputs give bitwise the results they gave without them. Each costs one scalar comparison or one
``torch.isfinite(...).all()`` over a tensor.
"""

from __future__ import annotations

import math

import torch

__all__ = ["NonFiniteError", "finite_number", "first_count", "finite_images", "nonfinite_rows", "finite_output"]


class NonFiniteError(ValueError):
    """An image set (an argument, or what a sampler produced) holds NaN or inf values."""


def _as_float(name: str, value) -> float:
    """``value`` as a Python float, or ValueError: a real number (Python, numpy or a one-element
    tensor), never a bool, a string or None."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise ValueError(f"{name} must be a number, got the bool {value!r}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            raise ValueError(f"{name} must be a real number, got a tensor of shape {tuple(value.shape)} "
                             f"and dtype {value.dtype}")
        return float(value.item())
    if isinstance(value, (str, bytes)) or value is None or isinstance(value, complex):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None


def _range_text(low: float | None, high: float | None, low_inclusive: bool, high_inclusive: bool) -> str:
    if low is None and high is None:
        return "any finite number"
    if high is None:
        return f"a finite number {'>=' if low_inclusive else '>'} {low:g}"
    if low is None:
        return f"a finite number {'<=' if high_inclusive else '<'} {high:g}"
    return f"a number in {'[' if low_inclusive else '('}{low:g}, {high:g}{']' if high_inclusive else ')'}"


def finite_number(name: str, value, *, low: float | None = None, high: float | None = None,
                  low_inclusive: bool = True, high_inclusive: bool = True) -> float:
    """``value`` as a float when it is a finite real number in the given range, else ValueError.

    ``low``/``high``: the allowed range (``None``: unbounded on that side); ``low_inclusive`` and
    ``high_inclusive`` say whether the bounds themselves are allowed. Accepts Python and numpy
    numbers and one-element tensors; refuses bools, strings, None, NaN and inf. The message names
    ``name``, the value and the allowed range, e.g. ``sigma_min must be a finite number > 0, got 0.0``.

    The returned float is for messages and for arguments that the computation used as a Python
    number anyway; call sites that compute with the caller's object keep using it unchanged.
    """
    number = _as_float(name, value)
    ok = math.isfinite(number)
    if ok and low is not None:
        ok = number >= low if low_inclusive else number > low
    if ok and high is not None:
        ok = number <= high if high_inclusive else number < high
    if not ok:
        raise ValueError(f"{name} must be {_range_text(low, high, low_inclusive, high_inclusive)}, got {value!r}")
    return number


def first_count(name: str, value, total: int, total_name: str) -> int:
    """``value`` when it is an integer from 0 to ``total``: how many of the first items a study uses,
    0 meaning all of them. ValueError otherwise (bools too), naming ``total_name``, e.g.
    ``posterior_seeds must be an integer from 0 (all) to n_seeds = 256, got 300``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= total:
        raise ValueError(f"{name} must be an integer from 0 (all) to {total_name} = {total}, got {value!r}")
    return value


def nonfinite_rows(images: torch.Tensor) -> torch.Tensor | None:
    """``None`` when every value of ``images`` is finite, else a ``(N,)`` bool tensor marking the
    images (rows along the first dimension) that hold NaN or inf. One ``isfinite().all()`` when
    all is well; the per-image count is computed only on failure."""
    finite = torch.isfinite(images)
    if bool(finite.all()):
        return None
    return ~finite.reshape(len(images), -1).all(1)


def _describe(bad: torch.Tensor, ids: torch.Tensor | None, id_name: str) -> str:
    where = bad.nonzero().reshape(-1)
    values = (where if ids is None else ids.reshape(-1)[where]).tolist()
    more = "..." if len(values) > 5 else ""
    return f"{int(bad.sum())} of {len(bad)} images hold NaN or inf values ({id_name} {values[:5]}{more})"


def finite_images(name: str, images: torch.Tensor) -> torch.Tensor:
    """``images`` unchanged when it is a tensor whose values are all finite, else :class:`NonFiniteError`
    naming ``name`` and how many images (rows along the first dimension) hold NaN or inf.

    ``images``: ``(N, ...)``, any floating or integer dtype (integers are always finite).
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of images shaped (N, C, H, W), got {type(images).__name__}")
    if images.dim() == 0:
        raise ValueError(f"{name} must be a tensor of images shaped (N, C, H, W), got a 0-d tensor")
    bad = nonfinite_rows(images)
    if bad is not None:
        raise NonFiniteError(f"{name}: {_describe(bad, None, 'e.g. at indices')}; "
                             "NaN or inf values would make every result computed from them meaningless")
    return images


def finite_output(images: torch.Tensor, what: str, ids: torch.Tensor | None = None, hint: str = "") -> None:
    """:class:`NonFiniteError` when the images a sampler just produced hold NaN or inf.

    ``what`` names the sampler and model (``"heun-18 with GaussianDenoiser"``); ``ids`` the images'
    seed ids (their positions when None); ``hint`` what to try. Called once per batch, after the
    sampler and before any clamp (which would turn inf into a plausible-looking +-1).
    """
    bad = nonfinite_rows(images)
    if bad is not None:
        id_name = "positions" if ids is None else "seeds"
        raise NonFiniteError(f"{what} produced non-finite images: {_describe(bad, ids, id_name)}"
                             + (f"; {hint}" if hint else ""))

