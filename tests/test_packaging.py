"""The package's metadata: what a wheel built from this tree carries."""
import os

import pytest

try:
    import tomllib  # Python >= 3.11
except ImportError:
    tomllib = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYPROJECT = os.path.join(ROOT, "pyproject.toml")


def _config():
    if tomllib is None:
        pytest.skip("reading pyproject.toml needs tomllib (Python >= 3.11)")
    if not os.path.exists(PYPROJECT):
        pytest.skip(f"no pyproject.toml next to the tests ({ROOT})")
    with open(PYPROJECT, "rb") as f:
        return tomllib.load(f)


def test_every_subpackage_ships():
    # A subpackage left out of tool.setuptools.packages is missing from the wheel while the
    # checkout's tests still import it from the source tree.
    listed = set(_config()["tool"]["setuptools"]["packages"])
    found = {"pybackprop"}
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, "pybackprop")):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
        if "__init__.py" in filenames:
            rel = os.path.relpath(dirpath, ROOT)
            found.add(rel.replace(os.sep, "."))
    assert found <= listed, f"subpackages missing from pyproject.toml: {sorted(found - listed)}"


def test_typed_marker_ships():
    cfg = _config()["tool"]["setuptools"]
    assert "py.typed" in cfg["package-data"]["pybackprop"]
    assert os.path.exists(os.path.join(ROOT, "pybackprop", "py.typed"))


def test_every_extra_is_optional():
    # The core dependencies are numpy and cffi; everything else is an extra.
    deps = _config()["project"]["dependencies"]
    assert sorted(d.split(">")[0].split("=")[0] for d in deps) == ["cffi", "numpy"]
