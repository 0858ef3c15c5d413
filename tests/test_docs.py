"""The API reference (docs/api/*.md, built by mkdocs with mkdocstrings) has an entry for
every public name, and the entries name real objects."""
import importlib
import pathlib
import re

import pybackprop
from pybackprop import distributed, nn, optim

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "api"
ENTRIES = re.findall(r"^::: ([\w.]+)$", "\n".join(
    p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md"))), re.M)


def _public():
    names = {n for n in pybackprop.__all__
             if n not in ("__version__", "nn", "optim", "ACTIVATIONS", "PREACT_ACTIVATIONS",
                          "REDUCTIONS")}
    names |= set(optim.__all__) | set(distributed.__all__) | {"Dense", "Sequential"}
    return names


def test_every_public_name_has_an_entry():
    """Each public function and class of pybackprop, pybackprop.optim and pybackprop.nn has
    a ``::: module.name`` entry in docs/api."""
    documented = {e.rsplit(".", 1)[1] for e in ENTRIES}
    missing = sorted(_public() - documented)
    assert not missing, f"no API page entry for {missing}"


def test_entries_name_the_public_objects():
    """Every entry resolves to the object the public name refers to (the PyTorch bridge's
    where PyTorch is installed)."""
    for entry in ENTRIES:
        module, name = entry.rsplit(".", 1)
        if module.startswith("pybackprop.torch"):
            try:
                bridge = importlib.import_module("pybackprop.torch")
            except ImportError:
                continue
            obj = getattr(importlib.import_module(module), name)
            assert obj is getattr(bridge, name, None) or obj is getattr(bridge.functional,
                                                                        name), entry
            continue
        obj = getattr(importlib.import_module(module), name)
        if module == "pybackprop" and name == "distributed":
            continue  # the module's own page heading
        public = getattr(pybackprop, name, None) or getattr(optim, name, None) \
            or getattr(nn, name, None) or getattr(distributed, name, None)
        assert obj is public, entry
