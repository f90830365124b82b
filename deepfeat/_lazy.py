"""Packages that export names from their modules on first use (PEP 562), so importing a package
for one light name (a registry of choices, a config dataclass) does not import torch or scikit-learn."""
from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]):
    """``(__getattr__, __all__)`` for ``package`` exporting ``exports`` (module → names)."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(where[name], package), name)

    return __getattr__, sorted(where)
