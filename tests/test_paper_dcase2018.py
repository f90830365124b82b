"""`deepfeat paper` end to end on a synthetic DCASE 2018 task 5 layout (development + evaluation
set, 4-channel audio) with `--channels each`, `--select-metric macro_f1` and the evaluation set as
test: real extraction (a cheap registered toy extractor), SVM, a 1-epoch CRNN, fusion and report."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from deepfeat.cli.main import main
from deepfeat.config import MelConfig
from deepfeat.extractors import register_extractor
from deepfeat.extractors.base import Extractor
from deepfeat.scores import read_scores
from deepfeat.spectrogram import log_mel


@register_extractor("melstats")
class MelStats(Extractor):
    """Mean and standard deviation of 32 log-mel bands per clip: features in milliseconds."""

    kind = "audio"
    default_weights = "none"
    sample_rate = 16000
    dim = 64

    def frontend(self, samples):
        mel = log_mel(samples, MelConfig(sample_rate=self.sample_rate, n_mels=32))
        return np.r_[mel.mean(axis=1), mel.std(axis=1)][None].astype(np.float32)

    def load(self):
        self.model, self.weights_sha256 = "statistics", None

    def embed(self, inputs):
        return np.asarray(inputs, dtype=np.float32)


def _run(capsys, *argv):
    try:
        main(list(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.slow
def test_paper_on_dcase2018_channels_each_macro_f1_evaluation_set(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["demo-data", "dcase", "--layout", "dcase2018", "--clips-per-class", "4", "--duration", "0.5"])
    code, out = _run(capsys, "paper", "dcase", "-n", "melstats", "--channels", "each", "--select-metric", "macro_f1",
                     "--fold", "evaluation", "--crnn-epochs", "1", "--finetune-epochs", "0", "-m", "stacking", "-m", "mean")
    assert code == 0, out
    results = tmp_path / "results" / "dcase-per-channel"
    store = tmp_path / "features" / "dcase-per-channel-melstats.h5"
    with h5py.File(store) as f:  # one row per channel, the clip id on each, the channel recorded
        assert f["features"].shape == (4 * 25, 64) and sorted(set(f["channels"][()])) == [0, 1, 2, 3]
        assert len(set(f["ids"].asstr()[()])) == 25 and f.attrs["primary_metric"] == "macro_f1"
    for system in ("svm-melstats-none", "crnn", "fusion-all-stacking", "fusion-all-mean"):
        metrics = json.loads((results / system / "metrics.json").read_text())
        assert metrics["test_fold"] == 5 and metrics["test_partition"] == "evaluation", system
        assert metrics["development_folds"] == [1, 2, 3, 4] and metrics["n_test"] == 5, system
        assert metrics["primary_metric"] == "macro_f1" and 0.0 <= metrics["test_macro_f1"] <= 1.0, system
        scores = read_scores(results / system / "scores.h5")
        assert len(scores.ids) == 25 and len(set(scores.ids)) == 25 and scores.evaluation_folds == (5,)
    for system in ("svm-melstats-none", "crnn", "fusion-all-stacking"):
        assert json.loads((results / system / "metrics.json").read_text())["select_metric"] == "macro_f1"
    readme = (results / "README.md").read_text()
    assert "Test: the evaluation set (fold 5, 5 clips)" in readme and "| Devel macro-F1 [%] | Test macro-F1 [%] |" in readme
    assert (results / "test_macro_f1.png").is_file()
    code, out = _run(capsys, "paper", "dcase", "-n", "melstats", "--channels", "each", "--select-metric", "macro_f1",
                     "--fold", "evaluation", "--crnn-epochs", "1", "--finetune-epochs", "0", "-m", "stacking", "-m", "mean")
    assert code == 0 and out.count("  skip results/") == 4, out  # a rerun redoes nothing
