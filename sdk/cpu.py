"""Which CPU this is: model, architecture, the SIMD features inference kernels choose their
code paths by, the cores this process may use, and a stable key to cache per-CPU choices under.

    >>> from scopesr.sdk.cpu import describe_cpu, cpu_key
    >>> describe_cpu().line()  # e.g.
    'AMD EPYC (x86_64) [sse4_2 avx avx2 fma f16c], 2 usable cores of 2; int8 dot product: no'
    >>> cpu_key()  # a short hash of model + features + usable cores, e.g.
    'dd0c3cdf776e14ef'

Why it matters: the bundled model's int8 artifact is fast only where the CPU has int8
dot-product instructions (x86 AVX-512 VNNI / AVX-VNNI / AMX, Arm dotprod ``asimddp`` or
``i8mm``): a Raspberry Pi 5 (Cortex-A76) has them, a Pi 4 (Cortex-A72) and an AVX2-only EPYC
do not, and there the fp32 artifact can be twice as fast. Every speed figure should name
these facts, and the artifact picker (``picker.py``) caches its measurements per
:func:`cpu_key`.

Sources: Linux reads ``/proc/cpuinfo`` (x86 ``model name`` / ``flags``; Arm ``CPU
implementer`` / ``CPU part`` named from a table of cores, ``Features``, and a Raspberry Pi's
``Model`` line as the board); macOS asks ``sysctl``; elsewhere (Windows) ``platform`` and
the registry give the name and ``IsProcessorFeaturePresent`` a few features (best effort).
Standard library only: a Pi reads it without numpy or a runtime.
"""

from __future__ import annotations

import hashlib
import math
import operator
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "FEATURES",
    "INT8_DOT_FEATURES",
    "SPIN_MAX_CORES",
    "CpuInfo",
    "ThreadPolicy",
    "available_cores",
    "cgroup_cpu_limit",
    "cpu_key",
    "describe_cpu",
    "parse_cpuinfo",
    "thread_policy",
    "usable_cores",
]

#: SIMD features worth naming, in this order: what ONNX Runtime's MLAS, XNNPACK and oneDNN
#: dispatch on (x86 first, then Arm), by their Linux /proc/cpuinfo names
FEATURES = (
    # x86
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    # Arm: neon (32-bit kernels) / asimd (64-bit), fp16 arithmetic, dot product, int8 matmul, SVE
    "neon",
    "asimd",
    "asimdhp",
    "asimddp",
    "i8mm",
    "bf16",
    "sve",
    "sve2",
)
#: other spellings of the same feature (compilers and some tools write avxvnni)
ALIASES = {"avxvnni": "avx_vnni", "avx512vnni": "avx512_vnni", "dotprod": "asimddp"}
#: int8 dot-product instructions: where an int8 artifact can beat fp32
INT8_DOT_FEATURES = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")

#: (implementer, part) of /proc/cpuinfo -> core name (Arm Ltd 0x41; the cores boards ship)
ARM_PARTS = {
    (0x41, 0xB76): "ARM1176",
    (0x41, 0xC07): "Cortex-A7",
    (0x41, 0xC09): "Cortex-A9",
    (0x41, 0xC0F): "Cortex-A15",
    (0x41, 0xD03): "Cortex-A53",
    (0x41, 0xD04): "Cortex-A35",
    (0x41, 0xD05): "Cortex-A55",
    (0x41, 0xD07): "Cortex-A57",
    (0x41, 0xD08): "Cortex-A72",
    (0x41, 0xD09): "Cortex-A73",
    (0x41, 0xD0A): "Cortex-A75",
    (0x41, 0xD0B): "Cortex-A76",
    (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD0D): "Cortex-A77",
    (0x41, 0xD40): "Neoverse-V1",
    (0x41, 0xD41): "Cortex-A78",
    (0x41, 0xD44): "Cortex-X1",
    (0x41, 0xD46): "Cortex-A510",
    (0x41, 0xD47): "Cortex-A710",
    (0x41, 0xD48): "Cortex-X2",
    (0x41, 0xD49): "Neoverse-N2",
    (0x41, 0xD4B): "Cortex-A78C",
    (0x41, 0xD4D): "Cortex-A715",
    (0x41, 0xD4E): "Cortex-X3",
    (0x41, 0xD4F): "Neoverse-V2",
    (0x41, 0xD80): "Cortex-A520",
    (0x41, 0xD81): "Cortex-A720",
    (0x41, 0xD82): "Cortex-X4",
    (0x41, 0xD87): "Cortex-A725",
    (0x41, 0xD8E): "Neoverse-N3",
}

#: macOS sysctl name -> our feature name (Intel: machdep.cpu.*features lists; Apple: hw.optional)
_MAC_OPTIONAL = {
    "hw.optional.neon": "asimd",
    "hw.optional.arm.FEAT_FP16": "asimdhp",
    "hw.optional.arm.FEAT_DotProd": "asimddp",
    "hw.optional.arm.FEAT_I8MM": "i8mm",
    "hw.optional.arm.FEAT_BF16": "bf16",
    "hw.optional.avx2_0": "avx2",
    "hw.optional.fma": "fma",
    "hw.optional.avx512f": "avx512f",
    "hw.optional.avx512bw": "avx512bw",
}
_MAC_CPU_FLAGS = {
    "sse4.2": "sse4_2",
    "avx1.0": "avx",
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512vnni": "avx512_vnni",
}
#: Windows IsProcessorFeaturePresent constants (winnt.h)
_WIN_FEATURES = {38: "sse4_2", 39: "avx", 40: "avx2", 41: "avx512f", 19: "neon", 43: "asimddp"}


@dataclass(frozen=True)
class CpuInfo:
    """What a speed figure was measured on (see the module docstring)."""

    model: str  # x86 model name; Arm core name(s), e.g. "Cortex-A76" or "Cortex-A55 + Cortex-A76"
    arch: str  # x86_64, aarch64, armv7l, ...
    features: tuple[str, ...]  # of FEATURES, in that order
    cores: int  # usable by this process (its affinity mask)
    logical_cores: int | None = None
    physical_cores: int | None = None
    board: str | None = None  # e.g. "Raspberry Pi 5 Model B Rev 1.0" (Linux on Arm boards)
    source: str = "platform"  # where the facts came from: /proc/cpuinfo, sysctl, windows, platform

    @property
    def name(self) -> str:
        """The board and the core when both are known (``Raspberry Pi 4 Model B Rev 1.4 (Cortex-A72)``)."""
        return f"{self.board} ({self.model})" if self.board and self.board != self.model else self.model

    @property
    def int8_dot(self) -> bool:
        """True when the CPU has int8 dot-product instructions (VNNI, AMX, Arm dotprod/i8mm)."""
        return any(f in self.features for f in INT8_DOT_FEATURES)

    def key(self) -> str:
        """A short, stable hash of model, architecture, features and usable cores."""
        text = "|".join([self.model, self.board or "", self.arch, " ".join(self.features), str(self.cores)])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def line(self) -> str:
        """One line for reports: name, arch, features, cores, int8 dot product."""
        feats = f" [{' '.join(self.features)}]" if self.features else " [no SIMD features known]"
        cores = f"{self.cores} usable core{'s' if self.cores != 1 else ''}"
        if self.logical_cores:
            cores += f" of {self.logical_cores}"
        return f"{self.name} ({self.arch}){feats}, {cores}; int8 dot product: {'yes' if self.int8_dot else 'no'}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(features=list(self.features), name=self.name, int8_dot=self.int8_dot, key=self.key(), line=self.line())
        return d


# ---------------------------------------------------------------------------- helpers
def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), else the logical core count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_max_v2(text: str) -> float | None:
    """Cores allowed by a cgroup v2 ``cpu.max`` (``"150000 100000"``; ``"max 100000"``: no limit)."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _cfs_v1(quota_text: str, period_text: str) -> float | None:
    """Cores allowed by cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1: no limit)."""
    try:
        quota, period = int(quota_text.strip()), int(period_text.strip())
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def cgroup_cpu_limit(
    root: Path | str = "/sys/fs/cgroup", proc_cgroup: Path | str = "/proc/self/cgroup"
) -> float | None:
    """The CPU quota of this process's cgroup, in cores (``quota / period``, e.g. 1.5), or None
    when there is none or it cannot be read (not Linux, no cgroup file system).

    A container started with ``--cpus 2`` (or a Kubernetes CPU limit) sees every core of
    the host in its affinity mask but may only use the quota: threads beyond it are
    throttled. Reads cgroup v2 ``cpu.max`` and v1 ``cpu.cfs_quota_us`` in this process's
    cgroup and each parent (the smallest limit wins); a cgroup namespace that shows ``/``
    reads the limit at the mount's root.
    """
    root = Path(root)
    text = _read(Path(proc_cgroup))
    if not text:
        return None
    limits: list[float] = []
    for line in text.splitlines():
        hier, _, rest = line.partition(":")
        controllers, _, rel = rest.partition(":")
        if not hier or not rel.startswith("/"):
            continue
        if controllers == "":  # cgroup v2 (unified)
            bases, read = [root, root / "unified"], _v2_limit
        elif "cpu" in controllers.split(","):
            bases, read = [root / controllers, root / "cpu", root / "cpu,cpuacct"], _v1_limit
        else:
            continue
        for base in bases:
            d = base / rel.lstrip("/")
            while True:
                got = read(d)
                if got is not None:
                    limits.append(got)
                if d == base:
                    break
                d = d.parent
    return min(limits) if limits else None


def _v2_limit(d: Path) -> float | None:
    text = _read(d / "cpu.max")
    return _cpu_max_v2(text) if text is not None else None


def _v1_limit(d: Path) -> float | None:
    quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
    return _cfs_v1(quota, period) if quota is not None and period is not None else None


def available_cores() -> int:
    """Cores this process can actually keep busy: the affinity mask (:func:`usable_cores`),
    lowered to a cgroup CPU quota rounded up (a quota of 1.5 cores gives 2)."""
    n = usable_cores()
    limit = cgroup_cpu_limit()
    if limit is not None:
        n = min(n, max(1, math.ceil(limit - 1e-9)))
    return n


#: on machines with at most this many available cores, runtime threads sleep when out of
#: work instead of spin-waiting (see :func:`thread_policy`)
SPIN_MAX_CORES = 4


@dataclass(frozen=True)
class ThreadPolicy:
    """How many threads a runtime uses and whether its idle threads spin (see :func:`thread_policy`)."""

    threads: int
    spin: bool
    cores: int  # the available cores the rule saw
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def thread_policy(num_threads: int | None = None, spin: bool | None = None, cores: int | None = None) -> ThreadPolicy:
    """The runtime threading scopesr uses: the caller's choices where given, else the rule.

    Rule: one thread per available core (:func:`available_cores`: the affinity mask and any
    cgroup CPU quota), and on machines with at most :data:`SPIN_MAX_CORES` of them, idle
    runtime threads sleep instead of spin-waiting. A spinning thread keeps its core busy
    between operators; when another process needs that core (a camera, a display, a
    training job) the two take turns, and an inference that should have waited a few
    microseconds waits a scheduler slice instead. Measured on a 2-core EPYC with one core
    busy, ONNX Runtime's spinning default took about twice as long per tile as the same
    session with spinning off, which was as fast as one thread. On larger machines one busy
    core costs little and spinning shaves latency, so it stays on there.

    ``num_threads`` None or 0: one per available core. ``spin`` None: the rule.
    ``cores``: the available cores (default: this process's).
    """
    from .errors import InputError

    asked = 0
    if num_threads is not None:
        try:  # numpy integers too; not bool, not float
            asked = -1 if isinstance(num_threads, bool) else operator.index(num_threads)
        except TypeError:
            asked = -1
        if asked < 0:
            raise InputError(f"num_threads must be an integer >= 0 (0: one per available core), got {num_threads!r}")
    if spin is not None and not isinstance(spin, bool):
        raise InputError(f"spin must be True, False or None (None: the rule), got {spin!r}")
    n = available_cores() if cores is None else max(1, int(cores))
    threads = asked or n
    why = [f"{threads} thread{'s' if threads != 1 else ''} ({'asked' if asked else f'{n} available cores'})"]
    if spin is None:
        spin = n > SPIN_MAX_CORES
        why.append(f"spin {'on' if spin else 'off'} ({n} cores {'>' if spin else '<='} {SPIN_MAX_CORES})")
    else:
        why.append(f"spin {'on' if spin else 'off'} (asked)")
    return ThreadPolicy(threads=threads, spin=bool(spin), cores=n, reason=", ".join(why))


def _arch() -> str:
    m = platform.machine() or "unknown"
    return {"AMD64": "x86_64", "amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "ARM64": "aarch64"}.get(
        m, m.lower()
    )


def _features(words: set[str]) -> tuple[str, ...]:
    """Our names (FEATURES order) of the features among ``words`` (aliases folded)."""
    have = {ALIASES.get(w, w) for w in (x.lower() for x in words)}
    return tuple(f for f in FEATURES if f in have)


def _int(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


# ---------------------------------------------------------------------------- Linux
def parse_cpuinfo(
    text: str, arch: str | None = None, cores: int | None = None, logical_cores: int | None = None
) -> CpuInfo:
    """A :class:`CpuInfo` from the text of ``/proc/cpuinfo`` (``arch`` and the core counts
    default to this machine's; pass them to describe another machine's text)."""
    blocks: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                blocks.append(cur)
                cur = {}
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key == "processor" and "processor" in cur:  # no blank line between processors
            blocks.append(cur)
            cur = {}
        cur.setdefault(key, value.strip())
    if cur:
        blocks.append(cur)
    procs = [b for b in blocks if "processor" in b]
    everything: dict[str, str] = {}
    for b in blocks:
        for k, v in b.items():
            everything.setdefault(k, v)

    # features: those every core has (big.LITTLE cores may differ)
    flag_sets = [
        set((b.get("flags") or b.get("Features") or "").split()) for b in procs if b.get("flags") or b.get("Features")
    ]
    if not flag_sets and (everything.get("flags") or everything.get("Features")):
        flag_sets = [set((everything.get("flags") or everything.get("Features") or "").split())]
    features = _features(set.intersection(*flag_sets)) if flag_sets else ()

    # model: Arm cores by implementer/part (in order of first appearance), else the model name
    parts: list[str] = []
    for b in procs or [everything]:
        imp, part = _int(b.get("CPU implementer", "")), _int(b.get("CPU part", ""))
        if imp is not None and part is not None:
            name = ARM_PARTS.get((imp, part), f"Arm core 0x{imp:02x}:0x{part:03x}")
            if name not in parts:
                parts.append(name)
    model_name = " ".join(everything.get("model name", "").split())
    if parts:
        model = " + ".join(parts)
    elif model_name:
        model = model_name
    else:
        model = everything.get("cpu model") or everything.get("Hardware") or platform.processor() or _arch()
    board = everything.get("Model")  # Raspberry Pi; x86's lower-case "model" is a number
    if board is not None and (not board or board.isdigit()):
        board = None

    pairs = {(b.get("physical id", "0"), b["core id"]) for b in procs if "core id" in b}
    return CpuInfo(
        model=model,
        arch=arch or _arch(),
        features=features,
        cores=cores if cores is not None else usable_cores(),
        logical_cores=logical_cores if logical_cores is not None else (len(procs) or os.cpu_count()),
        physical_cores=len(pairs) or None,
        board=board or None,
        source="/proc/cpuinfo",
    )


# ---------------------------------------------------------------------------- macOS, Windows
def _sysctl(*names: str) -> dict[str, str]:
    try:
        res = subprocess.run(["sysctl", *names], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return {}
    out = {}
    for line in res.stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _macos() -> CpuInfo | None:
    s = _sysctl("machdep.cpu", "hw.optional", "hw.physicalcpu", "hw.logicalcpu")
    if not s:
        return None
    words = {name for key, name in _MAC_OPTIONAL.items() if s.get(key) == "1"}
    for key in ("machdep.cpu.features", "machdep.cpu.leaf7_features"):
        words.update(_MAC_CPU_FLAGS[w] for w in s.get(key, "").lower().split() if w in _MAC_CPU_FLAGS)
    return CpuInfo(
        model=s.get("machdep.cpu.brand_string") or platform.processor() or _arch(),
        arch=_arch(),
        features=_features(words),
        cores=usable_cores(),
        logical_cores=_int(s.get("hw.logicalcpu", "")) or os.cpu_count(),
        physical_cores=_int(s.get("hw.physicalcpu", "")),
        source="sysctl",
    )


def _windows() -> CpuInfo:
    model = platform.processor() or _arch()
    words: set[str] = set()
    try:
        if sys.platform == "win32":  # winreg exists (and its stubs declare it) on Windows only
            import winreg

            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0") as k:
                model = " ".join(str(winreg.QueryValueEx(k, "ProcessorNameString")[0]).split()) or model
    except (ImportError, OSError):
        pass
    try:
        import ctypes

        present = ctypes.windll.kernel32.IsProcessorFeaturePresent  # type: ignore[attr-defined]
        words = {name for code, name in _WIN_FEATURES.items() if present(code)}
        if "neon" in words and _arch() == "aarch64":
            words.add("asimd")
    except (ImportError, AttributeError, OSError):
        pass
    return CpuInfo(
        model=model,
        arch=_arch(),
        features=_features(words),
        cores=usable_cores(),
        logical_cores=os.cpu_count(),
        source="windows",
    )


@lru_cache(maxsize=1)
def _static() -> CpuInfo:
    """The facts that do not change while a process runs (read once)."""
    proc = Path("/proc/cpuinfo")
    if sys.platform.startswith("linux") and proc.exists():
        try:
            return parse_cpuinfo(proc.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            pass
    if sys.platform == "darwin":
        info = _macos()
        if info is not None:
            return info
    if sys.platform.startswith("win"):
        return _windows()
    return CpuInfo(
        model=platform.processor() or _arch(),
        arch=_arch(),
        features=(),
        cores=usable_cores(),
        logical_cores=os.cpu_count(),
    )


def describe_cpu() -> CpuInfo:
    """This machine's CPU (model, arch, features read once; usable cores read now: the
    affinity mask can change, e.g. under ``taskset``)."""
    info = _static()
    n = usable_cores()
    if n != info.cores:
        info = replace(info, cores=n)
    return info


def cpu_key(info: CpuInfo | None = None) -> str:
    """A short stable hash of this CPU (model + features + usable cores), for per-CPU caches."""
    return (info or describe_cpu()).key()
