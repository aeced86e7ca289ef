"""Facts about the machine that choose defaults (thread count) and fill the bench's system report."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import cache
from pathlib import Path


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
