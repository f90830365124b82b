"""No tracebacks (issue 14, cases 3 and 8): every subcommand given bad arguments or an unusable
output ends with one line on stderr and exit status 2 (``Error: ...`` from deepfeat, or click's
usage message), never with another exception."""
from __future__ import annotations

import os

import numpy as np
import pytest

from deepfeat.cli.main import main

from .helpers import blobs, write_store


@pytest.fixture(scope="module")
def files(demo_dir, tmp_path_factory):
    """A store, a scores file, a results folder, a plain file and an unfinished store."""
    from deepfeat.classify import run_svm
    from deepfeat.store import StoreWriter

    root = tmp_path_factory.mktemp("bad")
    store = write_store(root / "store.h5", blobs(n_classes=2, per_cell=2))
    run_svm(store, run_dir=root / "results" / "svm", n_jobs=1)
    (root / "plain.txt").write_text("not a folder")
    w = StoreWriter(root / "unfinished.h5", {"toy": True}, ["a"], 2)
    w.commit(np.ones((1, 2), np.float32), ["x"], [0], [1], clips_done=1)
    w.close()  # as if killed: the journal stays
    return {"demo": demo_dir, "store": store, "scores": root / "results" / "svm" / "scores.h5",
            "results": root / "results", "plain": root / "plain.txt", "unfinished": root / "unfinished.h5",
            "blocked": root / "plain.txt" / "out"}  # a path whose parent folder is a file


EXTRACT = ["extract", "{demo}", "-n", "efficientnet_lite0", "-o", "{tmp}/x.h5"]
CASES = {
    "demo-data into a file": ["demo-data", "{blocked}"],
    "demo-data no clips": ["demo-data", "{tmp}/d", "--clips-per-class", "0"],
    "demo-data negative duration": ["demo-data", "{tmp}/d", "--duration", "-1"],
    "plot into a file": ["plot", "{demo}", "-o", "{blocked}", "--limit", "1"],
    "plot negative window": ["plot", "{demo}", "-o", "{tmp}/p", "--window", "-0.1"],
    "plot zero mels": ["plot", "{demo}", "-o", "{tmp}/p", "--n-mels", "0"],
    "plot bad fmax": ["plot", "{demo}", "-o", "{tmp}/p", "--fmax", "high"],
    "plot zero size": ["plot", "{demo}", "-o", "{tmp}/p", "--size", "0", "0", "--limit", "1"],
    "plot zero segment": ["plot", "{demo}", "-o", "{tmp}/p", "-t", "0", "0", "--limit", "1"],
    "extract batch size 0": [*EXTRACT, "--batch-size", "0"],
    "extract negative workers": [*EXTRACT, "--workers", "-1"],
    "extract bad device": [*EXTRACT, "--device", "warp-drive"],
    "extract into a file": ["extract", "{demo}", "-n", "efficientnet_lite0", "-o", "{blocked}/x.h5", "-sr", "16000",
                            "--workers", "0", "-q"],
    "extract audio model with image options": ["extract", "{demo}", "-n", "panns_cnn14", "-c", "gray", "-o",
                                               "{tmp}/x.h5"],
    "extract negative duration": [*EXTRACT, "--duration", "-2"],
    "extract unknown layer": [*EXTRACT, "--layer", "nope", "-sr", "16000", "--workers", "0", "-q"],
    "inspect missing": ["inspect", "{tmp}/missing.h5"],
    "inspect a folder": ["inspect", "{tmp}"],
    "inspect unfinished": ["inspect", "{unfinished}"],
    "export not a store": ["export", "{plain}"],
    "export into a file": ["export", "{store}", "-o", "{blocked}/x.csv"],
    "weights unknown": ["weights", "download", "no-such-weights"],
    "svm missing store": ["svm", "{tmp}/missing.h5"],
    "svm scores file as store": ["svm", "{scores}"],
    "svm missing fold": ["svm", "{store}", "--fold", "9", "-o", "{tmp}/r"],
    "svm bad C grid": ["svm", "{store}", "--c-grid", "a,b", "-o", "{tmp}/r"],
    "svm negative C": ["svm", "{store}", "--c-grid", "-1", "-o", "{tmp}/r"],
    "svm zero jobs": ["svm", "{store}", "-j", "0", "-o", "{tmp}/r"],
    "svm into a file": ["svm", "{store}", "-o", "{blocked}", "-q"],
    "crnn zero epochs": ["crnn", "{demo}", "--epochs", "-1", "-o", "{tmp}/c"],
    "crnn zero batch": ["crnn", "{demo}", "--batch-size", "0", "-o", "{tmp}/c"],
    "crnn unknown augmentation": ["crnn", "{demo}", "--augment", "wobble", "-o", "{tmp}/c"],
    "crnn negative duration": ["crnn", "{demo}", "--duration", "-1", "-o", "{tmp}/c"],
    "crnn zero mels": ["crnn", "{demo}", "--n-mels", "0", "-o", "{tmp}/c"],
    "crnn negative threads": ["crnn", "{demo}", "--threads", "-2", "-o", "{tmp}/c"],
    "crnn negative learning rate": ["crnn", "{demo}", "--lr", "-1", "--epochs", "1", "-o", "{tmp}/c", "-q",
                                    "--workers", "0", "-sr", "16000", "--duration", "1"],
    "crnn bad device": ["crnn", "{demo}", "--device", "warp-drive", "-o", "{tmp}/c"],
    "finetune zero epochs": ["finetune", "{demo}", "--epochs", "0", "-o", "{tmp}/f"],
    "finetune zero batch": ["finetune", "{demo}", "--batch-size", "0", "-o", "{tmp}/f"],
    "finetune bad device": ["finetune", "{demo}", "--device", "warp-drive", "-o", "{tmp}/f"],
    "finetune unknown network": ["finetune", "{demo}", "-n", "vgg17", "-o", "{tmp}/f"],
    "explain not a run": ["explain", "{tmp}", "some-clip", "-o", "{tmp}/e"],
    "explain an svm run": ["explain", "{results}/svm", "f1-c0-0", "-o", "{tmp}/e"],
    "fuse a store": ["fuse", "{store}", "{scores}"],
    "fuse other fold": ["fuse", "{scores}", "{scores}", "--fold", "3"],
    "fuse unknown group": ["fuse", "--group", "nope", "{results}"],
    "report missing": ["report", "{tmp}/nothing"],
    "report empty folder": ["report", "{tmp}"],
    "paper bad feature set": ["paper", "{demo}", "-n", ":none", "--dry-run"],
    "paper negative epochs": ["paper", "{demo}", "--crnn-epochs", "-3", "--dry-run"],
    "unknown command": ["frobnicate"],
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_arguments_end_in_one_line_and_status_2(name, files, tmp_path, capsys):
    args = [a.format(tmp=tmp_path, **files) for a in CASES[name]]
    with pytest.raises(SystemExit) as e:
        main(args)  # any other exception escaping main() would be a traceback
    err = capsys.readouterr().err
    assert e.value.code == 2, (name, err)
    assert "Traceback" not in err
    if err.startswith("Error: "):  # deepfeat's own errors: one line naming what is wrong
        assert err.count("\n") == 1, err
    else:  # click's usage errors: usage, hint, the error line
        assert "Usage:" in err and "Error:" in err, err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_output_folder(files, tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(SystemExit) as e:
            main(["extract", str(files["demo"]), "-n", "efficientnet_lite0", "-o", str(out / "x.h5"), "-sr", "16000",
                  "--workers", "0", "-q"])
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("Error: ") and err.count("\n") == 1 and "x.h5.partial" in err


def test_inspect_gives_the_hint_svm_gives_for_an_interrupted_store(files, capsys):
    store = files["unfinished"]
    messages = []
    for command in ("inspect", "svm"):
        with pytest.raises(SystemExit):
            main([command, str(store)])
        messages.append(capsys.readouterr().err)
    assert messages[0] == messages[1]
    assert "an unfinished unfinished.h5.partial exists: rerun the same extract command to finish it" in messages[0]
