"""Extractor discovery: a network is one file, found by a package scan or an entry point."""
import hashlib
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from deepfeat import weights
from deepfeat.audio import load_audio
from deepfeat.datasets import load_manifest
from deepfeat.errors import ConfigError
from deepfeat.extract import extract_features
from deepfeat.extractors import (ENTRY_POINT_GROUP, create_extractor, extractor_names, get_extractor_class,
                                 register_extractor, registry, unavailable_extractors)
from deepfeat.store import read_store

# The whole of a new network: one file, in a package deepfeat knows nothing about.
TOY_MODULE = '''
"""Toy network: mean magnitude of four frequency bands → a linear layer (3 features)."""
import numpy as np
import torch

from deepfeat.extractors import TorchExtractor, register_extractor
from deepfeat.weights import WeightsFile, register

register(WeightsFile("toy-demo", "toy.pth", sha256="{sha256}", package="toypkg", licence="test data"))


@register_extractor("toy")
class ToyExtractor(TorchExtractor):
    kind = "audio"
    default_weights = "demo"
    WEIGHTS = {{"demo": "toy-demo"}}
    sample_rate = 16000
    batch_size = 8
    dim = 3

    def frontend(self, samples):
        bands = np.array_split(np.abs(np.fft.rfft(samples)), 4)
        return np.array([[band.mean() for band in bands]], np.float32)

    def build_network(self, pretrained):
        return torch.nn.Linear(4, 3)
'''


@pytest.fixture
def fresh_registry(monkeypatch):
    """The real networks discovered, then registries and discovery state restored after the test
    and the temporary plugin package's modules forgotten."""
    registry.discover()
    monkeypatch.setattr(registry, "_EXTRACTORS", dict(registry._EXTRACTORS))
    monkeypatch.setattr(registry, "_UNAVAILABLE", dict(registry._UNAVAILABLE))
    monkeypatch.setattr(registry, "_discovered", True)
    monkeypatch.setattr(weights, "_REGISTRY", dict(weights._REGISTRY))
    yield
    for name in [m for m in sys.modules if m == "toypkg" or m.startswith("toypkg.")]:
        del sys.modules[name]


def install_plugin(root, monkeypatch, entry_points: dict[str, str], modules: dict[str, str]):
    """Package ``toypkg`` (``modules``: file name → source) with a dist-info declaring
    ``entry_points`` in the deepfeat group, put on sys.path; discovery run again. Returns the package folder."""
    package = root / "site" / "toypkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for filename, source in modules.items():
        (package / filename).write_text(textwrap.dedent(source))
    info = root / "site" / "toypkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toypkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n" + "".join(f"{name} = {target}\n" for name, target in entry_points.items()))
    monkeypatch.syspath_prepend(str(root / "site"))  # also invalidates the import and metadata caches
    registry.discover(refresh=True)
    return package


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch, fresh_registry):
    """The toy network installed as a third-party plugin, with its weights file in its package."""
    state = {"weight": torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0.5, 0, 0, -2]]),
             "bias": torch.tensor([0.0, 1.0, -3.0])}
    blob = tmp_path / "toy.pth"
    torch.save(state, blob)
    sha256 = hashlib.sha256(blob.read_bytes()).hexdigest()
    package = install_plugin(tmp_path, monkeypatch, {"toy": "toypkg.toy"},
                             {"toy.py": TOY_MODULE.format(sha256=sha256)})
    blob.rename(package / "toy.pth")
    return state, sha256


def test_one_file_plugin_is_a_network_with_its_weights(toy_plugin, demo_dir, tmp_path):
    state, sha256 = toy_plugin
    assert "toy" in extractor_names() and {"vgg16", "resnet18", "panns_cnn14"} <= set(extractor_names())
    assert weights.registered()["toy-demo"].package == "toypkg"
    assert weights.resolve("toy-demo")[1] == sha256
    ex = create_extractor("toy", device="cpu")
    assert ex.weights == "demo" and get_extractor_class("toy").weights_choices("toy") == ["demo", "none", "PATH"]

    manifest = load_manifest(demo_dir)
    out = extract_features(manifest, ex, tmp_path / "toy.h5", workers=0, progress=False)
    fs = read_store(out)
    bands = np.concatenate([ex.frontend(load_audio(clip.path, 16000)[0]) for clip in manifest.clips])
    expected = bands @ state["weight"].numpy().T + state["bias"].numpy()  # the checkpoint, not a random init
    np.testing.assert_allclose(fs.features, expected, rtol=1e-5, atol=1e-6)
    assert fs.config["extractor"]["network"] == "toy" and fs.config["extractor"]["kind"] == "audio"
    assert fs.attrs["weights_sha256"] == sha256


def test_entry_point_may_name_a_class(tmp_path, monkeypatch, fresh_registry):
    source = TOY_MODULE.replace('@register_extractor("toy")\n', "").format(sha256="0" * 64)
    install_plugin(tmp_path, monkeypatch, {"toyclass": "toypkg.toy:ToyExtractor"}, {"toy.py": source})
    cls = get_extractor_class("toyclass")
    assert cls.__name__ == "ToyExtractor" and cls.kind == "audio"


def test_missing_optional_dependency_makes_only_that_network_unavailable(tmp_path, monkeypatch, fresh_registry):
    source = "import no_such_runtime_dependency  # an optional dependency that is not installed\n"
    install_plugin(tmp_path, monkeypatch, {"needy": "toypkg.needy", "gone": "toypkg.uninstalled_module"},
                   {"needy.py": source})
    assert {"vgg16", "efficientnet_lite0", "birdnet"} <= set(extractor_names())
    assert "needy" not in extractor_names() and "no_such_runtime_dependency" in unavailable_extractors()["needy"]
    assert "gone" not in unavailable_extractors()  # a module that is itself missing is skipped, as before
    with pytest.raises(ConfigError) as e:
        create_extractor("needy")
    message = str(e.value)
    assert "'needy' is unavailable" in message and "no_such_runtime_dependency" in message and "\n" not in message
    with pytest.raises(ConfigError, match="unknown network 'gone'.*not loaded: needy"):
        create_extractor("gone")


def test_package_module_with_missing_dependency_is_kept_apart(tmp_path, monkeypatch, fresh_registry):
    """The package scan, not only entry points: a module of deepfeat.extractors itself."""
    import deepfeat.extractors as package

    (tmp_path / "needs_litert_like.py").write_text("import no_such_tflite_runtime\n")
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    importlib.invalidate_caches()
    registry.discover(refresh=True)
    assert "no_such_tflite_runtime" in unavailable_extractors()["needs_litert_like"]
    assert "resnet18" in extractor_names()
    with pytest.raises(ConfigError, match="'needs_litert_like' is unavailable"):
        get_extractor_class("needs_litert_like")


def test_broken_plugin_does_not_break_discovery(tmp_path, monkeypatch, fresh_registry):
    install_plugin(tmp_path, monkeypatch, {"broken": "toypkg.broken"}, {"broken.py": "raise RuntimeError('bug')\n"})
    assert "RuntimeError: bug" in unavailable_extractors()["broken"] and "vgg16" in extractor_names()


def test_registration_checks_kind_and_unique_names(fresh_registry):
    from deepfeat.extractors.image_cnn import ImageCNNExtractor

    class NoKind(ImageCNNExtractor):
        kind = "video"

    with pytest.raises(ConfigError, match="must state kind"):
        register_extractor("nokind")(NoKind)
    with pytest.raises(ConfigError, match="'vgg16' is registered twice"):
        register_extractor("vgg16")(type("Other", (ImageCNNExtractor,), {}))


def test_every_extractor_states_kind_weights_and_registered_weights():
    known = weights.registered()
    for name in extractor_names():
        cls = get_extractor_class(name)
        assert cls.kind in ("image", "audio") and cls.default_weights in cls.weights_choices(name)
        for entry in cls.weights_names(name).values():
            assert entry in known, f"{name}: -w entry {entry} not registered"
    assert {"efficientnet_lite0-imagenet", "resnet18-imagenet", "vgg16-imagenet", "panns_cnn14-audioset",
            "openl3-env_mel128", "birdnet_v2.4"} <= set(known)


@pytest.mark.slow  # imports torchvision (~5 s)
def test_torchvision_urls_recorded_as_data_match_torchvision():
    from torchvision.models import get_model_weights

    from deepfeat.extractors.image_cnn import CNN_SPECS

    for network in CNN_SPECS:
        wf = weights.get(f"{network}-imagenet")
        assert wf.url == get_model_weights(network).IMAGENET1K_V1.url, network
        assert len(wf.sha256) >= 8 and wf.sha256 in wf.filename and wf.torch_hub


@pytest.mark.slow  # a fresh interpreter importing torch (~4 s)
def test_weights_list_does_not_import_torchvision():
    code = ("import sys; from deepfeat.cli.main import main; main(['weights', 'list']); "
            "print('torchvision imported:', 'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[-1] == "torchvision imported: False"
    assert lines[0].startswith("folders searched") and any(line.startswith("resnet18-imagenet ") for line in lines)
    folders = [line.split()[0] for line in lines if line.startswith("  ")]
    assert folders == [str(d) for d in weights.search_dirs()]
    assert str(weights.cache_dirs()[-1]).endswith("checkpoints") and str(Path.home() / "panns_data") in folders
