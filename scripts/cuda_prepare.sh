#!/usr/bin/env bash
# Fill .cuda-carry/ with what scripts/cuda_check.sh needs on a CUDA machine that reaches no package
# registry: llama-cpp-python's source (trimmed to what the build reads), wheels of edgeassist's
# runtime dependencies for Python 3.12 on x86-64 Linux, and the Qwen 3.5 tokenizer cache that the
# synthetic models are built from. Run it here, where pip reaches PyPI; it prints the sizes, and
# fails when the carry and the repository together would not travel (64 MiB).
#
#   scripts/cuda_prepare.sh            # into .cuda-carry/ (git-ignored); re-runs reuse the download
#
# Environment:
#   LLAMA_CPP_VERSION   llama-cpp-python to carry (default 0.3.36, the version the tokenizer cache is named for)
#   CUDA_PREPARE_SKIP   wheels left out because the target image has them (default: numpy; "" carries all)
#   CUDA_PREPARE_PYTHON the Python whose pip downloads (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
version="${LLAMA_CPP_VERSION:-0.3.36}"
skip="${CUDA_PREPARE_SKIP-numpy}"
py="${CUDA_PREPARE_PYTHON:-}"
[ -n "$py" ] || { [ -x .venv/bin/python ] && py=.venv/bin/python || py=python3; }
carry="$root/.cuda-carry"
download="$root/.cuda-build/download"  # the full sdist, kept for re-runs (git-ignored, never carried)
limit_mib=64

die() { echo "cuda_prepare: $*" >&2; exit 1; }
command -v "$py" >/dev/null || die "no Python at '$py': set CUDA_PREPARE_PYTHON"
"$py" -m pip --version >/dev/null 2>&1 || die "$py has no pip: set CUDA_PREPARE_PYTHON to a Python with pip"

pip_quiet() {
  # pip's own lines go to a log; on failure its last line says why, in one line.
  local log
  log="$(mktemp)"
  if ! "$py" -m pip "$@" --disable-pip-version-check >"$log" 2>&1; then
    local why
    why="$(grep -v '^\s*$' "$log" | grep -iv 'is ignored' | tail -1)"
    rm -f "$log"
    die "pip ${1} failed: ${why:-no output}"
  fi
  rm -f "$log"
}

# 1. llama-cpp-python's sdist, whole (for the tokenizer) and trimmed (for the build).
sdist="$download/llama_cpp_python-$version.tar.gz"
if [ ! -f "$sdist" ]; then
  echo "cuda_prepare: downloading llama-cpp-python $version (sdist, ~75 MB)" >&2
  mkdir -p "$download"
  pip_quiet download --no-deps --no-binary :all: -d "$download" "llama-cpp-python==$version"
fi
[ -f "$sdist" ] || die "pip did not leave $sdist"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar -xzf "$sdist" -C "$work"
src="$work/llama_cpp_python-$version"
[ -d "$src/vendor/llama.cpp" ] || die "$sdist has no vendor/llama.cpp: not a llama-cpp-python sdist?"

# The tokenizer cache: edgeassist.synthetic reads these two files from
# $EDGEASSIST_CACHE_DIR/llama-cpp-python-<version>/ and only fetches the sdist when they are missing.
cache="$carry/cache/llama-cpp-python-$version"
rm -rf "$carry/cache"
mkdir -p "$cache"
cp "$src/vendor/llama.cpp/models/ggml-vocab-qwen35.gguf" "$cache/"
cp "$src/vendor/llama.cpp/models/templates/Qwen3.5-4B.jinja" "$cache/"

# What the build does not read: llama.cpp's models (75 MB of vocab files), docs, the tools other
# than mtmd (the web UI alone is 8 MB), tests, examples, Python converters, and the ggml backends
# other than CPU, CUDA, BLAS and RPC. CMake adds tests/examples/tools only for a standalone build,
# and a backend's folder only when its GGML_<NAME> option is on.
vendor="$src/vendor/llama.cpp"
rm -rf "$src"/{docs,docker,examples,tests} \
  "$vendor"/{models,docs,media,benches,tests,examples,pocs,app,gguf-py,conversion,scripts,requirements,skills,ci} \
  "$vendor"/{.github,.devops,.gemini,.pi,grammars} "$vendor"/convert_*.py
find "$vendor/tools" -mindepth 1 -maxdepth 1 ! -name mtmd ! -name CMakeLists.txt -exec rm -rf {} +
# The git metadata stays, less its object packs (37 MB): llama.cpp's CMake reads the commit from it
# (`git rev-parse --short HEAD` still answers), which the system report shows as the ggml commit.
find "$src/.git" -type d -name pack -prune -exec sh -c 'rm -f "$1"/*' _ {} \;
for backend in cann et hexagon hip metal musa opencl openvino sycl virtgpu vulkan webgpu zdnn zendnn; do
  rm -rf "$vendor/ggml/src/ggml-$backend"
done
mkdir -p "$carry/sdist"
rm -f "$carry/sdist"/*.tar.gz
tar -czf "$carry/sdist/llama_cpp_python-$version.tar.gz" -C "$work" --sort=name --owner=0 --group=0 \
  "llama_cpp_python-$version"

# 2. Wheels: edgeassist's runtime dependencies (pyproject.toml, less llama-cpp-python, which is built
# there), llama-cpp-python's own, and the build backend that installs edgeassist from the tree.
mapfile -t reqs < <("$py" - "$src/pyproject.toml" <<'EOF'
import sys, tomllib
from pathlib import Path
mine = tomllib.loads(Path("pyproject.toml").read_text())
llama = tomllib.loads(Path(sys.argv[1]).read_text())
reqs = [r for r in mine["project"]["dependencies"] if not r.lower().startswith("llama-cpp-python")]
reqs += llama["project"]["dependencies"] + mine["build-system"]["requires"]
print("\n".join(r.split(";")[0].strip() for r in reqs if "python_version <" not in r))
EOF
)
rm -rf "$carry/wheels"
mkdir -p "$carry/wheels"
echo "cuda_prepare: downloading wheels for CPython 3.12 x86-64: ${reqs[*]}" >&2
platforms=()
for p in manylinux1 manylinux2010 manylinux2014 manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 \
  manylinux_2_31 manylinux_2_34 manylinux_2_35; do
  platforms+=(--platform "${p}_x86_64")
done
pip_quiet download --only-binary :all: --python-version 3.12 --implementation cp --abi cp312 --abi abi3 \
  --abi none "${platforms[@]}" --platform any -d "$carry/wheels" "${reqs[@]}"
for name in $skip; do
  rm -f "$carry/wheels/${name}"-[0-9]*.whl
done

# 3. Sizes: the carry plus what travels anyway (tracked files, untracked files git does not ignore).
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
bytes() { du -sb "$@" 2>/dev/null | awk '{ n += $1 } END { print n + 0 }'; }
tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
untracked=${untracked:-0}
total_carry=$(bytes "$carry")
printf '%-44s %s\n' \
  "sdist (trimmed, from $(mib "$(stat -c %s "$sdist")"))" "$(mib "$(bytes "$carry/sdist")")" \
  "wheels ($(ls "$carry/wheels" | wc -l) files; left out: ${skip:-none})" "$(mib "$(bytes "$carry/wheels")")" \
  "tokenizer cache" "$(mib "$(bytes "$carry/cache")")" \
  ".cuda-carry in all" "$(mib "$total_carry")" \
  "tracked files" "$(mib "$tracked")" \
  "untracked files git does not ignore" "$(mib "$untracked")"
travel=$((total_carry + tracked + untracked))
printf '%-44s %s of %s MiB\n' "what a device run sends" "$(mib "$travel")" "$limit_mib"
ls "$carry/wheels" > "$carry/MANIFEST"
[ "$travel" -lt $((limit_mib * 1048576)) ] || die "that is over the ${limit_mib} MiB a device run may send"
