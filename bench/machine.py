"""The one machine describer of every benchmark: what the figures were measured on.

CPU model, architecture and the SIMD extensions the runtimes can use (AVX2 / AVX-512 / VNNI on
x86, NEON / dot-product on ARM), the physical, logical and usable cores and the CPU key (all from
the SDK's one CPU describer, ``scopesr.sdk.cpu``, which the artifact picker uses too), memory,
load average, the versions of the runtimes, and the
GPU when torch with CUDA is present. A shared machine skews timings, so the load average is
kept at the start (and, with :meth:`Machine.finish`, at the end) of a run.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from scopesr.sdk.cpu import FEATURES, CpuInfo, describe_cpu, parse_cpuinfo, usable_cores

__all__ = [
    "Machine",
    "describe_machine",
    "cpu_model",
    "simd_flags",
    "package_version",
    "VERSION_PACKAGES",
    "usable_cores",
]

#: Runtimes and libraries whose versions decide the figures (missing ones are left out).
VERSION_PACKAGES = (
    "torch",
    "onnxruntime",
    "ai-edge-litert",
    "tflite-runtime",
    "litert-torch",
    "opencv-contrib-python-headless",
    "numpy",
    "pillow",
    "tifffile",
)

#: SIMD flags worth naming: the int8 and bf16 kernels of ONNX Runtime, XNNPACK and oneDNN pick
#: their code paths by these (scopesr.sdk.cpu.FEATURES)
SIMD_FLAGS = FEATURES


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _cpu(lines: list[str] | None) -> CpuInfo:
    """This machine's CPU, or the CPU of the given /proc/cpuinfo lines (scopesr.sdk.cpu parses both)."""
    return describe_cpu() if lines is None else parse_cpuinfo("\n".join(lines))


def cpu_model(lines: list[str] | None = None) -> str:
    """The CPU's name: x86 ``model name``; on Arm the core (a Raspberry Pi's board first)."""
    return _cpu(lines).name


def simd_flags(lines: list[str] | None = None) -> list[str]:
    """The SIMD extensions of :data:`SIMD_FLAGS` this CPU reports, in that order."""
    return list(_cpu(lines).features)


def _physical_cores(lines: list[str]) -> int | None:
    """Distinct (physical id, core id) pairs; None where /proc/cpuinfo does not say (ARM)."""
    return _cpu(lines).physical_cores


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, ValueError, OSError):
        return None


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def package_version(pkg: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


@dataclass
class Machine:
    cpu: str
    arch: str
    simd: list[str]
    physical_cores: int | None
    logical_cores: int | None
    usable_cores: int | None
    threads: int | None  # threads given to each runtime (None: not fixed by the caller)
    memory_gib: float | None
    platform: str
    python: str
    load_average: list[float] | None
    gpu: str | None = None
    gpu_memory_gib: float | None = None
    gpu_sm_count: int | None = None
    cuda: str | None = None
    cudnn: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    load_average_end: list[float] | None = None
    cpu_key: str | None = None  # scopesr.sdk.cpu.cpu_key: the artifact picker's cache key
    int8_dot: bool | None = None  # int8 dot-product instructions (VNNI, AMX, Arm dotprod/i8mm)

    def finish(self) -> Machine:
        """Record the load average at the end of a run (other work skews timings)."""
        self.load_average_end = _load_average()
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One sentence for a report's header."""
        la = f", load average {self.load_average[0]:.2f} at start" if self.load_average else ""
        if self.load_average_end:
            la += f", {self.load_average_end[0]:.2f} at the end"
        cores = f"{self.usable_cores} usable cores (of {self.logical_cores}"
        cores += f", {self.physical_cores} physical)" if self.physical_cores else ")"
        threads = f", {self.threads} threads per runtime" if self.threads else ""
        mem = f", {self.memory_gib:g} GiB RAM" if self.memory_gib else ""
        simd = f" [{' '.join(self.simd)}]" if self.simd else ""
        gpu = self.gpu or "no GPU"
        if self.gpu and self.gpu_memory_gib:
            gpu += f" ({self.gpu_memory_gib:g} GiB, CUDA {self.cuda})"
        v = ", ".join(f"{k} {x}" for k, x in self.versions.items())
        return (
            f"{self.cpu} ({self.arch}){simd}, {cores}{threads}{mem}{la}; {gpu}; {self.platform}, "
            f"Python {self.python}; {v}"
        )


def _gpu(probe: bool | None) -> dict[str, Any]:
    """GPU facts via torch: ``probe`` None looks only when torch is already imported (so a
    torch-free benchmark does not pay for importing it), True imports it, False skips."""
    if probe is False or (probe is None and "torch" not in sys.modules):
        return {}
    try:
        import torch
    except ImportError:
        return {}
    if not torch.cuda.is_available():
        return {}
    p = torch.cuda.get_device_properties(0)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "gpu_memory_gib": round(p.total_memory / 2**30, 1),
        "gpu_sm_count": p.multi_processor_count,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def describe_machine(
    threads: int | None = None, gpu: bool | None = None, packages: tuple[str, ...] = VERSION_PACKAGES
) -> Machine:
    """Describe this machine now (see the module docstring); ``gpu`` as in :func:`_gpu`."""
    cpu = describe_cpu()
    versions = {pkg: v for pkg in packages if (v := package_version(pkg))}
    return Machine(
        cpu=cpu.name,
        arch=cpu.arch,
        simd=list(cpu.features),
        physical_cores=cpu.physical_cores,
        logical_cores=os.cpu_count(),
        usable_cores=cpu.cores,
        threads=threads,
        memory_gib=_memory_gib(),
        platform=platform.platform(terse=True),
        python=platform.python_version(),
        load_average=_load_average(),
        versions=versions,
        cpu_key=cpu.key(),
        int8_dot=cpu.int8_dot,
        **_gpu(gpu),
    )
