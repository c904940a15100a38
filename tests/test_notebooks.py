"""The notebooks execute end to end (few steps, via DNN_SPRING_NB_STEPS and
DNN_SPRING_NB_TRAIN_STEPS), offline.

Notebooks are committed without outputs, except those in ``WITH_OUTPUTS``,
whose text reports what their committed run showed.

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

pytestmark = pytest.mark.slow  # the fast loop (make test-fast) leaves these out

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["spring/first_order_iteration.ipynb", "spring/sdeint.ipynb",
             "examples/diagnose_resnet.ipynb", "examples/vit_mnist.ipynb",
             "examples/gpt2_chars.ipynb"]
WITH_OUTPUTS = {"examples/gpt2_chars.ipynb"}
# What each notebook must use of the package: notebooks stay thin and call the library.
USES = {"spring/first_order_iteration.ipynb": ["dnn_spring.spring"],
        "spring/sdeint.ipynb": ["dnn_spring.spring"],
        "examples/diagnose_resnet.ipynb": ["LoadCurveTracker", "diagnose"],
        "examples/vit_mnist.ipynb": ["LoadCurveTracker", "transformer_blocks", 'pool="first"'],
        "examples/gpt2_chars.ipynb": ["LoadCurveCallback", 'target="next_token"']}
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
        if cell.cell_type == "code" and name not in WITH_OUTPUTS:
            assert cell.outputs == [] and cell.execution_count is None
        if cell.cell_type == "code":  # a committed run has no errors
            assert not [out for out in cell.outputs if out.output_type == "error"]
    source = "".join(c.source for c in nb.cells)
    assert all(use in source for use in USES[name]), USES[name]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name, kernel_name, tmp_path):
    nb = nbformat.read(ROOT / name, as_version=4)
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=300,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.outputs if out.output_type == "error"]
    assert not errors
