"""The README's and the docs' examples run as written; the docs build is strict.

In the README, ``docs/`` and REPRODUCTION.md a ``python`` code block is a whole
program and runs here, in a fresh process in an empty folder (with the
repository's ``figs/`` beside it); a ``py`` block is a fragment that needs the
reader's own model or cluster and is only shown.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", ROOT / "REPRODUCTION.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", flags=re.S)

# what the known examples must print or write (a block is found by a phrase in it)
EXPECT = {
    "load_curve(net, x.float(), y); print": (["log_d"], []),
    "LoadCurveTracker(model, x, y, every=1)": (["regime", "share"], ["trajectory.png", "stress.png"]),
    'pool="mean"': (["enc.layers.0", "enc.layers.1", "enc.layers.2", "log_d"], []),
    "run_sweep(configs": ([], ["pd_short.png"]),
    "simulate_first_order(FirstOrderConfig(noise=noise)": (["concave", "linear"], []),
    "train_run(RunConfig()": (["ok"], []),
}


def _blocks():
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            line = text[:match.start()].count("\n") + 1
            yield pytest.param(match.group(1), id=f"{page.relative_to(ROOT)}:{line}")


def _run(code, folder):
    (folder / "figs").symlink_to(ROOT / "figs")
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True,
                          timeout=600, env=env)


def test_the_readme_opens_with_a_five_line_load_curve(tmp_path):
    first = BLOCK.findall(README)[0]
    assert "load_curve" in first and len(first.strip().splitlines()) <= 5
    out = _run(first, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "log_d" in out.stdout
    assert out.stdout.strip().split()[-1] in {"concave", "linear", "convex"}


@pytest.mark.slow
@pytest.mark.parametrize("code", list(_blocks()))
def test_every_python_block_runs_as_written(code, tmp_path):
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    for phrase, (printed, written) in EXPECT.items():
        if phrase in code:
            for word in printed:
                assert word in out.stdout, (word, out.stdout[-2000:])
            for name in written:
                assert (tmp_path / name).is_file(), name


def test_every_expected_example_is_still_there():
    code = "\n".join(BLOCK.findall("\n".join(p.read_text() for p in PAGES)))
    missing = [phrase for phrase in EXPECT if phrase not in code]
    assert not missing, missing


def test_the_readme_is_short_and_ci_runs_its_test_command():
    assert len(README.splitlines()) <= 200
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in README and "make test" in ci
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: install docs$", make, re.M), "make test must build the docs"


def _build(source: Path, out: Path):
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b",
                           "html", str(source / "docs"), str(out)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(source)})


@pytest.mark.slow
def test_the_docs_build_fails_on_a_missing_docstring_or_a_broken_reference(tmp_path):
    copy = tmp_path / "repo"
    for name in ("dnn_spring", "docs", "figs", "benchmarks"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("_build", "__pycache__"))
    for name in ("README.md", "REPRODUCTION.md", "CHANGELOG.md"):
        shutil.copy(ROOT / name, copy / name)
    grids = copy / "dnn_spring" / "sweep" / "_grids.py"
    text = grids.read_text()
    start = text.index('"""', text.index("def expand_grid("))
    grids.write_text(text[:start] + "pass\n    " + text[text.index('"""', start + 3) + 3:])
    page = copy / "docs" / "science.md"
    page.write_text(page.read_text() + "\nSee {func}`dnn_spring.capture.not_there`.\n")
    out = _build(copy, tmp_path / "html")
    assert out.returncode != 0
    assert "GL08" in out.stderr and "dnn_spring.sweep.expand_grid" in out.stderr
    assert "dnn_spring.capture.not_there" in out.stderr
