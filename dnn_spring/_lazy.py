"""Names of a package that import their module on first use (PEP 562).

``import dnn_spring`` must stay cheap: a researcher who wants one load curve
should not wait for pandas, matplotlib and the Slurm client.  Each package
``__init__`` lists where its public names live; a name's module is imported
the first time the name is read.
"""

from __future__ import annotations

import importlib
import sys
import warnings


def attach(package: str, names: dict, moved: dict | None = None):
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : dict
        Public name -> the module (absolute) that defines it.
    moved : dict, optional
        Old public name -> its new home, still readable for one release with a
        ``DeprecationWarning``.

    Returns
    -------
    tuple
        ``(__getattr__, __dir__, __all__)`` to assign in the package.
    """
    moved = moved or {}

    def __getattr__(name):
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            setattr(sys.modules[package], name, value)  # later reads skip this function
        elif name in moved:
            new = moved[name]
            warnings.warn(f"{package}.{name} moved to {new}.{name}; the old name goes in the next "
                          "release", DeprecationWarning, stacklevel=2)
            value = getattr(importlib.import_module(new), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return value

    def __dir__():
        return sorted(names)

    return __getattr__, __dir__, sorted(names)
