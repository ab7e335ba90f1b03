"""scopesr.sdk.cpu: /proc/cpuinfo of the CPUs people run scopesr on, the cache key, macOS."""

from __future__ import annotations

import re

import pytest

from scopesr.sdk import cpu as C

pytestmark = pytest.mark.edge

# an AVX2-only AMD EPYC (Zen 3, as cloud VMs show it): no AVX-512, no VNNI
EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13 64-Core Processor
physical id\t: 0
siblings\t: 2
core id\t\t: 0
cpu cores\t: 1
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext ssbd ibrs ibpb stibp vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves clzero xsaveerptr wbnoinvd arat umip pku ospke vaes vpclmulqdq rdpid fsrm
bugs\t\t: sysret_ss_attrs spectre_v1 spectre_v2 spec_store_bypass srso

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13 64-Core Processor
physical id\t: 0
siblings\t: 2
core id\t\t: 0
cpu cores\t: 1
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext ssbd ibrs ibpb stibp vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves clzero xsaveerptr wbnoinvd arat umip pku ospke vaes vpclmulqdq rdpid fsrm
bugs\t\t: sysret_ss_attrs spectre_v1 spectre_v2 spec_store_bypass srso
"""

# an Intel Xeon (Cascade Lake) with AVX-512 VNNI, two physical cores of one socket
XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model\t\t: 85
model name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni

processor\t: 1
vendor_id\t: GenuineIntel
model\t\t: 85
model name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni
"""

_PI4_CORE = """processor\t: {i}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3
"""
# a Raspberry Pi 4 (Cortex-A72), 64-bit OS: NEON (asimd) but no dot product
PI4 = (
    "\n".join(_PI4_CORE.format(i=i) for i in range(4))
    + """
Hardware\t: BCM2835
Revision\t: c03114
Serial\t\t: 10000000a1b2c3d4
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""
)

_PI5_CORE = """processor\t: {i}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 1
"""
# a Raspberry Pi 5 (Cortex-A76): dot product (asimddp)
PI5 = (
    "\n".join(_PI5_CORE.format(i=i) for i in range(4))
    + """
Revision\t: d04170
Serial\t\t: 4c1b2a3d5e6f7a8b
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""
)

# a Pi 4 under a 32-bit OS: the kernel's "model name" is generic, the part names the core
PI4_32 = """processor\t: 0
model name\t: ARMv7 Processor rev 3 (v7l)
BogoMIPS\t: 108.00
Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32
CPU implementer\t: 0x41
CPU architecture: 7
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

Hardware\t: BCM2711
Model\t\t: Raspberry Pi 4 Model B Rev 1.1
"""

# big.LITTLE: four A55 without i8mm-like extras next to four A76 (features: what all cores have)
BIG_LITTLE = "\n".join(
    f"processor\t: {i}\nFeatures\t: fp asimd asimdhp asimddp{' i8mm' if i >= 2 else ''}\n"
    f"CPU implementer\t: 0x41\nCPU part\t: {'0xd05' if i < 2 else '0xd0b'}\n"
    for i in range(4)
)


@pytest.mark.parametrize(
    "text,arch,model,features,int8_dot,physical,board",
    [
        (EPYC, "x86_64", "AMD EPYC 7B13 64-Core Processor", ("sse4_2", "avx", "avx2", "fma", "f16c"), False, 1, None),
        (
            XEON,
            "x86_64",
            "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz",
            ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni"),
            True,
            2,
            None,
        ),
        (PI4, "aarch64", "Cortex-A72", ("asimd",), False, None, "Raspberry Pi 4 Model B Rev 1.4"),
        (PI5, "aarch64", "Cortex-A76", ("asimd", "asimdhp", "asimddp"), True, None, "Raspberry Pi 5 Model B Rev 1.0"),
        (PI4_32, "armv7l", "Cortex-A72", ("neon",), False, None, "Raspberry Pi 4 Model B Rev 1.1"),
    ],
)
def test_parse_cpuinfo(text, arch, model, features, int8_dot, physical, board):
    info = C.parse_cpuinfo(text, arch=arch, cores=4, logical_cores=4)
    assert info.model == model
    assert info.features == features
    assert info.int8_dot is int8_dot
    assert info.physical_cores == physical
    assert info.board == board
    assert info.arch == arch and info.cores == 4 and info.source == "/proc/cpuinfo"
    line = info.line()
    assert model in line and arch in line and "4 usable cores of 4" in line
    assert f"int8 dot product: {'yes' if int8_dot else 'no'}" in line
    if board:
        assert info.name == f"{board} ({model})"


def test_the_issue_cpus_tell_int8_apart():
    """The four CPUs of the issue: int8 pays off on the Xeon (VNNI) and the Pi 5 (dotprod) only."""
    dot = {
        name: C.parse_cpuinfo(t, arch="x", cores=1).int8_dot
        for name, t in (("epyc", EPYC), ("xeon", XEON), ("pi4", PI4), ("pi5", PI5))
    }
    assert dot == {"epyc": False, "xeon": True, "pi4": False, "pi5": True}


def test_big_little_names_both_cores_and_keeps_common_features():
    info = C.parse_cpuinfo(BIG_LITTLE, arch="aarch64", cores=4)
    assert info.model == "Cortex-A55 + Cortex-A76"
    assert info.features == ("asimd", "asimdhp", "asimddp")  # i8mm is not on every core


def test_aliases_and_unknown_parts():
    text = "processor\t: 0\nflags\t\t: avx2 avxvnni\nmodel name\t: Some  CPU\n"
    info = C.parse_cpuinfo(text, arch="x86_64", cores=1)
    assert info.features == ("avx2", "avx_vnni") and info.int8_dot and info.model == "Some CPU"
    arm = "processor\t: 0\nFeatures\t: asimd\nCPU implementer\t: 0x61\nCPU part\t: 0x022\n"
    assert C.parse_cpuinfo(arm, arch="aarch64", cores=1).model == "Arm core 0x61:0x022"


def test_cpu_key_is_stable_and_tells_cpus_apart():
    a = C.parse_cpuinfo(EPYC, arch="x86_64", cores=2)
    assert a.key() == C.parse_cpuinfo(EPYC, arch="x86_64", cores=2).key() == C.cpu_key(a)
    assert re.fullmatch(r"[0-9a-f]{16}", a.key())
    keys = {
        a.key(),
        C.parse_cpuinfo(EPYC, arch="x86_64", cores=1).key(),  # fewer cores
        C.parse_cpuinfo(XEON, arch="x86_64", cores=2).key(),
        C.parse_cpuinfo(PI4, arch="aarch64", cores=2).key(),
        C.parse_cpuinfo(PI5, arch="aarch64", cores=2).key(),
    }
    assert len(keys) == 5
    # a flag the picker does not care about (a kernel update adding one) keeps the key
    more = EPYC.replace("fsrm", "fsrm some_new_flag")
    assert C.parse_cpuinfo(more, arch="x86_64", cores=2).key() == a.key()


def test_this_machine():
    info = C.describe_cpu()
    assert info.model and info.arch and info.cores >= 1
    assert set(info.features) <= set(C.FEATURES)
    assert C.cpu_key() == info.key()
    d = info.to_dict()
    assert d["key"] == info.key() and d["name"] == info.name and isinstance(d["features"], list)


def test_usable_cores_follow_the_affinity_mask(monkeypatch):
    base = C.describe_cpu()
    monkeypatch.setattr(C, "usable_cores", lambda: base.cores + 7)
    moved = C.describe_cpu()
    assert moved.cores == base.cores + 7 and moved.key() != base.key() and moved.model == base.model


def test_macos_sysctl(monkeypatch):
    out = {
        "machdep.cpu.brand_string": "Apple M2",
        "hw.optional.neon": "1",
        "hw.optional.arm.FEAT_DotProd": "1",
        "hw.optional.arm.FEAT_I8MM": "0",
        "hw.optional.arm.FEAT_FP16": "1",
        "hw.physicalcpu": "8",
        "hw.logicalcpu": "8",
    }
    monkeypatch.setattr(C, "_sysctl", lambda *names: out)
    monkeypatch.setattr(C, "_arch", lambda: "aarch64")
    info = C._macos()
    assert info.model == "Apple M2" and info.features == ("asimd", "asimdhp", "asimddp") and info.int8_dot
    assert info.physical_cores == 8 and info.source == "sysctl"
    intel = {
        "machdep.cpu.brand_string": "Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz",
        "machdep.cpu.features": "FPU SSE4.2 AVX1.0 FMA F16C",
        "machdep.cpu.leaf7_features": "AVX2 BMI2",
    }
    monkeypatch.setattr(C, "_sysctl", lambda *names: intel)
    assert C._macos().features == ("sse4_2", "avx", "avx2", "fma", "f16c")
    monkeypatch.setattr(C, "_sysctl", lambda *names: {})
    assert C._macos() is None  # no sysctl: the platform fallback takes over


# ---------------------------------------------------------------------------- threading
def _cgroup_tree(tmp_path, files: dict[str, str], proc: str):
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (tmp_path / "proc_cgroup").write_text(proc)
    return root, tmp_path / "proc_cgroup"


@pytest.mark.parametrize(
    ("files", "proc", "want"),
    [
        # cgroup v2: a docker --cpus 1.5 container (namespaced: the process sees "/")
        ({"cpu.max": "150000 100000\n"}, "0::/\n", 1.5),
        ({"cpu.max": "max 100000\n"}, "0::/\n", None),
        # v2, a nested cgroup under a tighter parent: the smallest limit wins
        ({"cpu.max": "max 100000", "a/cpu.max": "100000 100000", "a/b/cpu.max": "300000 100000"}, "0::/a/b\n", 1.0),
        # cgroup v1 (cpu,cpuacct joint mount); quota -1 is no limit
        (
            {"cpu,cpuacct/cpu.cfs_quota_us": "200000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
            "4:memory:/x\n3:cpu,cpuacct:/\n",
            2.0,
        ),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "1:cpu:/\n", None),
        # unreadable or odd contents: no limit known
        ({"cpu.max": "garbage"}, "0::/\n", None),
        ({}, "", None),
    ],
)
def test_cgroup_cpu_limit(tmp_path, files, proc, want):
    root, pc = _cgroup_tree(tmp_path, files, proc)
    assert C.cgroup_cpu_limit(root, pc) == want


def test_cgroup_cpu_limit_without_cgroups(tmp_path):
    assert C.cgroup_cpu_limit(tmp_path / "none", tmp_path / "no_proc_file") is None


def test_available_cores_take_the_quota_rounded_up(monkeypatch):
    monkeypatch.setattr(C, "usable_cores", lambda: 8)
    monkeypatch.setattr(C, "cgroup_cpu_limit", lambda: None)
    assert C.available_cores() == 8
    monkeypatch.setattr(C, "cgroup_cpu_limit", lambda: 1.5)
    assert C.available_cores() == 2
    monkeypatch.setattr(C, "cgroup_cpu_limit", lambda: 0.2)
    assert C.available_cores() == 1
    monkeypatch.setattr(C, "cgroup_cpu_limit", lambda: 16.0)
    assert C.available_cores() == 8  # the affinity mask is the tighter bound


@pytest.mark.parametrize(
    ("cores", "threads", "spin"),
    [(1, 1, False), (2, 2, False), (4, 4, False), (5, 5, True), (16, 16, True)],
)
def test_thread_policy_rule(cores, threads, spin):
    pol = C.thread_policy(cores=cores)
    assert (pol.threads, pol.spin, pol.cores) == (threads, spin, cores)
    assert f"{cores} available cores" in pol.reason and f"spin {'on' if spin else 'off'}" in pol.reason
    assert C.SPIN_MAX_CORES == 4  # the rule the docs state


def test_thread_policy_follows_this_process(monkeypatch):
    monkeypatch.setattr(C, "available_cores", lambda: 3)
    pol = C.thread_policy()
    assert (pol.threads, pol.spin, pol.cores) == (3, False, 3)


def test_thread_policy_choices_override_the_rule():
    import numpy as np

    assert C.thread_policy(1, cores=8) == C.ThreadPolicy(1, True, 8, "1 thread (asked), spin on (8 cores > 4)")
    assert C.thread_policy(0, cores=2).threads == 2  # 0: one per available core
    assert C.thread_policy(np.int64(3), cores=2).threads == 3
    pol = C.thread_policy(spin=True, cores=2)
    assert pol.spin and pol.threads == 2 and "spin on (asked)" in pol.reason
    assert not C.thread_policy(spin=False, cores=32).spin
    assert C.thread_policy(cores=2).to_dict()["spin"] is False


@pytest.mark.parametrize(
    ("num_threads", "spin"), [(-1, None), (1.5, None), ("2", None), (True, None), (1, "no"), (1, 0)]
)
def test_thread_policy_refuses_bad_values(num_threads, spin):
    from scopesr.sdk import InputError

    with pytest.raises(InputError, match="num_threads|spin"):
        C.thread_policy(num_threads, spin, cores=2)
