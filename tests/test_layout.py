"""The public surface: a small lazy top level, subpackage entry points, old paths that warn."""

import importlib
import subprocess
import sys
import warnings

import pytest

import dnn_spring
from dnn_spring import _deprecated

SUBPACKAGES = ["metrics", "capture", "train", "sweep", "analysis", "spring"]


def _modules_after(code: str) -> set:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_loads_nothing_heavy():
    loaded = _modules_after("import dnn_spring")
    heavy = {"torch", "pandas", "matplotlib", "submitit", "tqdm", "scipy", "sklearn"}
    assert not heavy & loaded, heavy & loaded


def test_the_command_line_help_loads_neither_torch_nor_pandas():
    loaded = _modules_after("from dnn_spring.cli import build_parser; build_parser().format_help()")
    assert not {"torch", "pandas", "matplotlib"} & loaded


def test_the_top_level_is_small_and_every_name_resolves():
    names = [n for n in dnn_spring.__all__ if n != "__version__"]
    assert 15 <= len(names) <= 25, len(names)
    for name in names:
        assert getattr(dnn_spring, name).__doc__, name
    assert "fit_spring_block" in names and "transformer_blocks" in names


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_every_public_name_of_a_subpackage_resolves(sub):
    package = importlib.import_module(f"dnn_spring.{sub}")
    assert package.__all__
    for name in package.__all__:
        assert getattr(package, name) is not None, (sub, name)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        package.not_a_name


def test_a_top_level_name_is_the_subpackage_object():
    from dnn_spring.capture import load_curve
    from dnn_spring.train import RunConfig
    assert dnn_spring.load_curve is load_curve and dnn_spring.RunConfig is RunConfig


@pytest.mark.parametrize("old", sorted(_deprecated.MODULES))
def test_an_old_module_path_warns_and_gives_the_new_module(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {_deprecated.MODULES[old]}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(_deprecated.MODULES[old])


def test_old_from_imports_still_work():
    sys.modules.pop("dnn_spring.grids", None)
    with pytest.warns(DeprecationWarning):
        from dnn_spring.grids import SWEEPS  # noqa: F401
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from dnn_spring.metrics import separation_fuzziness  # noqa: F401  (a package now)
        from dnn_spring.train import train_run  # noqa: F401
        from dnn_spring.sweep import run_sweep  # noqa: F401


@pytest.mark.parametrize("name", sorted(_deprecated.TOP_LEVEL))
def test_a_name_dropped_from_the_top_level_warns_and_still_works(name):
    home = importlib.import_module(_deprecated.TOP_LEVEL[name])
    with pytest.warns(DeprecationWarning, match=f"dnn_spring.{name} moved to"):
        value = getattr(dnn_spring, name)
    assert value is getattr(home, name)
