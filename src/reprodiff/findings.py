"""What this book measured beside what the paper reported, read from the executed chapters.

The landing page's table of findings and its headline figure are never typed by hand: a Sphinx
extension (``book/_ext/landing.py``) calls :func:`collect` and :func:`cell_png` on the committed
notebooks while the book builds, so a re-executed chapter updates the landing page with it.

Each :class:`Finding` names a chapter and a regular expression over that chapter's headline output
(the cell tagged ``nbval-check-output``, which the regression tests check): the matched text is what
the table shows, verbatim. A headline whose wording no longer matches fails :func:`collect` with an
error naming the chapter and the pattern, and the book's tests with it.

The paper's column quotes Zhang et al. (2024) as read from its figures and official code (see the
book's references); where the paper gives no number, it says so.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Finding", "FINDINGS", "HEADLINE_TAG", "headline", "cell_png", "collect"]

#: the tag of every chapter's headline cell (its output is checked by the nbval regression tests)
HEADLINE_TAG = "nbval-check-output"


@dataclass(frozen=True)
class Finding:
    """One row of the landing page's table. ``pattern`` and ``baseline`` are searched in ``chapter``'s
    headline output; every match is shown (its first group that matched, if the pattern has groups), whitespace
    collapsed, joined by "; ". ``baseline`` finds the number that the finding must be read against:
    the closed form, control or null that could fake it."""

    finding: str
    chapter: str  # notebook stem under book/, e.g. "01_same_noise"
    pattern: str
    baseline: str
    paper: str


FINDINGS = [
    Finding("Two networks of different width, same noise: the same image", "01_same_noise",
            r"RP narrow vs wide [^;\n]+",
            r"RP narrow vs (?:Gaussian denoiser|D\*), 3 training seeds: [\d.]+",
            "RP 0.61-0.85 between UNet widths at N = 2¹⁵ (CIFAR-10, SSCD > 0.6)"),
    Finding("How often different architectures and objectives agree", "02_architectures",
            r"RP between models min [\d.]+, mean [\d.]+",
            r"model vs Gaussian denoiser at most [\d.]+, model vs D\* at most [\d.]+",
            "RP 0.70-0.91, mean 0.82 across released CIFAR-10 models"),
    Finding("A transformer trained to the UNets' denoising error reproduces them on some seeds, fewer than they "
            "reproduce one another", "02_architectures",
            r"(?m)along training: (x0 error at sigma 0.5 [^;]+; RP to the UNets [\d.]+-[\d.]+ -> [\d.]+-[\d.]+)"
            r"|^(\S[^\n]* with the UNets other than [^\n]+)",
            r"\((between UNets [\d.]+-[\d.]+)\)",
            "RP 0.7-0.9 between U-ViT and UNets (CIFAR-10, SSCD > 0.6)"),
    Finding("A stochastic sampler loses the agreement", "02_architectures",
            r"stochastic sampler control: ([^\n]+)",
            r"diffusion zoo [^:]*: (RP between models min [\d.]+, mean [\d.]+)",
            "no number reported"),
    Finding("Memorization at small N, generalization at large N", "03_regimes",
            r"digits UNet-XS \([^)]*\): GL [^\n]+",
            r"same-image threshold \[pixel, digits\]: [^\n]+",
            "GL about 0 for N ≤ 2¹⁰, at least 0.97 for N ≥ 2¹⁴"),
    Finding("Reproducibility dips in the transition", "03_regimes",
            r"digits RP UNet-XS vs UNet-S: [^:\n]+",
            r"digits RP\(UNet-XS, Gaussian denoiser\) at every N: [^\n]+",
            "RP 0.6-0.7 at 2⁶, minimum 0.02-0.18 near 2¹³, 0.6-0.85 at 2¹⁵"),
    Finding("Memorizing models reproduce the optimal denoiser D*", "04_theory",
            r"UNet-XS \([^)]*\): RP\(model, D\*\) [^;\n]+",
            r"UNet-XS \([^)]*\): RP\(model, D\*\) [^;\n]+; (RP\(model, Gaussian\) [^;\n]+)",
            "RP(UNet, D*) about 0.5 at 2⁶, about 0 by 2¹³-2¹⁴"),
    Finding("Generalizing models on MoLRG follow the Gaussian approximation", "04_theory",
            r"MoLRG MLP-XS \([^)]*\) at N=\d+: (RP\(model, Gaussian approximation\) [^;\n]+)",
            r"MoLRG MLP-XS \([^)]*\) at N=\d+: [^;\n]+; (RP\(model, true mixture denoiser\) [^\n]+)",
            "not measured (beyond the paper)"),
    Finding("Models trained on the same images agree more than on disjoint ones", "05_why_models_agree",
            r"(RP same data: [^;\n]+)",
            r"(disjoint data: [^\n]+)",
            "not measured (beyond the paper)"),
    Finding("Conditional models: same noise and same label, same image", "06_conditional",
            r"conditional RP at w = [^\n]+",
            r"(?:unconditional twins: |same-label null: )[^\n]+",
            "reported in Sec. 4 (figures); no number we could verify"),
    Finding("Classifier-free guidance costs agreement", "06_conditional",
            r"mean conditional RP: ([^;\n]+)",
            r"same-label null: [^\n]+",
            "not measured (beyond the paper)"),
    Finding("Guidance's cost is amplification: one shared null estimate lowers agreement further", "06_conditional",
            r"mean RP between models, (shared null estimate [^;\n]+)",
            r"mean RP between models, shared null[^;\n]+; (own null: [^\n]+)",
            "not measured (beyond the paper; its Stable Diffusion check at guidance 7.5 is another regime and rule)"),
    Finding("Conditional models copy more training images at N = 64, with or without guidance; "
            "at N = 128 both kinds generalize", "06_conditional",
            r"N = \d+: conditional GL [^\n]+",
            r"N = \d+: unconditional GL [^\n]+",
            "not measured (the paper: regimes persist for conditional models, Sec. 4)"),
    Finding("Inverse problems: same measurement and noise, same reconstruction", "07_inverse_problems",
            r"(?m)^\S[^\n]*\n\s+RP between models [\d.]+-[\d.]+",
            r"stochastic DPS [\d.]+; model vs A\^\+ y at most [\d.]+; vs Gaussian-prior DPS at most [\d.]+",
            "shown in figures (Sec. 4); no number we could verify"),
    Finding("Fine-tuned models agree: full and LoRA fine-tunes of one base", "08_fine_tuning",
            r"RP full vs (?:full|LoRA, another)[^\n]+",
            r"null \(different seeds\) median similarity [\d.]+; RP of the null pairs [\d.]+"
            r"|RP to the closed forms of the digits 5-9, at most: [^\n]+",
            "reported in Sec. 4 (figures); no number we could verify"),
    Finding("Fine-tuning moves the noise-to-image map away from the base", "08_fine_tuning",
            r"RP to the base: [^\n]+",
            r"RP full vs full \(two training seeds\): [^\n]+",
            "not measured (beyond the paper)"),
    Finding("The noise is a code the models share: it fixes the digit", "09_explorer",
            r"(?m)^(same digit from the same noise [\d.]+), from different noise [\d.]+",
            r"(?m)^same digit from the same noise [\d.]+, (from different noise [\d.]+)",
            "named as an implication (controllable generation), not measured"),
    Finding("A cheap model chooses seeds for an expensive one", "09_explorer",
            r"(proxy [^\n]+?) vs [\d.]+ at random",
            r"proxy [^\n]+? vs ([\d.]+ at random)|proxy (Gaussian denoiser [^\n]+)",
            "not measured (beyond the paper)"),
    Finding("GL as a replication audit: a memorizing model's copies", "09_explorer",
            r"audit [^\n]+N=16:[^\n]+",
            r"audit [^\n]+N=1500:[^\n]+|audit held-out real digits:[^\n]+",
            "named as an implication (model privacy), not measured"),
]


def _cells(notebook: str | Path) -> list[dict]:
    with open(notebook, encoding="utf-8") as f:
        return json.load(f)["cells"]


def _tagged(notebook: str | Path, tag: str) -> dict:
    cells = [c for c in _cells(notebook) if tag in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{notebook}: expected exactly one cell tagged {tag!r}, found {len(cells)}")
    return cells[0]


def headline(notebook: str | Path) -> str:
    """The text a chapter's headline cell printed when it was last executed."""
    cell = _tagged(notebook, HEADLINE_TAG)
    text = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    if not text.strip():
        raise ValueError(f"{notebook}: the headline cell has no printed output; execute the chapter first")
    return text


def cell_png(notebook: str | Path, tag: str) -> bytes:
    """The first PNG image the cell tagged ``tag`` displayed when it was last executed."""
    for out in _tagged(notebook, tag).get("outputs", []):
        png = out.get("data", {}).get("image/png")
        if png:
            return base64.b64decode("".join(png) if isinstance(png, list) else png)
    raise ValueError(f"{notebook}: the cell tagged {tag!r} has no PNG output; execute the chapter first")


def _quote(pattern: str, text: str) -> str:
    """Every match of ``pattern`` in ``text`` (its first group when it has one), whitespace collapsed,
    joined by "; "; empty when nothing matches."""
    def shown(m: re.Match) -> str:
        return next((g for g in m.groups() if g is not None), m.group(0))

    return "; ".join(" ".join(shown(m).split()) for m in re.finditer(pattern, text))


def collect(book_dir: str | Path, findings: list[Finding] = FINDINGS) -> list[dict]:
    """One row per finding: ``{"finding", "chapter", "measured", "baseline", "paper"}``, the measured value
    and its baseline read from the chapter's committed headline. ValueError (naming chapter and
    pattern) if either pattern matches nothing."""
    book_dir = Path(book_dir)
    texts: dict[str, str] = {}
    rows = []
    for f in findings:
        if f.chapter not in texts:
            texts[f.chapter] = headline(book_dir / f"{f.chapter}.ipynb")
        quoted = {}
        for column in ("pattern", "baseline"):
            quoted[column] = _quote(getattr(f, column), texts[f.chapter])
            if not quoted[column]:
                raise ValueError(f"{f.chapter}'s headline no longer contains {getattr(f, column)!r} ({column} of "
                                 f"the finding {f.finding!r}); update reprodiff.findings.FINDINGS with the chapter")
        rows.append({"finding": f.finding, "chapter": f.chapter, "measured": quoted["pattern"],
                     "baseline": quoted["baseline"], "paper": f.paper})
    return rows
