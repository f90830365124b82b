import numpy as np
import pytest
import torch
from PIL import Image

from deepfeat.config import MelConfig, PlotConfig
from deepfeat.errors import ConfigError, WeightsError
from deepfeat.extractors import create_extractor, extractor_names
from deepfeat.extractors.efficientnet_lite import LITE_SPECS
from deepfeat.extractors.image_cnn import CNN_SPECS

from .conftest import tone

torch.set_num_threads(2)


ALL_SPECS = {**CNN_SPECS, **LITE_SPECS}


@pytest.mark.parametrize("name", sorted(ALL_SPECS))
def test_every_network_gives_its_documented_dimension(name):
    ex = create_extractor(name, weights="none", device="cpu")
    image = ex.frontend(tone(440, 0.5, 44100))
    assert image.shape == (1, ex.spec.input_size, ex.spec.input_size, 3) and image.dtype == np.uint8
    feats = ex.embed(image)
    assert feats.shape == (1, ALL_SPECS[name].dim) and feats.dtype == np.float32 and np.isfinite(feats).all()
    assert ex.dim == ALL_SPECS[name].dim


def test_registry_lists_the_paper_networks():
    assert {"vgg16", "vgg19", "resnet18", "resnet50", "densenet121", "efficientnet_lite0"} <= set(extractor_names())


def test_unknown_network():
    with pytest.raises(ConfigError, match="unknown network 'vgg17'"):
        create_extractor("vgg17")


def test_random_init_is_seeded_and_seed_matters():
    images = np.random.default_rng(0).integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    a = create_extractor("mobilenet_v2", weights="none", device="cpu").embed(images)
    b = create_extractor("mobilenet_v2", weights="none", device="cpu").embed(images)
    c = create_extractor("mobilenet_v2", weights="none", device="cpu", seed=1).embed(images)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_batching_does_not_change_features():
    images = np.random.default_rng(1).integers(0, 255, (5, 224, 224, 3), dtype=np.uint8)
    one = create_extractor("efficientnet_lite0", device="cpu", batch_size=1).embed(images)
    many = create_extractor("efficientnet_lite0", device="cpu", batch_size=5).embed(images)
    np.testing.assert_allclose(one, many, rtol=1e-4, atol=1e-5)


def test_layer_selection():
    ex = create_extractor("alexnet", weights="none", device="cpu", layer="features.12")  # last max-pool
    assert ex.dim == 256 * 6 * 6 and ex.config()["layer"] == "features.12"
    with pytest.raises(ConfigError, match="has no layer 'fc9'"):
        create_extractor("alexnet", weights="none", device="cpu", layer="fc9").load()


def test_local_checkpoint_in_official_format(tmp_path):
    """-w PATH loads a torchvision-format state dict; features equal the source model's."""
    import torchvision

    torch.manual_seed(3)
    net = torchvision.models.resnet50(weights=None).eval()
    torch.save(net.state_dict(), tmp_path / "resnet50-custom.pth")
    ex = create_extractor("resnet50", weights=str(tmp_path / "resnet50-custom.pth"), device="cpu")
    images = np.random.default_rng(2).integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    feats = ex.embed(images)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - torch.tensor(ex.spec.mean).view(1, 3, 1, 1)) \
        / torch.tensor(ex.spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        body = torch.nn.Sequential(*list(net.children())[:-1])
        expected = torch.flatten(body(x), 1).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-4)
    assert len(ex.weights_sha256) == 64


def test_checkpoint_of_another_network_is_refused(tmp_path):
    import torchvision

    torch.save(torchvision.models.alexnet(weights=None).state_dict(), tmp_path / "alexnet.pth")
    with pytest.raises(WeightsError, match="does not fit resnet50"):
        create_extractor("resnet50", weights=str(tmp_path / "alexnet.pth"), device="cpu").load()


def test_missing_imagenet_weights_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match=r"expected file vgg16-397923af.pth"):
        create_extractor("vgg16", weights="imagenet", device="cpu").load()


def test_efficientnet_lite0_imagenet_weights_recognise_a_photo():
    """Real ImageNet weights, padding and normalisation: Grace Hopper's portrait is a military uniform."""
    import matplotlib.cbook
    import torchvision

    categories = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        photo = np.asarray(Image.open(f).convert("RGB").resize((224, 224), Image.BILINEAR))
    ex = create_extractor("efficientnet_lite0", weights="imagenet", device="cpu", layer="logits")
    logits = ex.embed(photo[None])
    top5 = [categories[i] for i in np.argsort(logits[0])[::-1][:5]]
    assert top5[0] == "military uniform", top5
    assert ex.weights_sha256.startswith("57934424")


@pytest.mark.parametrize("colormap", ["magma", "gray", "mel3"])
def test_plot_config_reaches_the_images(colormap):
    plot = PlotConfig(mel=MelConfig(sample_rate=16000), colormap=colormap)
    ex = create_extractor("efficientnet_lite0", plot=plot, device="cpu")
    image = ex.frontend(tone(440, 0.5, 16000))[0]
    if colormap == "gray":
        assert np.array_equal(image[..., 0], image[..., 1])
    else:
        assert not np.array_equal(image[..., 0], image[..., 1])
    assert ex.config()["plot"]["colormap"] == colormap and ex.sample_rate == 16000


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name,weights", [("efficientnet_lite0", "imagenet"), ("densenet121", "none"),
                                          ("resnet50", "none"), ("vgg16", "none")])
def test_half_precision_on_cuda_stays_within_tolerance_of_float32(name, weights):
    images = np.random.default_rng(0).integers(0, 255, (8, 224, 224, 3), dtype=np.uint8)
    half = create_extractor(name, weights=weights, device="cuda", precision="auto").embed(images)
    full = create_extractor(name, weights=weights, device="cuda", precision="fp32").embed(images)
    cpu = create_extractor(name, weights=weights, device="cpu").embed(images)
    np.testing.assert_allclose(full, cpu, rtol=1e-3, atol=1e-3 * np.abs(cpu).max())
    rel = np.linalg.norm(half - full, axis=1) / np.linalg.norm(full, axis=1)
    assert rel.max() < 1e-2, rel.max()


@pytest.mark.parametrize("name,weights", [("efficientnet_lite0", "imagenet"), ("resnet50", "none"),
                                          ("densenet121", "none")])
def test_cpu_optimised_network_equals_eager(name, weights):
    images = np.random.default_rng(4).integers(0, 255, (5, 224, 224, 3), dtype=np.uint8)
    fast = create_extractor(name, weights=weights, device="cpu", optimize=True)
    eager = create_extractor(name, weights=weights, device="cpu", optimize=False)
    fast.load()
    assert isinstance(fast.model, torch.jit.ScriptModule)
    a, b = fast.embed(images), eager.embed(images)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


@pytest.mark.parametrize("name,frozen", [("efficientnet_lite0", True), ("resnet50", True), ("vgg16", True),
                                         ("densenet121", False), ("convnext_tiny", False)])
def test_networks_are_frozen_on_cpu_only_where_it_pays(name, frozen):
    assert create_extractor(name, weights="none", device="cpu").optimize is frozen
    assert create_extractor(name, weights="none", device="cpu", optimize=not frozen).optimize is not frozen
