"""CPU detection and configurations (csrc/arch/cpu_detect.c, csrc/arch/cpu_configs.c, docs/cpus.md):
which configuration a CPU model gets, the fallbacks, the environment pins, set_cpu /
set_arch, and the block sizes of the analytical model. The kernels themselves run under
every configuration through the ``arch`` fixture of the other modules."""
import os
import subprocess
import sys

import numpy as np
import pytest

import pybackprop
from pybackprop import _gemm

RANK = {"ref": 0, "avx2": 1, "avx512": 2}
# docs/cpus.md, "How one is chosen"
FALLBACK = {"zen4": "zen3", "zen3": "haswell", "haswell": "generic", "skylakex": "haswell",
            "derived": "generic", "generic": None}
INTEL_SERVER = {0x55, 0x6A, 0x6C, 0x8F, 0xCF, 0xAD, 0xAE}


def model_config(info, avx512):
    """The documented configuration of a cpuid vendor / family / model."""
    vendor, family, model = info["vendor"], info["family"], info["model"]
    if vendor == "AuthenticAMD" and family == 0x17:
        return "haswell"
    if vendor == "AuthenticAMD" and family in (0x19, 0x1A):
        return "zen4" if avx512 else "zen3"
    if vendor == "GenuineIntel" and family == 6 and model in INTEL_SERVER and avx512:
        return "skylakex"
    return "derived"


def settle(name, cap, runnable):
    while name is not None and (name not in runnable or top_isa(name) > cap):
        name = FALLBACK[name]
    return name or "generic"


def top_isa(name):
    return max(RANK[k] for k in pybackprop.cpu_info()["configurations"][name]["kernels"]
               .values())


def _python(code, **env_vars):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYBACKPROP_CPU", "PYBACKPROP_ARCH")}
    env.update(env_vars)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)


def test_configurations_and_what_runs_here():
    """Every configuration reports its kernels; this CPU runs exactly those whose ISAs it
    has, always the portable one and the derived one."""
    info = pybackprop.cpu_info()
    archs = pybackprop.available_archs()
    assert archs[0] == "ref"
    for name, c in info["configurations"].items():
        runs = all(isa in archs for isa in c["kernels"].values())
        assert c["runs_here"] == runs, name
        assert (name in pybackprop.available_cpus()) == runs
    assert {"generic", "derived"} <= set(pybackprop.available_cpus())
    assert info["configurations"]["generic"]["kernels"] == dict.fromkeys(
        ("float32 gemm", "float64 gemm", "vector", "float32 tall", "float64 tall",
         "float32 small k", "float64 small k", "float32 row-major B", "float64 row-major B"),
        "ref")
    assert set(info["configurations"]["derived"]["kernels"].values()) == {archs[-1]}


def test_load_time_choice_follows_the_model_table():
    """Without pins, the detected model's configuration, followed down its fallbacks until
    this CPU runs it; the reason names the cpuid facts and the choice."""
    out = _python("import pybackprop as p; i = p.cpu_info(); print(i['cpu']); "
                  "print(i['reason'])")
    assert out.returncode == 0, out.stderr
    cpu, reason = out.stdout.splitlines()
    info = pybackprop.cpu_info()
    avx512 = "avx512" in pybackprop.available_archs()
    want = settle(model_config(info, avx512), 2, pybackprop.available_cpus())
    assert cpu == want, reason
    assert f"family {info['family']:#x}" in reason and reason.endswith(want)


@pytest.mark.parametrize("name", pybackprop.available_cpus())
def test_cpu_environment_pins(name):
    """PYBACKPROP_CPU=NAME runs NAME from the first call."""
    out = _python("import pybackprop as p; print(p.get_cpu()); print(p.cpu_info()['reason'])",
                  PYBACKPROP_CPU=name)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [name, f"PYBACKPROP_CPU={name}"]


@pytest.mark.parametrize("var, value", [
    ("PYBACKPROP_CPU", "garbage"), ("PYBACKPROP_CPU", "ZEN3"), ("PYBACKPROP_CPU", "zen3 "),
    ("PYBACKPROP_ARCH", "garbage"), ("PYBACKPROP_ARCH", "AVX2"), ("PYBACKPROP_ARCH", "avx2 ")]
    + [("PYBACKPROP_CPU", n) for n, c in pybackprop.cpu_info()["configurations"].items()
       if not c["runs_here"]]
    + [("PYBACKPROP_ARCH", "avx512")] * ("avx512" not in pybackprop.available_archs()))
def test_a_pin_that_pins_nothing_is_an_error(var, value):
    """A configuration or ISA name this CPU cannot run makes the import fail with a
    ValueError naming the variable, instead of silently running something else."""
    out = _python("import pybackprop", **{var: value})
    assert out.returncode != 0
    assert "ValueError" in out.stderr and f"{var}={value!r}" in out.stderr, out.stderr


@pytest.mark.parametrize("isa", pybackprop.available_archs())
def test_arch_caps_the_instruction_set(isa):
    """PYBACKPROP_ARCH and set_arch cap the ISA: the detected model's configuration,
    followed down its fallbacks until its highest ISA is the cap or below."""
    info = pybackprop.cpu_info()
    avx512 = "avx512" in pybackprop.available_archs()
    want = settle(model_config(info, avx512), RANK[isa], pybackprop.available_cpus())
    out = _python("import pybackprop as p; print(p.get_cpu())", PYBACKPROP_ARCH=isa)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == want
    saved = pybackprop.get_cpu()
    try:
        pybackprop.set_arch(isa)
        assert pybackprop.get_cpu() == want
        assert top_isa(want) <= RANK[isa]
    finally:
        pybackprop.set_cpu(saved)


def model_blocks(mr, nr, elem, l1, l2, l3):
    """docs/cpus.md's analytical model (Low et al. 2016), written out again."""
    def way(c):
        return c["sets"] * c["line"]
    c_ar = max(1, int((l1["ways"] - 1) / (1 + nr / mr)))
    kc = min(max(64, c_ar * way(l1) // (mr * elem) // 16 * 16), 1024)
    c_br = -(-nr * kc * elem // way(l2))
    mc = max(1, l2["ways"] - 1 - c_br) * way(l2) // (kc * elem) // mr * mr
    mc = max(mr, min(mc, 512 // mr * mr))
    nc = 4096 // nr * nr
    if l3["bytes"] > 0:
        c_ac3 = -(-mc * kc * elem // way(l3))
        nc = max(1, l3["ways"] - 1 - c_ac3) * way(l3) // (kc * elem) // nr * nr
        nc = max(nr, min(nc, 8192 // nr * nr))
    return mc, kc, nc


HASWELL = {"L1d": dict(bytes=32768, ways=8, line=64, sets=64),
           "L2": dict(bytes=262144, ways=8, line=64, sets=512),
           "L3": dict(bytes=8388608, ways=16, line=64, sets=8192)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["derived", "haswell"])
def test_model_block_sizes(name, dtype):
    """derived takes its blocks from this CPU's caches, haswell from Haswell's, by the
    model; the blocks fit the caches they were made for."""
    caches = pybackprop.cpu_info()["caches"] if name == "derived" else HASWELL
    if name == "haswell" and "haswell" not in pybackprop.cpu_info()["configurations"]:
        pytest.skip("no haswell configuration off x86")
    blk = _gemm.blocks(name, dtype)
    elem = np.dtype(dtype).itemsize
    l1, l2, l3 = caches["L1d"], caches["L2"], caches["L3"]
    assert (blk["mc"], blk["kc"], blk["nc"]) == model_blocks(blk["mr"], blk["nr"], elem,
                                                             l1, l2, l3)
    assert blk["mc"] % blk["mr"] == 0 and blk["nc"] % blk["nr"] == 0
    assert blk["kc"] * blk["nr"] * elem <= l1["bytes"]
    assert blk["mc"] * blk["kc"] * elem <= l2["bytes"]


def test_blocks_of_the_active_configuration():
    """_gemm.blocks(None, ...) is the active configuration's; unknown names are refused."""
    saved = pybackprop.get_cpu()
    try:
        for name in pybackprop.available_cpus():
            pybackprop.set_cpu(name)
            for dt in (np.float32, np.float64):
                assert _gemm.blocks(None, dt) == _gemm.blocks(name, dt)
    finally:
        pybackprop.set_cpu(saved)
    with pytest.raises(Exception):
        _gemm.blocks("no-such-cpu", np.float32)
    with pytest.raises(ValueError, match="cpu must be one of"):
        pybackprop.set_cpu(3)


def test_dispatch_and_build_info(threads):
    """available_cpus has the portable configuration and set_cpu round-trips; set_arch
    caps the instruction set (its configuration's highest ISA is the one asked for on this
    CPU); set_num_threads round-trips; build_info and cpu_info have their keys."""
    cpus = pybackprop.available_cpus()
    assert "generic" in cpus and pybackprop.get_cpu() in cpus
    archs = pybackprop.available_archs()
    assert archs[0] == "ref" and pybackprop.get_arch() in archs
    saved = pybackprop.get_cpu()
    try:
        for c in cpus:
            pybackprop.set_cpu(c)
            assert pybackprop.get_cpu() == c and pybackprop.build_info()["cpu"] == c
            assert pybackprop.get_arch() == max(pybackprop.cpu_info()["kernels"].values(),
                                                key=archs.index)
        for a in archs:
            pybackprop.set_arch(a)
            assert pybackprop.get_arch() == a
            assert pybackprop.build_info()["arch"] == a
        with pytest.raises(ValueError, match="cpu must be one of"):
            pybackprop.set_cpu("no-such-cpu")
    finally:
        pybackprop.set_cpu(saved)
    info = pybackprop.build_info()
    assert {"version", "compiler", "cflags", "cpu", "cpu_reason", "arch", "openmp",
            "num_threads"} <= set(info)
    threads(1)
    assert pybackprop.get_num_threads() == 1
    threads(2)
    assert pybackprop.get_num_threads() == (2 if info["openmp"] else 1)
