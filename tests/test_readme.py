"""README's "From Python" section runs as written, on synthetic files of the same names."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from .conftest import tone
from .helpers import blobs, write_store

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    """The ```python code blocks of the README section titled ``section`` (a ``## `` heading)."""
    text = README.read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_the_section_has_code():
    assert len(python_blocks("From Python")) == 4


@pytest.mark.slow  # loads EfficientNet-Lite0 and embeds a few clips
def test_from_python_section_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sf.write("dog.wav", tone(300.0, 2.0) + tone(310.0, 2.0), 16000)
    sf.write("rain.wav", (0.2 * np.random.default_rng(0).standard_normal(24000)).astype(np.float32), 22050)
    store = write_store(Path("features/demo-efficientnet_lite0-imagenet.h5"), blobs(n_classes=3, dim=8))
    namespace: dict = {}
    embed, store_frame, svm, hear = python_blocks("From Python")

    def run(block):
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README's own code

    run(embed)
    assert namespace["X"].shape == (1, 1280) and namespace["frames"].shape == (3, 1280)
    np.testing.assert_array_equal(namespace["starts"], [0.0, 0.5, 1.0])
    assert namespace["extractor"].dim == 1280
    run(store_frame)
    assert namespace["df"].index.names == ["file", "start", "end"] and "class0" in capsys.readouterr().out
    run(svm)
    assert "test accuracy" in capsys.readouterr().out
    run(hear)
    assert tuple(namespace["frames"].shape) == (2, 21, 1280) and namespace["ms"][0, -1] == 1000.0
    # what the README says of TunedSVM: its predictions are the ones `deepfeat svm --fold 5` reports
    from deepfeat.classify import run_svm

    reported = run_svm(store, fold=5, run_dir=tmp_path / "run", n_jobs=1)
    assert namespace["accuracy"] == pytest.approx(reported["test_accuracy"])
    assert namespace["svm"].best_C_ == reported["best_C"] and list(namespace["svm"].classes_) == ["class0", "class1",
                                                                                                  "class2"]
