"""The dataset reader registry: a layout is one module with a decorated ``read`` function.

A reader module registers itself with :func:`register_dataset`: its name, how to recognise its
layout from a path (``detect``), a line on its layout and protocol (for the README and
``--help``), the options it takes and, optionally, a writer of a tiny synthetic copy of the layout
(``deepfeat demo-data --layout NAME``). Nothing lists the modules: the first lookup imports every
module of :mod:`deepfeat.datasets`. :func:`load_manifest` asks the readers in ``priority`` order
(lowest first) which one recognises the path.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, ManifestError
from .manifest import METRICS, Clip, Manifest

#: ``channels`` values: mix every channel to mono (one row per clip), or one row per channel.
CHANNEL_MODES = ("mix", "each")


@dataclass(frozen=True)
class DatasetReader:
    """A registered layout (see :func:`register_dataset`)."""

    name: str
    read: Callable[..., Manifest]
    detect: Callable[[Path], bool]
    layout: str  #: what the layout looks like, one line
    protocol: str  #: its folds / evaluation partition and primary metric, one line
    priority: int = 50
    options: tuple[str, ...] = ()  #: keyword options ``read`` accepts (``n_folds``, ``audio_root``)
    channels: int | None = None  #: channels of every file when the layout fixes it (else read from headers)
    demo: Callable[..., Path] | None = None  #: writes a tiny synthetic copy; returns the path to read


_READERS: dict[str, DatasetReader] = {}
_discovered = False


def register_dataset(name: str, *, detect: Callable[[Path], bool], layout: str, protocol: str, priority: int = 50,
                     options: tuple[str, ...] = (), channels: int | None = None,
                     demo: Callable[..., Path] | None = None):
    """Decorator of a reader ``read(path, **options) -> Manifest``: register it as ``name``."""

    def wrap(read):
        other = _READERS.get(name)
        if other is not None and other.read is not read:
            raise ConfigError(f"dataset layout {name!r} is registered twice ({other.read.__module__} and "
                              f"{read.__module__}); rename one of them")
        _READERS[name] = DatasetReader(name, read, detect, layout, protocol, priority, tuple(options), channels, demo)
        return read

    return wrap


def dataset_readers() -> dict[str, DatasetReader]:
    """Every registered layout by name, in detection order."""
    global _discovered
    if not _discovered:
        _discovered = True
        package = importlib.import_module(__package__)
        for info in pkgutil.iter_modules(package.__path__, f"{__package__}."):
            importlib.import_module(info.name)
    return dict(sorted(_READERS.items(), key=lambda item: (item[1].priority, item[0])))


def detect_layout(path: Path) -> DatasetReader:
    """The first reader (by priority) that recognises ``path``."""
    for reader in dataset_readers().values():
        if reader.detect(path):
            return reader
    raise ManifestError(f"{path}: not a dataset folder or label CSV (file,label[,fold]); "
                        f"supported layouts: {', '.join(dataset_readers())}")


def load_manifest(path: str | Path, audio_root: str | Path | None = None, *, layout: str | None = None,
                  channels: str = "mix", name: str | None = None, n_folds: int | None = None) -> Manifest:
    """Read a dataset from a folder or a label CSV, its layout detected from the path.

    Parameters
    ----------
    path : str or Path
        A dataset folder (ESC-50, UrbanSound8K, DCASE 2017 task 1, DCASE 2018 task 5, GTZAN, a
        folder per class, a flat folder) or a label CSV; ``deepfeat.datasets.dataset_readers()``
        lists the layouts.
    audio_root : str or Path, optional
        Label CSVs: the folder their file paths are relative to (default: the CSV's folder).
    layout : str, optional
        Read with this registered layout instead of detecting it.
    channels : {"mix", "each"}
        ``mix``: one row per clip, channels averaged; ``each``: one row per channel of every clip
        (rows of a clip share its id; the dataset name gets ``-per-channel`` unless ``name`` is given).
    name : str, optional
        The dataset's name (results go to ``results/<name>/``); default: the layout's (its folder).
    n_folds : int, optional
        Layouts without official folds that assign them (GTZAN): how many.
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: no such dataset folder or label file")
    if channels not in CHANNEL_MODES:
        raise ConfigError(f"channels must be one of {', '.join(CHANNEL_MODES)}, got {channels!r}")
    readers = dataset_readers()
    if layout is not None and layout not in readers:
        raise ConfigError(f"unknown dataset layout {layout!r}; choose one of {', '.join(readers)}")
    reader = readers[layout] if layout else detect_layout(path)
    options = {k: v for k, v in (("audio_root", audio_root), ("n_folds", n_folds)) if v is not None}
    unused = sorted(set(options) - set(reader.options))
    if unused:
        flags = {"audio_root": "audio_root (--labels)", "n_folds": "n_folds (--folds)"}
        raise ConfigError(f"{path}: option(s) {', '.join(flags[k] for k in unused)} do not apply to the "
                          f"{reader.name} layout; leave them out")
    manifest = reader.read(path, **{k: Path(v) if k == "audio_root" else v for k, v in options.items()})
    manifest = dataclasses.replace(manifest, layout=reader.name)
    if manifest.primary_metric not in METRICS:
        raise ConfigError(f"reader {reader.name}: primary metric {manifest.primary_metric!r} is not one of "
                          f"{', '.join(METRICS)}")
    if channels == "each":
        manifest = dataclasses.replace(manifest, name=f"{manifest.name}-per-channel",
                                       clips=tuple(_channel_rows(manifest.clips, reader.channels)))
    if name is not None:
        if not name.strip() or "/" in name or "\\" in name or name in (".", ".."):
            raise ConfigError(f"dataset name {name!r} must be a non-empty name without slashes")
        manifest = dataclasses.replace(manifest, name=name)
    return manifest


def _channel_rows(clips: tuple[Clip, ...], known: int | None):
    """One row per channel of every clip: ``known`` channels each, or as many as its header says
    (a file whose header cannot be read keeps one row: extraction then reports why)."""
    import soundfile as sf

    for clip in clips:
        n = known
        if n is None:
            try:
                n = sf.info(str(clip.path)).channels
            except Exception:  # noqa: BLE001 - any unreadable header: one row, decoded (and reported) later
                n = 1
        for channel in range(n):
            yield dataclasses.replace(clip, channel=channel)
