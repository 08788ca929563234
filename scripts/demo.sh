#!/usr/bin/env bash
# Install, then upscale the built-in example clip ×4 with the default preset (the shipped FSRCNN-PS-56-Y).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/vsr-stream example out/example.mp4 --overwrite
.venv/bin/vsr-stream upscale out/example.mp4 out/example_x4.mp4 --scale 4 --overwrite
