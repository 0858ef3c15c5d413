"""The README's Python examples run as written (they are the first code users copy)."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_examples():
    """The README still shows Python examples (so the test below checks something)."""
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch, capsys):
    """Each ```python block of the README executes without error, in a scratch folder
    (those of the PyTorch bridge where PyTorch is installed)."""
    if "import torch" in BLOCKS[index]:
        pytest.importorskip("torch", reason="the PyTorch example needs the optional torch")
    monkeypatch.chdir(tmp_path)  # examples may save files
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {})
