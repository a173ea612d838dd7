"""Execute every tutorial notebook (jupytext percent ``.py`` files) top to bottom.

Each notebook runs in a fresh Jupyter kernel with ``SYMLAB_SMALL=1`` (its small settings), so
the tutorials cannot rot: an exception in any cell fails the test. Outputs are not saved.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="notebooks need the `notebooks` extra")
nbclient = pytest.importorskip("nbclient", reason="notebooks need the `notebooks` extra")
pytest.importorskip("ipykernel", reason="notebooks need the `notebooks` extra")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "symlab-notebook-test"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def test_notebooks_exist():
    assert len(PATHS) >= 4, PATHS


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernelspec running *this* interpreter, so no other Python's kernel is picked up."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    return root


def execute(path: Path, kernel_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the percent-format notebook at ``path`` in a fresh kernel, small settings."""
    monkeypatch.setenv("SYMLAB_SMALL", "1")
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_dir))
    # hypothesis (notebook 02) would otherwise leave a .hypothesis/ folder in notebooks/
    monkeypatch.setenv("HYPOTHESIS_STORAGE_DIRECTORY", str(kernel_dir / "hypothesis"))
    nb = jupytext.read(path)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name=KERNEL, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any exception


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs(path: Path, kernel_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    execute(path, kernel_dir, monkeypatch)


def test_a_failing_cell_fails(
    tmp_path: Path, kernel_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Negative control: the harness does report an exception in a cell."""
    bad = tmp_path / "bad.py"
    bad.write_text("# %%\nimport os\nassert os.environ['SYMLAB_SMALL'] == '1'\n\n"
                   "# %%\nraise ValueError('boom')\n")  # fmt: skip
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="boom"):
        execute(bad, kernel_dir, monkeypatch)
