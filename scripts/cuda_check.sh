#!/usr/bin/env bash
# Build llama-cpp-python with CUDA and check edgeassist's engine on the GPU, end to end:
#   1. build llama-cpp-python with -DGGML_CUDA=on for this GPU's architecture (nvidia-smi's
#      compute_cap: 90 on Hopper), on every core
#   2. install it and edgeassist (from this tree) into a venv layered over the base Python's packages;
#      offline from .cuda-carry/wheels when scripts/cuda_prepare.sh made it, else from the index
#   3. build the synthetic Qwen 3.5 0.8B and 2B (random weights; the tokenizer from .cuda-carry/cache)
#   4. scripts/cuda_engine_check.py on them (backend, offload, flash attention, restore, cancel, memory),
#      then the engine's tests that run without the starter model
#   5. edgeassist bench --synthetic 0.8b,2b --json $OUT/cuda.json, merged into the check's table;
#      then the 4B too when the time budget still allows
# Everything is logged to $OUT as it goes, so a run cut off at its limit still returns what it had.
#
# On a CUDA machine (CUDA toolkit with nvcc, CMake >= 3.21, a C++ compiler, the NVIDIA driver):
#   scripts/cuda_check.sh                  # results in .cuda-build/out/ unless OUT is set
# On this workplace's device machine (no registry there: run scripts/cuda_prepare.sh first, here):
#   run(command="bash scripts/cuda_check.sh", carry=[".cuda-carry"], timeout_s=600)
# The CUDA build is most of the run: ~145 CUDA files, the flash-attention and mmq template instances
# taking minutes each on one core. A run returns the wheel it built in $OUT (in parts of 15 MiB where
# it is bigger, since no file over 16 MiB comes back); put the wheel or its parts in .cuda-carry/llama/
# and the next run installs it instead of building. If the build cannot fit the run,
# CUDA_CHECK_CMAKE_ARGS=-DGGML_CUDA_FA=OFF about halves it (llama.cpp then has no flash attention).
#
# Environment:
#   OUT                     where the log and results go (default: .cuda-build/out)
#   CUDA_CHECK_PYTHON       the base Python (default: python3); its packages stay visible in the venv
#   CUDA_CHECK_WORK         source, build tree, venv and models (default: .cuda-build/work, git-ignored: a
#                           warm device machine keeps it between runs, and a cut-off build resumes)
#   CUDA_CHECK_ARCH         CUDA architectures for CMake (default: from nvidia-smi, e.g. 90)
#   CUDA_CHECK_SHAPES       synthetic shapes for the check and the bench (default: 0.8b,2b)
#   CUDA_CHECK_BUDGET_S     seconds this run may take; the 4B is added only if it fits (default: 560)
#   CUDA_CHECK_LLAMA_WHEEL  a llama-cpp-python wheel to install instead of building one
#   CUDA_CHECK_CMAKE_ARGS   more CMake arguments for the build (e.g. -DGGML_CUDA_FA=OFF)
#   CUDA_CHECK_ALLOW_CPU=1  without nvcc, check steps 2-5 on the CPU (with CUDA_CHECK_LLAMA_WHEEL or
#                           llama-cpp-python from the index): proves the script, not the GPU
# Exit status: 0 all passed; 1 a check, test or bench failed; 3 a tool is missing (nvcc, cmake,
# nvidia-smi); 4 the build failed; 5 the install failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
start=$SECONDS
version="${LLAMA_CPP_VERSION:-0.3.36}"
base_py="${CUDA_CHECK_PYTHON:-python3}"
work="${CUDA_CHECK_WORK:-$root/.cuda-build/work}"
shapes="${CUDA_CHECK_SHAPES:-0.8b,2b}"
budget="${CUDA_CHECK_BUDGET_S:-560}"
allow_cpu="${CUDA_CHECK_ALLOW_CPU:-0}"
carry="$root/.cuda-carry"
OUT="${OUT:-$root/.cuda-build/out}"
mkdir -p "$OUT" "$work"
OUT="$(cd "$OUT" && pwd)"
venv="$work/venv"
vpy="$venv/bin/python"
models="$work/models"
export PYTHONUNBUFFERED=1 EDGEASSIST_MODEL__MODELS_DIR="$models"
[ -d "$carry/cache" ] && export EDGEASSIST_CACHE_DIR="$carry/cache"
exec > >(tee -a "$OUT/cuda_check.log") 2>&1
tee_pid=$!
# On exit, let tee write the last lines before this process is gone (the caller reads them last).
trap 'exec >&- 2>&-; wait "$tee_pid"' EXIT
failed=0

say() { printf '[%4ds] %s\n' $((SECONDS - start)) "$*"; }
die() {  # die CODE MESSAGE: one line, and the exit status the header lists
  local code=$1
  shift
  say "cuda_check: $*"
  exit "$code"
}
step() { say "== $*"; }
left() { echo $((budget - (SECONDS - start))); }

pip_flags=()
if [ -d "$carry/wheels" ]; then
  pip_flags=(--no-index --find-links "$carry/wheels")
fi
pip_install() {  # quiet unless it fails; then its last lines, and the caller says what failed
  "$vpy" -m pip install --disable-pip-version-check "${pip_flags[@]}" "$@" >"$work/pip.log" 2>&1 && return 0
  grep -v '^\s*$' "$work/pip.log" | tail -5
  return 1
}

step "0. machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2>/dev/null ||
  say "nvidia-smi: not available"
say "$(nproc) cores; base Python: $("$base_py" --version 2>&1) at $(command -v "$base_py" || echo "$base_py")"

# -- 2a. the venv (first: step 1 builds with its Python) ------------------------------------------
make_venv() {
  # A venv without pip of its own, seeing the base Python's packages (on the device the image's
  # numpy, pytest, scikit-build-core, pip...) after its own, so the carried wheels shadow older ones.
  [ -x "$vpy" ] && return 0
  "$base_py" -m venv --without-pip "$venv" || return 1
  local site
  site="$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || return 1
  "$base_py" - "$site/_edgeassist_base.pth" <<'EOF' || return 1
import site, sys
paths = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
with open(sys.argv[1], "w") as f:
    f.write("import site; " + "; ".join(f"site.addsitedir({p!r})" for p in paths) + "\n")
EOF
}
make_venv || die 5 "cannot make a venv at $venv with $base_py (is its venv module there?)"
"$vpy" -m pip --version >/dev/null 2>&1 || die 5 "$base_py has no pip for the venv to use: install pip for it"

# -- 1. llama-cpp-python with CUDA -----------------------------------------------------------------
backend() { "$vpy" -c 'from edgeassist.engine.build import llama_backend_name as b; print(b())' 2>/dev/null; }

find_nvcc() {
  command -v nvcc >/dev/null && return 0
  local d
  for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
    [ -x "$d/nvcc" ] && export PATH="$d:$PATH" && return 0
  done
  return 1
}

find_tool() {  # find_tool NAME: on PATH, else from the Python package of that name (cmake, ninja on PyPI)
  command -v "$1" >/dev/null && return 0
  local bin
  bin="$("$vpy" -c "import $1, os; print(getattr($1, 'BIN_DIR', '') or os.path.dirname($1.__file__) + '/data/bin')" 2>/dev/null)"
  [ -x "$bin/$1" ] && export PATH="$bin:$PATH"
}

cuda_arch() {
  if [ -n "${CUDA_CHECK_ARCH:-}" ]; then
    echo "$CUDA_CHECK_ARCH"
    return 0
  fi
  local caps
  caps="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d ' .' | sort -u | paste -sd ';')"
  [ -n "$caps" ] || return 1
  echo "$caps"
}

cuda_lib_args() {
  # ggml-cuda links cuBLAS and the driver library. A toolkit assembled from NVIDIA's pip wheels
  # (nvcc, runtime) may have neither: cuBLAS then comes from the Python packages beside it
  # (nvidia-cublas, which PyTorch installs; its folder goes into the library's run path), the
  # driver library from the driver's own folder; without one, ggml's VMM pool is left out.
  local top lib so lt driver
  top="$(nvcc -v --dryrun /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)"
  top="$(cd "${top:-$(dirname "$(command -v nvcc)")/..}" && pwd)"
  if ! compgen -G "$top/lib*/libcublas.so*" >/dev/null && ! compgen -G "$top/targets/*/lib/libcublas.so*" >/dev/null; then
    lib="$("$vpy" - <<'EOF'
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
for root in nvidia.__path__:
    for found in sorted(glob.glob(os.path.join(root, "*", "lib", "libcublas.so.*")), reverse=True):
        print(os.path.dirname(found))
        raise SystemExit
EOF
)"
    [ -n "$lib" ] || return 1
    so="$(ls "$lib"/libcublas.so.* | head -1)"
    lt="$(ls "$lib"/libcublasLt.so.* | head -1)"
    say "cuBLAS is not in $top: using the one in $lib" >&2
    echo "-DCUDA_cublas_LIBRARY=$so -DCUDA_cublasLt_LIBRARY=$lt -DCMAKE_CUDA_FLAGS=-I$lib/../include -DCMAKE_CXX_FLAGS=-I$lib/../include"
  fi
  if ! compgen -G "$top/lib*/stubs/libcuda.so" >/dev/null && ! compgen -G "$top/targets/*/lib/stubs/libcuda.so" >/dev/null; then
    driver="$({ ls /usr/local/nvidia/lib64/libcuda.so* /usr/local/nvidia/lib/libcuda.so* 2>/dev/null
      ldconfig -p 2>/dev/null | awk '/libcuda\.so/ { print $NF }'; } | head -1)"
    if [ -n "$driver" ]; then
      say "the toolkit has no driver stub: linking the driver's $driver" >&2
      echo "-DCUDA_cuda_driver_LIBRARY=$driver"
    else
      say "no driver library (libcuda.so) to link: building without ggml's VMM memory pool" >&2
      echo "-DGGML_CUDA_NO_VMM=ON"
    fi
  fi
}

build_wheel() {  # build_wheel ARCH: sets $wheel
  local arch=$1 src_dir="$work/src/llama_cpp_python-$version" sdist="$carry/sdist/llama_cpp_python-$version.tar.gz"
  find_tool cmake || die 3 "cmake not found: install CMake 3.21 or newer"
  find_tool ninja || say "ninja not found: CMake will use make"
  "$vpy" -c 'import scikit_build_core' 2>/dev/null || pip_install scikit-build-core ||
    die 3 "scikit-build-core is missing and cannot be installed (pip install scikit-build-core)"
  local extra
  extra="$(cuda_lib_args | paste -sd ' ')" ||  # (pipefail: cuda_lib_args's own status)
    die 3 "cuBLAS not found beside nvcc ($(command -v nvcc)) nor in the nvidia Python packages: install the toolkit's cuBLAS"
  if [ ! -d "$src_dir" ]; then
    mkdir -p "$work/src"
    if [ ! -f "$sdist" ]; then
      say "no $sdist: downloading the sdist"
      sdist="$work/src/llama_cpp_python-$version.tar.gz"
      "$vpy" -m pip download --disable-pip-version-check --no-deps --no-binary :all: -d "$work/src" \
        "llama-cpp-python==$version" >"$work/pip.log" 2>&1 ||
        die 4 "cannot download llama-cpp-python $version: $(tail -1 "$work/pip.log")"
    fi
    tar -xzf "$sdist" -C "$work/src" || die 4 "cannot unpack $sdist"
  fi
  say "building for CUDA architectures $arch on $(nproc) cores; the compiler's output goes to $OUT/build.log"
  rm -rf "$work/wheel"
  # mtmd (LLAVA_BUILD) is the multimodal library: edgeassist does not load it, and it costs build time.
  # -v: the compiler's progress ([n/N] lines) reaches build.log as it goes, even for a run cut off.
  if ! CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$arch -DLLAVA_BUILD=off $extra ${CUDA_CHECK_CMAKE_ARGS:-}" \
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$vpy" -m pip wheel -v --disable-pip-version-check --no-deps --no-build-isolation -w "$work/wheel" \
    -C "build-dir=$work/cmake" "$src_dir" >"$OUT/build.log" 2>&1; then
    grep -E 'error|Error|ERROR' "$OUT/build.log" | tail -5
    die 4 "the CUDA build of llama-cpp-python failed: see $OUT/build.log"
  fi
  wheel="$(ls "$work"/wheel/llama_cpp_python-*.whl | head -1)"
}

step "1. llama-cpp-python with CUDA"
wheel=""
if [ "$(backend)" = cuda ]; then
  say "already installed with CUDA in $venv: not rebuilt"
elif [ -n "${CUDA_CHECK_LLAMA_WHEEL:-}" ]; then
  wheel="$CUDA_CHECK_LLAMA_WHEEL"
  say "installing the given wheel $wheel"
elif compgen -G "$carry/llama/llama_cpp_python-$version-*.whl*" >/dev/null; then
  # The wheel, or the parts of 15 MiB an earlier run returned it in (joined in name order).
  first="$(ls "$carry"/llama/llama_cpp_python-"$version"-*.whl* | head -1)"
  wheel="$work/carried/$(basename "${first%.part-*}")"
  mkdir -p "$work/carried"
  if [ "$first" = "${first%.part-*}" ]; then
    cp "$first" "$wheel"
  else
    cat "${first%.part-*}".part-* >"$wheel"
  fi || die 5 "cannot copy the carried wheel to $wheel"
  say "installing the carried wheel $(basename "$wheel") (built by an earlier run)"
elif ! find_nvcc; then
  [ "$allow_cpu" = 1 ] || die 3 "nvcc not found: install the CUDA toolkit or put its bin/ on PATH" \
    "(CUDA_CHECK_ALLOW_CPU=1 checks the rest on the CPU)"
  [ "${#pip_flags[@]}" = 0 ] || die 3 "nvcc not found, and offline: set CUDA_CHECK_LLAMA_WHEEL to a llama-cpp-python wheel"
  say "nvcc not found; CUDA_CHECK_ALLOW_CPU=1: llama-cpp-python $version from the index, on the CPU"
  wheel="llama-cpp-python==$version"
else
  say "nvcc: $(nvcc --version | tail -1)"
  arch="$(cuda_arch)" || die 3 "cannot read the GPU's compute capability with nvidia-smi: set CUDA_CHECK_ARCH (90 on Hopper)"
  t0=$SECONDS
  build_wheel "$arch"
  say "built $(basename "$wheel") in $((SECONDS - t0)) s ($(du -h "$wheel" | cut -f1))"
  if [ "$(stat -c %s "$wheel")" -lt $((16 * 1048576)) ]; then
    cp "$wheel" "$OUT/"
  else
    split -b 15M "$wheel" "$OUT/$(basename "$wheel").part-"
  fi
  say "the wheel is in \$OUT: carry it (or its parts) in .cuda-carry/llama/ to skip the build next time"
fi

# -- 2. install --------------------------------------------------------------------------------
step "2. install edgeassist and llama-cpp-python into $venv"
# A wheel built elsewhere finds cuBLAS and the CUDA runtime where the system keeps them, else in the
# nvidia Python packages (PyTorch's): those go last on the library path.
nvidia_libs="$("$vpy" -c 'import glob, nvidia, os
print(":".join(sorted({os.path.dirname(p) for r in nvidia.__path__ for p in glob.glob(os.path.join(r, "*", "lib", "lib*.so*"))})))' 2>/dev/null)"
[ -n "$nvidia_libs" ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$nvidia_libs"
# First the wheel alone, over any llama-cpp-python the base Python has; then edgeassist, which
# resolves the wheel's dependencies and its own against the carried wheels and the base's packages.
if [ -n "$wheel" ]; then
  pip_install --force-reinstall --no-deps "$wheel" || die 5 "cannot install $wheel"
fi
pip_install ${wheel:+"$wheel"} -e "$root" || die 5 "cannot install edgeassist's dependencies (run scripts/cuda_prepare.sh where pip reaches PyPI)"
found="$(backend)"
say "llama.cpp backend: ${found:-none}"
"$vpy" - <<'EOF'
from edgeassist.engine.build import llama_build
b = llama_build()
print(f"llama-cpp-python {b.llama_cpp_python}, llama.cpp {b.llama_version}, ggml {b.ggml_version}; devices: {b.devices}")
EOF
expect=cuda
if [ "$found" != cuda ]; then
  [ "$allow_cpu" = 1 ] || die 4 "llama-cpp-python imports but was built without CUDA (backend: ${found:-none});" \
    "a CPU wheel given or carried? (CUDA_CHECK_ALLOW_CPU=1 checks the rest on the CPU)"
  expect="$found"
fi

# -- 3. synthetic models -----------------------------------------------------------------------
build_models() {  # build_models SHAPE...: prints each path; the first run fetches nothing when the cache was carried
  "$vpy" - "$@" <<'EOF'
import sys, time
from pathlib import Path
from edgeassist.config import load_settings
from edgeassist.synthetic import build, default_path
models = load_settings().models_dir()
for shape in sys.argv[1:]:
    m = build(shape, "Q4_K_M", out=default_path(shape, "Q4_K_M", models), force=False)
    how = "reused" if m.reused else f"built in {m.build_s:.1f} s"
    print(f"{m.path} ({m.size_bytes / 2**20:.0f} MiB, {how})", file=sys.stderr)
    print(m.path)
EOF
}
step "3. synthetic Qwen 3.5: ${shapes}"
t0=$SECONDS
mapfile -t paths < <(build_models ${shapes//,/ }) || true
[ "${#paths[@]}" -gt 0 ] || die 1 "the synthetic models could not be built (see above)"
build_s=$((SECONDS - t0))

# -- 4. the engine on the GPU ------------------------------------------------------------------
step "4a. engine checks (expected backend: $expect)"
"$vpy" scripts/cuda_engine_check.py --expect-backend "$expect" --json "$OUT/cuda_check.json" "${paths[@]}" || failed=1

step "4b. the engine's tests on the synthetic Qwen 3.5 (the starter model does not travel)"
tests_k="qwen or hybrid or tiny or pieces_count or renders_and_tokenizes or splitter or sampling_defaults_follow"
tests_k+=" or prefill_with_markup or expected_size or published or output_matrix or gguf_py or unknown_shape or tokenizer"
"$vpy" -m pytest -p no:cacheprovider -q tests/test_engine.py tests/test_synthetic.py tests/test_prompt_safety.py \
  -k "$tests_k" || failed=1

# -- 5. bench ----------------------------------------------------------------------------------
step "5. edgeassist bench --synthetic $shapes"
t0=$SECONDS
"$venv/bin/edgeassist" bench --synthetic "$shapes" --json "$OUT/cuda.json" --no-histogram || failed=1
bench_s=$((SECONDS - t0))
[ -f "$OUT/cuda.json" ] && { "$vpy" scripts/cuda_engine_check.py --report "$OUT/cuda.json" --json "$OUT/cuda_check.json" || failed=1; }

# -- the 4B, when the budget allows: about half as long again as the 0.8B and 2B took together -------
if [[ ",$shapes," == *,2b,* ]]; then
  need=$(((build_s + bench_s) * 3 / 2 + 30))
  if [ "$(left)" -gt "$need" ]; then
    step "6. the 4B ($(left) s left, about $need s needed)"
    mapfile -t big < <(build_models 4b) || true
    if [ "${#big[@]}" -gt 0 ]; then
      "$vpy" scripts/cuda_engine_check.py --expect-backend "$expect" --json "$OUT/cuda_check.json" "${big[@]}" || failed=1
      "$venv/bin/edgeassist" bench --synthetic 4b --json "$OUT/cuda-4b.json" --no-histogram || failed=1
      [ -f "$OUT/cuda-4b.json" ] &&
        { "$vpy" scripts/cuda_engine_check.py --report "$OUT/cuda-4b.json" --json "$OUT/cuda_check.json" || failed=1; }
    else
      failed=1
    fi
  else
    say "the 4B is left out: $(left) s left, about $need s needed"
  fi
fi

step "done in $((SECONDS - start)) s: $([ $failed = 0 ] && echo "everything passed" || echo "something FAILED (see above)")"
exit $failed
