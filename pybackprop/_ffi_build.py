"""cffi build script: compiles csrc/**/*.c into the private module ``pybackprop._native``.

Run through setup.py (``pip install -e .`` rebuilds it in place).

The cdefs are the public header ``csrc/pybackprop.h`` and the test hooks' header
``csrc/testing/pb_testing.h``, each with its preprocessor lines removed (the headers are
written to be cdef-safe otherwise). Per-ISA sources carry their own target
attributes, so no global -march flag is used and the module imports on any x86-64.

Environment:
  PYBACKPROP_NO_OPENMP=1      build without OpenMP (single-threaded kernels)
  PYBACKPROP_EXTRA_CFLAGS=... extra compiler flags
  PYBACKPROP_DEBUG=1          keep debug information (release builds compile with -g0)
  PYBACKPROP_BUILD_JOBS=n     compile the sources n at a time (setup.py; default: every CPU)
  PYBACKPROP_SANITIZE=address,undefined
                              build with these sanitizers (any of address, undefined,
                              leak, thread), with -g and frame pointers for readable
                              reports (still -O3: the shipped code is checked); UBSan aborts on the first report. The resulting
                              module needs the sanitizer runtime preloaded into Python:
                              see SECURITY.md (.ci/sanitize does it).
"""
import glob
import os
import shlex

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CSRC = os.path.join(ROOT, "csrc")
# setuptools wants source paths relative to setup.py's folder (its working directory).
CSRC_REL = os.path.relpath(CSRC, ROOT)


def _cdef_text(header_path):
    with open(header_path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


_SANITIZERS = ("address", "undefined", "leak", "thread")


def _sanitizers(spec):
    """``"address,undefined"`` -> ["address", "undefined"]; unknown names are an error."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    bad = [n for n in names if n not in _SANITIZERS]
    if bad:
        raise ValueError(f"PYBACKPROP_SANITIZE: unknown sanitizer(s) {bad}; "
                         f"choose from {_SANITIZERS}")
    return names


def _flags():
    # -fno-trapping-math: no FP exception flag or trap is part of any kernel's contract, and
    # without it GCC keeps every conditional FP operation scalar (it may not evaluate one the
    # C code does not ask for), e.g. leaky_relu's `y > 0 ? dy : slope * dy`. It changes no
    # value (contraction and reassociation stay off under -std=c11).
    cflags = ["-std=c11", "-O3", "-Wall", "-Wextra", "-fno-math-errno", "-fno-trapping-math"]
    ldflags = []
    if os.environ.get("PYBACKPROP_NO_OPENMP", "") not in ("", "0"):
        cflags += ["-DPB_NO_OPENMP", "-Wno-unknown-pragmas"]
    else:
        cflags.append("-fopenmp")
        ldflags.append("-fopenmp")
    extra = shlex.split(os.environ.get("PYBACKPROP_EXTRA_CFLAGS", ""))
    cflags += extra
    ldflags += [f for f in extra if f.startswith("-fsanitize") or f.startswith("-fno-sanitize")]
    san = _sanitizers(os.environ.get("PYBACKPROP_SANITIZE", ""))
    if not san and os.environ.get("PYBACKPROP_DEBUG", "") in ("", "0"):
        # Python's own CFLAGS carry -g: without this the module is ~10x larger, all of it
        # debug information.
        cflags.append("-g0")
    if san:
        flags = ["-fsanitize=" + ",".join(san), "-fno-omit-frame-pointer", "-g"]
        if "undefined" in san:
            flags.append("-fno-sanitize-recover=undefined")
        cflags += flags
        ldflags += [f for f in flags if f != "-g"]
    cflags.append('-DPB_CFLAGS="%s"' % " ".join(
        f for f in cflags if not f.startswith("-D")).replace('"', ""))
    return cflags, ldflags


ffibuilder = FFI()
# The public header, then the test and benchmark hooks (csrc/testing/pb_testing.h).
_HEADERS = ("pybackprop.h", os.path.join("testing", "pb_testing.h"))
ffibuilder.cdef("\n".join(_cdef_text(os.path.join(CSRC, h)) for h in _HEADERS))
_cflags, _ldflags = _flags()
ffibuilder.set_source(
    "pybackprop._native",
    "".join('#include "%s"\n' % h.replace(os.sep, "/") for h in _HEADERS),
    sources=sorted(os.path.relpath(p, ROOT)
                   for p in glob.glob(os.path.join(CSRC, "**", "*.c"), recursive=True)),
    # headers and included .inc files: a change to any of them rebuilds the module
    depends=sorted(os.path.relpath(p, ROOT) for ext in ("h", "inc")
                   for p in glob.glob(os.path.join(CSRC, "**", "*." + ext), recursive=True)),
    include_dirs=[CSRC_REL],  # includes name their folder: "core/core.h"
    extra_compile_args=_cflags,
    extra_link_args=_ldflags + ["-lm"],
)
