"""Facts about the llama.cpp build and the CPU it runs on: backend start-up, backend name, versions, cores.

The engine needs them (its log buffer, its default thread count) and the system report shows them;
they live here, in the engine layer, so that the report above takes them from below.
"""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from edgeassist.engine.log import install_llama_log

_backend_lock = threading.Lock()
_backend_ready = False
log_tail: deque[str] = deque(maxlen=20)
"""llama.cpp's last warnings and errors: the reason behind a failed load or quantization."""


def init_backend() -> None:
    """Initialise llama.cpp once per process and route its log into `log_tail` (never the terminal)."""
    global _backend_ready
    with _backend_lock:
        if _backend_ready:
            return
        import llama_cpp

        install_llama_log(log_tail)  # (ggml's levels: 2 info, 3 warn, 4 error; its warnings and errors reach the tail)
        llama_cpp.llama_backend_init()
        _backend_ready = True


def system_info() -> str:
    """llama.cpp's `llama_print_system_info`: its backends and the CPU features it was compiled for."""
    import llama_cpp

    return str(llama_cpp.llama_print_system_info().decode("utf-8", "replace"))


@cache
def repacking_safe() -> bool:
    """Whether llama.cpp may put weights in its CPU's extra buffers (`use_extra_bufts`: AMX, repacked).

    Not in a build with AMX (`AMX_INT8 = 1`, built on Sapphire Rapids or later): there, the weights go
    to the AMX buffer and the first matrix multiply dies with SIGSEGV at `ldtilecfg` (seen here with
    llama-cpp-python 0.3.36 and with llama.cpp b11434; upstream, ggml-org/llama.cpp#20824 and the
    fix not yet merged, #26954). Without extra buffers the plain CPU kernels run, AVX-512 included.
    """
    return "AMX_INT8 = 1" not in system_info()


def model_params(n_gpu_layers: int = 0) -> object:
    """llama.cpp's model parameters as edgeassist loads every model: `n_gpu_layers` offloaded, and the
    CPU's extra buffers only where they are safe (`repacking_safe`)."""
    import llama_cpp

    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = n_gpu_layers
    params.use_extra_bufts = repacking_safe()
    return params


def llama_backend_name() -> str:
    """The accelerator llama.cpp was built with: cuda, metal, vulkan, or cpu."""
    import llama_cpp

    if not llama_cpp.llama_supports_gpu_offload():
        return "cpu"
    info = system_info().upper()
    for name in ("CUDA", "METAL", "VULKAN", "HIP", "SYCL"):
        if name in info:
            return name.lower()
    return "gpu"


@cache
def physical_cores() -> int:
    """Physical CPU cores (llama.cpp decodes fastest with one thread per physical core)."""
    try:
        if platform.system() == "Darwin":
            out = (
                subprocess.run(
                    ["sysctl", "-n", "hw.perflevel0.physicalcpu"], capture_output=True, text=True, check=False
                ).stdout.strip()
                or subprocess.run(
                    ["sysctl", "-n", "hw.physicalcpu"], capture_output=True, text=True, check=False
                ).stdout.strip()
            )
            if out.isdigit():
                return max(1, int(out))
        cpuinfo = Path("/proc/cpuinfo")
        if cpuinfo.exists():
            cores: set[tuple[str, str]] = set()
            phys = core = ""
            for line in cpuinfo.read_text().splitlines():
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "physical id":
                    phys = value
                elif key == "core id":
                    core = value
                elif not key and core:
                    cores.add((phys, core))
                    phys = core = ""
            if core:
                cores.add((phys, core))
            if cores:
                return len(cores)
    except OSError:
        pass
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class LlamaBuild:
    """The llama.cpp that llama-cpp-python carries."""

    llama_cpp_python: str
    """llama-cpp-python package version."""
    llama_version: str
    """llama.cpp library version (`llama_version()`)."""
    ggml_version: str
    """ggml version and commit, when the library exports them."""
    backend: str
    """Where edgeassist runs the model: cpu, metal, cuda, vulkan, ..."""
    devices: list[str]
    """Compute devices ggml sees, `name: description` (the GPU name appears here)."""
    features: str
    """llama.cpp's compiled-in CPU features (`llama_print_system_info`)."""
    repacking: bool = True
    """Whether weights go to the CPU's extra buffers (`repacking_safe`)."""


def llama_build() -> LlamaBuild | None:
    """Versions, backend and devices of the llama.cpp build in use; None when it does not import."""
    try:
        import llama_cpp
    except ImportError:
        return None
    init_backend()
    features = system_info().strip().rstrip("|").strip()
    ggml_version, devices = "", []
    try:
        from llama_cpp import _ctypes_extensions, _ggml

        base = _ctypes_extensions.load_shared_library("ggml-base", _ggml.libggml_base_path)
        base.ggml_version.restype = base.ggml_commit.restype = ctypes.c_char_p
        ggml_version = f"{base.ggml_version().decode()} ({base.ggml_commit().decode()})"
        lib = _ggml.libggml
        lib.ggml_backend_dev_count.restype = ctypes.c_size_t
        lib.ggml_backend_dev_get.restype = ctypes.c_void_p
        lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        for fn in (base.ggml_backend_dev_name, base.ggml_backend_dev_description):
            fn.restype, fn.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
        for i in range(lib.ggml_backend_dev_count()):
            dev = lib.ggml_backend_dev_get(i)
            name = base.ggml_backend_dev_name(dev).decode("utf-8", "replace")
            desc = base.ggml_backend_dev_description(dev).decode("utf-8", "replace")
            devices.append(f"{name}: {desc}")
    except (OSError, AttributeError):  # an older or differently packaged build: versions stay unknown
        pass
    return LlamaBuild(
        llama_cpp_python=getattr(llama_cpp, "__version__", "?"),
        llama_version=llama_cpp.llama_version().decode("utf-8", "replace"),
        ggml_version=ggml_version,
        backend=llama_backend_name(),
        devices=devices,
        features=features,
        repacking=repacking_safe(),
    )
