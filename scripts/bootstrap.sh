#!/usr/bin/env bash
# Sourced by demo.sh and test.sh: makes `uv` available and installs the locked dependencies.
set -euo pipefail
UV_VERSION=0.13.8
if ! command -v uv >/dev/null 2>&1; then
  export PATH="$HOME/.local/bin:$PATH"
fi
if ! command -v uv >/dev/null 2>&1; then
  echo "installing uv $UV_VERSION from PyPI..." >&2
  python3 -m pip install --quiet --user "uv==$UV_VERSION" 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages "uv==$UV_VERSION" 2>/dev/null \
    || { python3 -m venv "$HOME/.local/share/trovewatch-uv" \
         && "$HOME/.local/share/trovewatch-uv/bin/pip" install --quiet "uv==$UV_VERSION" \
         && mkdir -p "$HOME/.local/bin" \
         && ln -sf "$HOME/.local/share/trovewatch-uv/bin/uv" "$HOME/.local/bin/uv"; }
fi
uv sync --frozen --quiet
