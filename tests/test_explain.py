"""deepfeat.explain: saliency maps have the input's shape and point at what decides the class."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from deepfeat.config import MelConfig
from deepfeat.crnn import CRNNArchitecture, CRNNClassifier
from deepfeat.explain import explain_clips, load_explainable, saliency
from deepfeat.mel_cache import ORIGINAL, ensure_mel_cache, read_mels
from deepfeat.training.config import TrainConfig

RATE = 16000
MEL = MelConfig(sample_rate=RATE, n_mels=32, window=0.04, hop=0.02, clip_db=-80.0)
BURST = (0.6, 0.8)  #: seconds of the "burst" class's tone
TINY = CRNNArchitecture(channels=(8, 16), kernels=((3, 3), (3, 3)), pools=((2, 1), (2, 1)), gru_units=16,
                        gru_layers=1)


def _clip(rng, low: bool) -> np.ndarray:
    """1 s of noise with a tone at 0.6-0.8 s: 1 kHz (class "low") or 3 kHz ("high"). The classes
    differ only inside the burst, so that is what a model must look at."""
    x = 0.05 * rng.normal(size=RATE).astype(np.float32)
    t = np.arange(int((BURST[1] - BURST[0]) * RATE)) / RATE
    start = int(BURST[0] * RATE)
    x[start:start + t.size] += rng.uniform(0.3, 0.6) * np.sin(2 * np.pi * (1000 if low else 3000) * t)
    return x


@pytest.fixture(scope="module")
def trained(tmp_path_factory):  # noqa: D401
    """A CRNN trained on 1 s clips of two classes (:func:`_clip`)."""
    from deepfeat.datasets import load_manifest

    root = tmp_path_factory.mktemp("bursts")
    rng = np.random.default_rng(0)
    lines = ["file,label,fold"]
    for i in range(40):
        label = "low" if i % 2 else "high"
        sf.write(root / f"{i:02d}.wav", _clip(rng, label == "low"), RATE)
        lines.append(f"{i:02d}.wav,{label},{i // 2 % 4 + 1}")
    (root / "clips.csv").write_text("\n".join(lines) + "\n")
    manifest = load_manifest(root / "clips.csv")
    cache = ensure_mel_cache(root / "mels.h5", manifest, MEL, 1.0, workers=1, progress=False)
    X = read_mels(cache, [ORIGINAL])[0]
    y = np.array(manifest.label_names, dtype=object)[manifest.label_indices()]
    torch.set_num_threads(1)
    model = CRNNClassifier(architecture=TINY, training=TrainConfig(epochs=40, batch_size=8, learning_rate=5e-3),
                           frontend={"mel": MEL.__dict__, "duration": 1.0}).fit(X, y)
    run_dir = root / "run"
    model.save(run_dir)
    return run_dir, root, model


def test_trained_model_separates_the_classes(trained):
    _, root, model = trained
    rng = np.random.default_rng(9)
    from deepfeat.spectrogram import log_mel

    clips = [_clip(rng, low) for low in (True, False, True, False)]
    predicted = model.predict(np.stack([log_mel(c, MEL) for c in clips]))
    assert list(predicted) == ["low", "high", "low", "high"]


@pytest.mark.parametrize("method", ["gradcam", "ig"])
def test_crnn_maps_have_the_inputs_shape(trained, method):
    run_dir, _, _ = trained
    model = load_explainable(run_dir)
    grid, proba = saliency(model, _clip(np.random.default_rng(5), low=True), method, steps=16)
    assert grid.shape == (MEL.n_mels, int(round(1.0 / MEL.hop)) + 1) and np.isfinite(grid).all() and grid.max() > 0
    assert proba.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """EfficientNet-Lite0 (ImageNet) with a new head trained on the two classes of :func:`_clip`."""
    from deepfeat.datasets import load_manifest
    from deepfeat.finetune import FineTunedCNN, run_finetune

    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(1)
    lines = ["file,label,fold"]
    for i in range(40):
        label = "low" if i % 2 else "high"
        sf.write(root / f"{i:02d}.wav", _clip(rng, label == "low"), RATE)
        lines.append(f"{i:02d}.wav,{label},{i // 2 % 4 + 1}")
    (root / "clips.csv").write_text("\n".join(lines) + "\n")
    classifier = FineTunedCNN(train_blocks=0, training=TrainConfig(epochs=30, batch_size=8, learning_rate=1e-2),
                              mixup_alpha=0.0)
    run_dir = root / "run"
    run_finetune(load_manifest(root / "clips.csv"), run_dir, test_fold=4, classifier=classifier,
                 cache=root / "acts.h5", workers=0, progress=False)
    return run_dir


@pytest.mark.slow
def test_grad_cam_of_a_fine_tuned_cnn_peaks_at_the_burst(finetuned):
    from deepfeat.audio import resample

    model = load_explainable(finetuned)
    clip = resample(_clip(np.random.default_rng(5), low=True), RATE, model.mel.sample_rate)
    grid, proba = saliency(model, clip, "gradcam")
    assert grid.shape == (224, 224) and model.classes[int(proba.argmax())] == "low"
    peak_time = (float(np.argmax(grid.sum(axis=0))) + 0.5) / grid.shape[1]  # the image spans the 1 s clip
    assert BURST[0] - 0.1 <= peak_time <= BURST[1] + 0.1


def test_figures_and_index_are_written(trained, tmp_path):
    run_dir, root, _ = trained
    index = explain_clips(run_dir, [("01", root / "01.wav", "low")], tmp_path / "maps", steps=8)
    text = index.read_text()
    assert "| 01 | low | low |" in text
    for name in ("01_gradcam.png", "01_ig.png"):
        png = tmp_path / "maps" / name
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG" and name in text
