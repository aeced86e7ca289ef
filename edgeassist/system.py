"""The machine as the bench reports it: OS, board, CPU clusters, SIMD, memory, and the llama.cpp build.

The llama.cpp facts and the physical core count (the engine's default thread count) come from
`edgeassist.engine.build`; `physical_cores` is re-exported here for the front ends that size threads.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgeassist.cores import free_cores
from edgeassist.engine.build import LlamaBuild, llama_build
from edgeassist.engine.build import physical_cores as physical_cores

# -- the system report ------------------------------------------------------------------------------------

# ARM "CPU part" numbers (implementer 0x41, Arm Ltd) of the cores found on boards and phones.
_ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd40": "Neoverse-V1",
    "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd48": "Cortex-X2",
    "0xd49": "Neoverse-N2",
    "0xd4b": "Cortex-A78C",
    "0xd4d": "Cortex-A715",
    "0xd4e": "Cortex-X3",
    "0xd4f": "Neoverse-V2",
    "0xd80": "Cortex-A520",
    "0xd81": "Cortex-A720",
    "0xd82": "Cortex-X4",
}

# SIMD features that matter to llama.cpp's CPU kernels, as /proc/cpuinfo spells them.
_X86_SIMD = (
    "sse3",
    "ssse3",
    "avx",
    "f16c",
    "fma",
    "avx2",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_int8",
    "amx_bf16",
)
_ARM_SIMD = {
    "asimd": "neon",
    "asimddp": "dotprod",
    "asimdhp": "fp16",
    "i8mm": "i8mm",
    "bf16": "bf16",
    "sve": "sve",
    "sve2": "sve2",
    "sme": "sme",
}


@dataclass(frozen=True)
class CpuCluster:
    """A group of identical cores (big.LITTLE boards have two or three)."""

    cpus: list[int]
    """Logical CPU numbers in the cluster."""
    core: str
    """Core type (`Cortex-A76`) where known, else empty."""
    max_mhz: float | None
    """Highest clock of the cluster, when the kernel reports it."""
    capacity: int | None
    """The kernel's relative capacity (1024 = the fastest core), when reported."""


@dataclass(frozen=True)
class SystemReport:
    """What the bench records about the machine, so that figures from different boards can be compared."""

    os: str
    """Operating system and release (`Debian GNU/Linux 12 (bookworm)`, `macOS 14.5`)."""
    kernel: str
    """Kernel release."""
    arch: str
    """Machine architecture (`x86_64`, `aarch64`, `arm64`)."""
    board: str
    """Board or computer model (`Raspberry Pi 5 Model B Rev 1.0`), when the firmware says."""
    cpu_model: str
    """CPU model name, or the core types on ARM boards."""
    physical_cores: int
    """Physical cores (the engine's default thread count)."""
    logical_cores: int
    """Logical CPUs (hyper-threads included)."""
    clusters: list[CpuCluster]
    """Core clusters, fastest first; more than one on big.LITTLE and hybrid CPUs."""
    recommended_threads: int
    """Thread count to try first: the cores outside the slowest cluster on big.LITTLE, else the physical cores."""
    simd: list[str]
    """SIMD features the CPU reports that llama.cpp can use."""
    ram_total_bytes: int | None
    """Installed memory."""
    ram_available_bytes: int | None
    """Memory available to a new process when the report was taken."""
    python: str
    """Python implementation and version."""
    llama: LlamaBuild | None
    """The llama.cpp build, when llama-cpp-python imports."""
    cores_free: int | None = None
    """Physical cores other programs left free when the report was taken (null in files from before it was kept)."""

    def thread_note(self) -> str | None:
        """A warning when the default thread count spans slow cores, else None."""
        if len(self.clusters) > 1 and self.recommended_threads < self.physical_cores:
            return (
                f"big.LITTLE CPU: the default of {self.physical_cores} threads includes slow cores; "
                f"try --threads {self.recommended_threads},{self.physical_cores}"
            )
        return None


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return ""


def _sysctl(name: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def _cpuinfo_blocks() -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per block (one per logical CPU, plus a trailer block on ARM)."""
    blocks: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for line in _read("/proc/cpuinfo").splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if cur:
                blocks.append(cur)
                cur = {}
            continue
        cur[key.strip()] = value.strip()
    if cur:
        blocks.append(cur)
    return blocks


def _os_name() -> str:
    system = platform.system()
    if system == "Darwin":
        return f"macOS {platform.mac_ver()[0]}".strip()
    if system == "Linux":
        for line in _read("/etc/os-release").splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip().strip('"')
    return f"{system} {platform.release()}".strip()


def _board() -> str:
    if platform.system() == "Darwin":
        return _sysctl("hw.model")
    model = _read("/proc/device-tree/model") or _read("/sys/firmware/devicetree/base/model")
    if model:
        return model
    vendor, product = _read("/sys/class/dmi/id/sys_vendor"), _read("/sys/class/dmi/id/product_name")
    return " ".join(p for p in (vendor, product) if p and p.lower() not in ("to be filled by o.e.m.", "default string"))


def cpu_clusters(blocks: list[dict[str, str]] | None = None) -> list[CpuCluster]:
    """Core clusters from sysfs (capacity, max clock) and /proc/cpuinfo (core type), fastest first."""
    if platform.system() == "Darwin":
        out: list[CpuCluster] = []
        first = 0
        for level in range(3):  # perflevel0 is the fastest
            count = _sysctl(f"hw.perflevel{level}.logicalcpu")
            if not count.isdigit():
                break
            name = _sysctl(f"hw.perflevel{level}.name")
            out.append(CpuCluster(list(range(first, first + int(count))), name, None, None))
            first += int(count)
        return out
    blocks = _cpuinfo_blocks() if blocks is None else blocks
    parts: dict[int, str] = {}
    for b in blocks:
        if "processor" in b and b["processor"].isdigit() and "CPU part" in b:
            part = b["CPU part"].lower()
            parts[int(b["processor"])] = _ARM_PARTS.get(part, part) if b.get("CPU implementer") == "0x41" else part
    groups: dict[tuple[int | None, float | None, str], list[int]] = {}
    for cpu_dir in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*")):
        cpu = int(cpu_dir.name[3:])
        cap = _read(cpu_dir / "cpu_capacity")
        freq = _read(cpu_dir / "cpufreq" / "cpuinfo_max_freq")
        key = (
            int(cap) if cap.isdigit() else None,
            int(freq) / 1000 if freq.isdigit() else None,
            parts.get(cpu, ""),
        )
        groups.setdefault(key, []).append(cpu)
    clusters = [CpuCluster(sorted(cpus), core, mhz, cap) for (cap, mhz, core), cpus in groups.items()]
    clusters.sort(key=lambda c: (-(c.capacity or 0), -(c.max_mhz or 0), c.cpus[0]))
    return clusters


def recommended_threads(clusters: list[CpuCluster], physical: int) -> int:
    """Threads to decode with: leave out the slowest cluster on big.LITTLE CPUs, else one per physical core."""
    if len(clusters) < 2:
        return physical
    fast = sum(len(c.cpus) for c in clusters[:-1])
    return max(1, min(fast, physical))


def _cpu_model(blocks: list[dict[str, str]], clusters: list[CpuCluster]) -> str:
    if platform.system() == "Darwin":
        return _sysctl("machdep.cpu.brand_string") or platform.processor()
    named = [c for c in clusters if c.core]
    if named:  # ARM: the core types say more than "ARMv7 Processor rev 3"
        return " + ".join(f"{len(c.cpus)}x {c.core}" for c in named)
    for b in blocks:
        if b.get("model name"):
            return b["model name"]
    for b in blocks:
        if b.get("Hardware"):
            return b["Hardware"]
    return platform.processor() or platform.machine()


def _simd(blocks: list[dict[str, str]]) -> list[str]:
    if platform.system() == "Darwin":
        if platform.machine() == "arm64":
            found = ["neon"]
            for key, name in (("FEAT_DotProd", "dotprod"), ("FEAT_I8MM", "i8mm"), ("FEAT_BF16", "bf16")):
                if _sysctl(f"hw.optional.arm.{key}") == "1":
                    found.append(name)
            return found
        flags = (_sysctl("machdep.cpu.features") + " " + _sysctl("machdep.cpu.leaf7_features")).lower().split()
        return [f for f in _X86_SIMD if f.replace("_", "") in {x.replace(".", "").replace("_", "") for x in flags}]
    for b in blocks:
        if "flags" in b:
            have = set(b["flags"].split())
            if "pni" in have:  # Linux calls SSE3 "pni" (Prescott New Instructions)
                have.add("sse3")
            return [f for f in _X86_SIMD if f in have]
        if "Features" in b:
            have = set(b["Features"].split())
            return [name for flag, name in _ARM_SIMD.items() if flag in have]
    return []


def _memory() -> tuple[int | None, int | None]:
    if platform.system() == "Darwin":
        total = _sysctl("hw.memsize")
        return (int(total) if total.isdigit() else None), None
    info: dict[str, int] = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            info[key] = int(parts[0]) * 1024
    return info.get("MemTotal"), info.get("MemAvailable")


def system_report(*, with_llama: bool = True) -> SystemReport:
    """Collect the system report (fast: reads /proc, sysfs or sysctl; no benchmarking)."""
    blocks = _cpuinfo_blocks() if platform.system() == "Linux" else []
    clusters = cpu_clusters(blocks)
    physical = physical_cores()
    total, available = _memory()
    return SystemReport(
        os=_os_name(),
        kernel=platform.release(),
        arch=platform.machine(),
        board=_board(),
        cpu_model=_cpu_model(blocks, clusters),
        physical_cores=physical,
        logical_cores=os.cpu_count() or physical,
        clusters=clusters if len(clusters) > 1 else [],
        recommended_threads=recommended_threads(clusters, physical),
        simd=_simd(blocks),
        ram_total_bytes=total,
        ram_available_bytes=available,
        python=f"{platform.python_implementation()} {platform.python_version()}",
        llama=llama_build() if with_llama else None,
        cores_free=free_cores(physical),
    )


# -- process memory ---------------------------------------------------------------------------------------


def _status_kb(key: str) -> int | None:
    for line in _read("/proc/self/status").splitlines():
        if line.startswith(key + ":"):
            parts = line.split()
            return int(parts[1]) * 1024 if len(parts) > 1 and parts[1].isdigit() else None
    return None


def rss_bytes() -> int | None:
    """This process's resident memory now (Linux), else None."""
    return _status_kb("VmRSS")


def rss_split() -> tuple[int | None, int | None]:
    """Resident memory now as (anonymous, file-backed) bytes (Linux), else (None, None).

    Anonymous pages are allocations (llama.cpp's repacked weights, the context, buffers); file-backed
    ones are mapped model pages, which the kernel can drop under memory pressure and read back.
    """
    return _status_kb("RssAnon"), _status_kb("RssFile")


def reset_peak_rss() -> bool:
    """Restart the peak-resident-memory count (Linux `clear_refs`); False when the peak cannot be reset."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int | None:
    """Peak resident memory since the last `reset_peak_rss` (Linux), else the process's lifetime peak."""
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if platform.system() == "Darwin" else int(peak) * 1024
