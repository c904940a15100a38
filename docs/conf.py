"""Sphinx configuration: MyST pages, an API reference from the numpydoc docstrings.

Built strictly by ``make docs`` (and in ``make test``): every warning is an
error, a reference to a public ``dnn_spring`` object must resolve, and a
public name without a docstring fails the build.
"""

import importlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dnn_spring  # noqa: E402

project = "dnn_spring"
author = "the dnn_spring developers"
release = version = dnn_spring.__version__
copyright = "2026, " + author

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.mathjax", "numpydoc"]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []

numpydoc_show_class_members = False
numpydoc_validation_checks = {"GL08"}  # a public object without a docstring fails the build
autodoc_typehints = "none"

# Every reference to a public object of the package must resolve; references
# into private modules (documented in the source) and to other libraries' or
# to plain-language types are not checked.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!dnn_spring\b).*"),
    (r"py:.*", r"dnn_spring(\.\w+)*\._\w+.*"),
]

SUBPACKAGES = ["metrics", "capture", "train", "sweep", "analysis", "spring"]


def _write_api(app):
    """docs/api.md from the packages' ``__all__``, so no public name is left out."""
    lines = ["# API reference", "",
             "The top level (`import dnn_spring`) holds the names used most; each is",
             "documented in its subpackage below.", "",
             "```{eval-rst}", ".. automodule:: dnn_spring", "   :no-members:", "```", "",
             "Top-level names: " + ", ".join(f"`{n}`" for n in dnn_spring.__all__) + ".", ""]
    for sub in SUBPACKAGES + ["integrations"]:
        module = importlib.import_module(f"dnn_spring.{sub}")
        lines += [f"## `dnn_spring.{sub}`", "", "```{eval-rst}",
                  f".. automodule:: dnn_spring.{sub}", "   :no-members:", ""]
        names = getattr(module, "__all__", [])
        if sub == "integrations":
            names = []
            lines += [".. autoclass:: dnn_spring.integrations.lightning.LoadCurveCallback",
                      ".. autoclass:: dnn_spring.integrations.hf.LoadCurveCallback"]
        for name in names:
            obj = getattr(module, name)
            kind = ("autoclass" if isinstance(obj, type) else
                    "autofunction" if callable(obj) else "autodata")
            lines.append(f".. {kind}:: dnn_spring.{sub}.{name}")
        if sub == "spring":  # its modules are public too: their docstrings say what each holds
            for name in ("config", "first_order", "langevin", "noise", "phase", "plots", "result",
                         "fit", "fit_trajectory"):
                lines.append(f".. automodule:: dnn_spring.spring.{name}\n   :no-members:\n")
        lines += ["```", ""]
    lines += ["## `dnn_spring.cli`", "", "```{eval-rst}", ".. automodule:: dnn_spring.cli",
              "   :no-members:", "```", ""]
    text = "\n".join(lines)
    path = Path(app.srcdir) / "api.md"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def setup(app):
    app.connect("builder-inited", _write_api)
