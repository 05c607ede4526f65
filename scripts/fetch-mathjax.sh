#!/usr/bin/env bash
# Re-vendor MathJax 3, which typesets the book's math, so formulas render
# offline and the pages never load code from a CDN (Sphinx's default
# mathjax_path is cdn.jsdelivr.net).
#
#   scripts/fetch-mathjax.sh          # needs node/npm and the npm registry
#
# Maintainers only: the files are committed under book/_extra/_mathjax/, so
# building the book needs neither npm nor network. To upgrade, bump
# MATHJAX_VERSION below (stay on 3.x: Sphinx's mathjax3_config, which
# myst-parser fills in, is MathJax 3 configuration), run this script, rebuild,
# and commit the result.
# Verify the committed copies:  (cd book/_extra/_mathjax && sha256sum -c SHA256SUMS)
#
# Wiring: _config.yml copies book/_extra/ to the root of _build/html
# (html_extra_path) and sets sphinx.config.mathjax_path to
# _mathjax/es5/tex-chtml-full.js (written "../_mathjax/...": Sphinx resolves a
# relative mathjax_path against _static/). jupyter-book sets Sphinx's html assets
# policy to "always", so every page loads it, math or not (deferred).
#
# What is vendored, and why (the package's es5/ layout is kept, because MathJax
# finds its fonts relative to the directory its script was loaded from):
#   es5/tex-chtml-full.js   - TeX input + CommonHTML output, with *every* TeX
#                             extension built in. The smaller tex-chtml.js has
#                             the base and ams packages (so myst's amsmath
#                             environments, e.g. \begin{align}, work with both)
#                             but autoloads the rest (\boldsymbol, \color,
#                             \cancel, \ce, \bbox, \href, ...) from
#                             es5/input/tex/extensions/ at runtime; the full
#                             bundle costs ~166 KB more (~40 KB gzipped) and is
#                             smaller than tex-chtml.js plus those extensions.
#   es5/output/chtml/fonts/woff-v2/*.woff
#                           - the CHTML web fonts; the browser fetches only
#                             the ones a page's math uses.
#   LICENSE                 - Apache-2.0, which asks redistributions to carry it.
# Not vendored: MathML input (Sphinx emits TeX only), SVG output, and the
# accessibility explorer / speech (a11y/, sre/), which are loaded only when a
# reader switches them on in MathJax's context menu.
set -euo pipefail

MATHJAX_VERSION=3.2.2

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$repo_root/book/_extra/_mathjax"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

command -v npm >/dev/null || { echo "error: npm is required to re-vendor MathJax" >&2; exit 1; }

( cd "$work" && npm pack --silent "mathjax@$MATHJAX_VERSION" >/dev/null )
mkdir -p "$work/mj"
tar -xzf "$work"/mathjax-*.tgz -C "$work/mj"
src="$work/mj/package"

fonts=es5/output/chtml/fonts/woff-v2
rm -rf "$dest"
mkdir -p "$dest/$fonts"
cp "$src/LICENSE" "$dest/"
cp "$src/es5/tex-chtml-full.js" "$dest/es5/"
cp "$src/$fonts"/*.woff "$dest/$fonts/"

cat > "$dest/SOURCES.txt" <<TXT
Vendored by scripts/fetch-mathjax.sh; do not edit by hand.
es5/tex-chtml-full.js, $fonts/*.woff, LICENSE
  mathjax@$MATHJAX_VERSION (Apache-2.0) https://github.com/mathjax/MathJax
TXT
( cd "$dest" && find LICENSE es5 -type f | LC_ALL=C sort | xargs sha256sum > SHA256SUMS )

echo "Vendored into ${dest#"$repo_root"/}:"
du -sh "$dest"
