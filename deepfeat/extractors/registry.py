"""The extractor registry and its discovery: a network is one file.

An extractor module registers its classes with :func:`register_extractor` and its weights files
with :func:`deepfeat.weights.register` when it is imported. Nothing lists those modules: on the
first lookup, :func:`discover` imports

* every module of the :mod:`deepfeat.extractors` package (a :func:`pkgutil.iter_modules` scan), and
* every entry point of the group ``deepfeat.extractors`` (:data:`ENTRY_POINT_GROUP`), by which
  another installed package adds networks without touching deepfeat. An entry point names a
  module (``toy = mypkg.toy``: importing it registers its extractors) or an extractor class
  (``toy = mypkg.toy:ToyExtractor``: registered under the entry point's name unless its module
  already registered it). Name the entry point after the network it provides.

A module whose optional dependency is missing does not break the others: its failure is kept
(:func:`unavailable_extractors`) and asking for its network raises a one-line :class:`ConfigError`
saying what is missing. A module that is itself gone (a stale entry point) is skipped, as before.
Nothing is imported by ``import deepfeat``; this module itself imports neither torch nor the
extractor modules until :func:`discover` runs.
"""
from __future__ import annotations

import importlib
import logging
import pkgutil
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .base import Extractor

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "deepfeat.extractors"
KINDS = ("image", "audio")  #: image: CNNs on spectrogram images; audio: audio-pretrained models

_EXTRACTORS: dict[str, type[Extractor]] = {}
_UNAVAILABLE: dict[str, str] = {}  #: module or entry point name → why it could not be imported
_discovered = False


def register_extractor(*names: str):
    """Class decorator: make the extractor available as ``deepfeat extract -n NAME`` for each name.

    The class must state its :attr:`~deepfeat.extractors.base.Extractor.kind` (``"image"`` or
    ``"audio"``) and ``default_weights``: both are stored with the features and shown by
    ``deepfeat extract --list``. A name already taken by another class is an error.
    """

    def wrap(cls):
        if getattr(cls, "kind", None) not in KINDS or not isinstance(getattr(cls, "default_weights", None), str):
            raise ConfigError(f"extractor {cls.__module__}.{cls.__qualname__} must state kind (one of "
                              f"{', '.join(KINDS)}) and default_weights as class attributes")
        for name in names:
            other = _EXTRACTORS.get(name)
            if other is not None and other is not cls:
                raise ConfigError(f"network {name!r} is registered twice ({other.__module__}.{other.__qualname__} "
                                  f"and {cls.__module__}.{cls.__qualname__}); rename one of them")
            _EXTRACTORS[name] = cls
        return cls

    return wrap


def _is_missing_module(error: ModuleNotFoundError, target: str) -> bool:
    """Whether ``error`` says the module ``target`` (or a package above it) itself is gone."""
    module = target.split(":")[0].strip()
    return bool(error.name) and (module == error.name or module.startswith(error.name + "."))


def _load(key: str, target: str, load, tolerate: tuple[type[BaseException], ...]) -> None:
    """Run ``load`` (an import, returning a module or class); an error of a ``tolerate`` type is
    kept under ``key`` (see :func:`unavailable_extractors`) instead of raised."""
    try:
        _register_loaded(key, load())
    except ModuleNotFoundError as e:
        if _is_missing_module(e, target):
            log.debug("extractor module %s is not installed; skipped", target)
            return
        _UNAVAILABLE[key] = f"{target} needs the missing package {e.name!r}; install it to use this network"
    except tolerate as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        _UNAVAILABLE[key] = f"{target} failed to import ({type(e).__name__}: {reason})"
        log.warning("extractor %s unavailable: %s", key, _UNAVAILABLE[key])


def _register_loaded(key: str, obj) -> None:
    """An entry point that names a class: register it under the entry point's name if needed."""
    from .base import Extractor

    if isinstance(obj, type) and issubclass(obj, Extractor) and obj not in _EXTRACTORS.values():
        register_extractor(key)(obj)


def discover(refresh: bool = False) -> None:
    """Import every extractor module once: the package's own modules, then the entry points of
    :data:`ENTRY_POINT_GROUP`. ``refresh``: look again (for packages installed since)."""
    global _discovered
    if _discovered and not refresh:
        return
    _discovered = True  # before importing: a module that looks something up must not recurse
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__, f"{__package__}."):
        short = info.name.rsplit(".", 1)[-1]
        if not short.startswith("_"):
            _load(short, info.name, lambda name=info.name: importlib.import_module(name), (ImportError,))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        # a third-party bug must not take the other networks down with it
        _load(ep.name, ep.value, ep.load, (Exception,))


def extractor_names() -> list[str]:
    """Names of every available network, sorted."""
    discover()
    return sorted(_EXTRACTORS)


def unavailable_extractors() -> dict[str, str]:
    """Extractor modules (or entry points) that failed to import → the reason, one line each."""
    discover()
    return dict(sorted(_UNAVAILABLE.items()))


def get_extractor_class(name: str) -> type[Extractor]:
    """The class registered as ``name``; a one-line :class:`ConfigError` if there is none."""
    discover()
    if name in _EXTRACTORS:
        return _EXTRACTORS[name]
    if name in _UNAVAILABLE:
        raise ConfigError(f"network {name!r} is unavailable: {_UNAVAILABLE[name]}")
    message = f"unknown network {name!r}; choose one of: {', '.join(sorted(_EXTRACTORS))}"
    if _UNAVAILABLE:
        message += f" (not loaded: {'; '.join(f'{k}: {why}' for k, why in sorted(_UNAVAILABLE.items()))})"
    raise ConfigError(message)


def create_extractor(name: str, **params) -> Extractor:
    """Instantiate the registered extractor ``name`` (weights are loaded later, by ``load()``)."""
    return get_extractor_class(name)(name=name, **params)
