"""The spring notebooks execute end to end (few steps, via DNN_SPRING_NB_STEPS).

The kernel is the interpreter running the tests: a kernelspec pointing at
``sys.executable`` is written to a temporary JUPYTER_PATH, so the test does not
depend on which kernels the machine has installed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["spring/first_order_iteration.ipynb", "spring/sdeint.ipynb",
             "examples/diagnose_resnet.ipynb"]
KERNEL = "dnn-spring-test"


@pytest.fixture
def kernel_name(tmp_path, monkeypatch):
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "dnn_spring tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("DNN_SPRING_NB_STEPS", "300")
    monkeypatch.setenv("DNN_SPRING_NB_TRAIN_STEPS", "5")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return KERNEL


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_valid_and_committed_without_outputs(name):
    nb = nbformat.read(ROOT / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    source = "".join(c.source for c in nb.cells)
    assert ("dnn_spring.spring" in source) or ("LoadCurveTracker" in source and "diagnose" in source)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name, kernel_name, tmp_path):
    nb = nbformat.read(ROOT / name, as_version=4)
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=300,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.outputs if out.output_type == "error"]
    assert not errors
