#!/usr/bin/env bash
# Make sure a headless-capable Chromium is on PATH (tests/test_browser.py needs it).
#
# Idempotent: does nothing when `chromium` or `chromium-browser` is on PATH
# (Google Chrome as `google-chrome`/`google-chrome-stable`, preinstalled on
# GitHub's Ubuntu runners, is accepted too). Otherwise installs Debian's
# `chromium` package with apt-get when running as root (or with passwordless
# sudo); anything else gets instructions and exit status 1.
set -euo pipefail

for exe in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$exe" >/dev/null 2>&1; then
    echo "ensure-chromium: found $(command -v "$exe")"
    exit 0
  fi
done

if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    as_root=(unavailable)
  fi
  if [ "${as_root[0]:-}" != unavailable ]; then
    echo "ensure-chromium: installing chromium with apt-get"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
    if command -v chromium >/dev/null 2>&1; then exit 0; fi
    echo "ensure-chromium: apt-get finished but no chromium on PATH" >&2
    exit 1
  fi
fi

cat >&2 <<'MSG'
ensure-chromium: no chromium, chromium-browser or google-chrome on PATH, and it
cannot be installed here (needs apt-get and root or passwordless sudo).
Install it yourself, e.g. on Debian:
  sudo apt-get update && sudo apt-get install -y chromium
then make sure it is on PATH (tests/test_browser.py looks for chromium,
chromium-browser, google-chrome, google-chrome-stable).
MSG
exit 1
