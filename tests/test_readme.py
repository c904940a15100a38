"""The README's example runs as written, and CI runs the README's test command."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_readme_example_runs_as_written(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README has no python example"
    example = blocks[0]
    assert len(example.strip().splitlines()) <= 5
    out = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "log_d" in out.stdout
    assert out.stdout.strip().split()[-1] in {"concave", "linear", "convex"}


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in README and "make test" in ci


@pytest.mark.slow
def test_readme_tracker_example_runs_as_written(tmp_path):
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S)
              if "LoadCurveTracker" in b]
    assert blocks, "README has no tracker example"
    out = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env={**__import__("os").environ, "MPLBACKEND": "Agg"})
    assert out.returncode == 0, out.stderr
    assert "regime" in out.stdout and "share" in out.stdout
    assert (tmp_path / "trajectory.png").is_file() and (tmp_path / "stress.png").is_file()


@pytest.mark.slow
def test_readme_transformer_example_runs_as_written(tmp_path):
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if 'pool="mean"' in b]
    assert blocks, "README has no pooling example"
    out = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("enc.layers.") == 3 and "log_d" in out.stdout
