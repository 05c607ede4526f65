#!/usr/bin/env bash
# Re-vendor the JavaScript that renders ipywidgets in the built book, so widget
# pages work offline and never load code from a CDN.
#
#   scripts/fetch-widget-js.sh        # needs node/npm and the npm registry
#
# Maintainers only: the files are committed under book/_extra/_widgets/, so
# building the book needs neither npm nor network. Bump the versions below
# together with ipywidgets (ipywidgets 8.1.x declares html-manager ^1.0.1 in
# ipywidgets/_version.py), run this script, rebuild, and commit the result.
# Verify the committed copies:  (cd book/_extra/_widgets && sha256sum -c SHA256SUMS)
#
# Wiring: _config.yml copies book/_extra/ to the root of _build/html
# (html_extra_path) and points myst-nb's nb_ipywidgets_js at _widgets/*.js;
# myst-nb adds those scripts only to pages whose notebook stores widget state.
#
# What is vendored, and why:
#   require.js     - AMD loader; embed-amd.js registers its modules with it.
#   embed-amd.js   - @jupyter-widgets/html-manager bundle: base, controls,
#                    output and the html manager (ipywidgets 7 and 8 models),
#                    which renders every widget-state script on the page.
#                    Only third-party widget libraries would be fetched from a
#                    CDN (jsdelivr); the builtin widgets never are.
# Not vendored: the bundle's Font Awesome webfonts. Widget icons (Button icon=,
# Play) are drawn by the theme's own Font Awesome script instead.
set -euo pipefail

HTML_MANAGER_VERSION=1.0.15
REQUIREJS_VERSION=2.3.8

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$repo_root/book/_extra/_widgets"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

command -v npm >/dev/null || { echo "error: npm is required to re-vendor widget JS" >&2; exit 1; }

( cd "$work" && npm pack --silent \
    "@jupyter-widgets/html-manager@$HTML_MANAGER_VERSION" \
    "requirejs@$REQUIREJS_VERSION" >/dev/null )
mkdir -p "$work/hm" "$work/rq"
tar -xzf "$work"/jupyter-widgets-html-manager-*.tgz -C "$work/hm"
tar -xzf "$work"/requirejs-*.tgz -C "$work/rq"

mkdir -p "$dest"
find "$dest" -maxdepth 1 -type f -delete
cp "$work/rq/package/require.js" "$dest/"
cp "$work/hm/package/dist/embed-amd.js" "$dest/"

cat > "$dest/SOURCES.txt" <<TXT
Vendored by scripts/fetch-widget-js.sh; do not edit by hand.
require.js    requirejs@$REQUIREJS_VERSION (MIT) https://github.com/requirejs/requirejs
embed-amd.js  @jupyter-widgets/html-manager@$HTML_MANAGER_VERSION (BSD-3-Clause) https://github.com/jupyter-widgets/ipywidgets
TXT
( cd "$dest" && sha256sum require.js embed-amd.js > SHA256SUMS )

echo "Vendored into ${dest#"$repo_root"/}:"
du -ch "$dest"/* | sed 's|'"$dest"'/||'
