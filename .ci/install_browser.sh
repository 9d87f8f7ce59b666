#!/usr/bin/env bash
# Headless Chromium + Playwright for tests/test_viewer_browser.py, and Graphviz for the
# viewer's SVG/PNG export. Playwright drives the Debian browser (`playwright install`
# would download its own, which needs more than package-registry access).
set -euo pipefail
apt-get update -qq
apt-get install -y -qq chromium graphviz
python -m pip install -q playwright
