"""The Python examples of the README and the user guide run as written (they are the first
code users copy)."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "docs" / "guide.md"]
BLOCKS = [(page.name, i, block) for page in PAGES if page.exists()
          for i, block in enumerate(re.findall(r"```python\n(.*?)```",
                                               page.read_text(encoding="utf-8"), re.S))]


def test_readme_has_examples():
    """The README still shows Python examples (so the test below checks something)."""
    assert sum(name == "README.md" for name, _, _ in BLOCKS) >= 4


@pytest.mark.parametrize("page,index,block", BLOCKS, ids=[f"{n}-{i}" for n, i, _ in BLOCKS])
def test_readme_example_runs(page, index, block, tmp_path, monkeypatch, capsys):
    """Each ```python block of the README executes without error, in a scratch folder
    (those of the PyTorch bridge where PyTorch is installed)."""
    if "import torch" in block:
        pytest.importorskip("torch", reason="the PyTorch example needs the optional torch")
    monkeypatch.chdir(tmp_path)  # examples may save files
    exec(compile(block, f"{page}[python block {index}]", "exec"), {})
