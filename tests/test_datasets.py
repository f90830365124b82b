import csv

import numpy as np
import pytest

from deepfeat.datasets import load_manifest
from deepfeat.demo import DEMO_CLASSES
from deepfeat.errors import ManifestError

from .conftest import tone


def test_esc50_layout(demo_dir):
    m = load_manifest(demo_dir)
    assert len(m) == 25 and m.label_names == sorted(DEMO_CLASSES)
    assert sorted(set(m.folds().tolist())) == [1, 2, 3, 4, 5]
    assert (m.label_indices() >= 0).all()
    assert all(c.path.is_file() for c in m.clips)
    assert m.clips[0].id == m.clips[0].path.stem


def test_fingerprint_changes_with_labels(demo_dir, tmp_path):
    m = load_manifest(demo_dir)
    same = load_manifest(demo_dir)
    assert m.fingerprint() == same.fingerprint()
    rows = list(csv.reader(open(demo_dir / "meta" / "esc50.csv")))
    rows[1][3] = "relabelled"
    other = tmp_path / "other"
    (other / "meta").mkdir(parents=True)
    (other / "audio").symlink_to(demo_dir / "audio")
    csv.writer(open(other / "meta" / "esc50.csv", "w", newline="")).writerows(rows)
    assert load_manifest(other).fingerprint() != m.fingerprint()


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_urbansound8k_layout(tmp_path, write_wav):
    rows = [["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]]
    for fold in (1, 2):
        for cls in ("dog_bark", "siren"):
            name = f"{fold}{cls}-0-0.wav"
            write_wav(f"us8k/audio/fold{fold}/{name}", tone(), 16000)
            rows.append([name, "1", "0", "1", "1", str(fold), "0", cls])
    _write(tmp_path / "us8k" / "metadata" / "UrbanSound8K.csv", rows)
    m = load_manifest(tmp_path / "us8k")
    assert len(m) == 4 and m.label_names == ["dog_bark", "siren"]
    assert m.folds().tolist() == [1, 1, 2, 2]


@pytest.mark.parametrize("with_fold", [True, False])
def test_label_csv(tmp_path, write_wav, with_fold):
    header = ["file", "label"] + (["fold"] if with_fold else [])
    rows = [header]
    for i, label in enumerate(["a", "b", "a"]):
        write_wav(f"clips/c{i}.wav", tone(), 16000)
        rows.append([f"clips/c{i}.wav", label] + ([str(i + 1)] if with_fold else []))
    _write(tmp_path / "labels.csv", rows)
    m = load_manifest(tmp_path / "labels.csv")
    assert m.ids() == ["clips/c0", "clips/c1", "clips/c2"]
    assert m.label_indices().tolist() == [0, 1, 0]
    assert m.folds().tolist() == ([1, 2, 3] if with_fold else [0, 0, 0])


def test_class_folders_and_flat_folder(tmp_path, write_wav):
    for cls in ("cat", "dog"):
        for i in range(2):
            write_wav(f"data/{cls}/{i}.flac", tone(), 16000)
    m = load_manifest(tmp_path / "data")
    assert m.label_names == ["cat", "dog"] and m.ids() == ["cat/0", "cat/1", "dog/0", "dog/1"]
    write_wav("flat/a.wav", tone(), 16000)
    write_wav("flat/b.wav", tone(), 16000)
    flat = load_manifest(tmp_path / "flat")
    assert flat.label_names == [] and flat.label_indices().tolist() == [-1, -1]


def test_label_file_naming_missing_audio(tmp_path, write_wav):
    write_wav("x/present.wav", tone(), 16000)
    _write(tmp_path / "x" / "labels.csv", [["file", "label"], ["present.wav", "a"], ["gone.wav", "b"]])
    with pytest.raises(ManifestError, match=r"labels.csv: names 1 missing audio file\(s\) \(.*gone.wav"):
        load_manifest(tmp_path / "x" / "labels.csv")


@pytest.mark.parametrize("rows,message", [
    ([["filename", "category"], ["a.wav", "x"]], r"labels.csv:1: missing column\(s\) file, label"),
    ([["file", "label", "fold"], ["a.wav", "x", "one"]], r"labels.csv:2: fold 'one' is not a whole number"),
    ([["file", "label"], ["a.wav", "x"], ["a.wav", "y"]], r"labels.csv:3: clip 'a' is listed again \(first on line 2\)"),
    ([["file", "label"]], r"labels.csv: lists no clips"),
    ([["file", "label", "file"], ["a.wav", "x", "b.wav"]], r"labels.csv:1: column\(s\) 'file' named twice"),
])
def test_wrong_label_files(tmp_path, write_wav, rows, message):
    write_wav("a.wav", tone(), 16000)
    _write(tmp_path / "labels.csv", rows)
    with pytest.raises(ManifestError, match=message):
        load_manifest(tmp_path / "labels.csv")


# Issue 14, case 2: label CSVs are parsed strictly; every error names FILE.csv:LINE.
STRICT_CASES = {
    "unbalanced quote mid-file": ('file,label,fold\na.wav,x,1\nb.wav,"y,2\nc.wav,x,3\nd.wav",4\n',
                                  r"labels.csv:3: a quoted field runs over several lines"),
    "a quote never closed": ('file,label,fold\na.wav,x,1\nb.wav,"y,2\nc.wav,x,3\nd.wav,y,4\n',
                             r"labels.csv:3: a quote opened on this line is never closed"),
    "quote inside a field": ('file,label\na.wav,x\nb.wav,"y"z\n', r"labels.csv:3: malformed CSV"),
    "a row with only a file name": ("file,label,fold\na.wav,x,1\nb.wav\n",
                                    r"labels.csv:3: 1 field\(s\) but the header has 3"),
    "an extra field": ("file,label\na.wav,x\nb.wav,y,extra\n", r"labels.csv:3: 3 field\(s\) but the header has 2"),
    "an empty file cell": ("file,label\na.wav,x\n,y\n", r"labels.csv:3: empty file name"),
    "a negative fold": ("file,label,fold\na.wav,x,1\nb.wav,y,-3\n", r"labels.csv:3: fold -3 is not a fold number"),
    "fold zero": ("file,label,fold\na.wav,x,0\nb.wav,y,1\n", r"labels.csv:2: fold 0 is not a fold number"),
    "an empty fold cell": ("file,label,fold\na.wav,x,1\nb.wav,y,\n", r"labels.csv:3: fold '' is not a whole number"),
    "a duplicate id": ("file,label\na.wav,x\nsub/../a.wav,y\na.wav,y\n",
                       r"labels.csv:4: clip 'a' is listed again \(first on line 2\)"),
    "latin-1 bytes": (b"file,label\na.wav,x\nb.wav,caf\xe9\n", r"labels.csv:3: not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(STRICT_CASES))
def test_label_csv_is_strict(tmp_path, write_wav, case):
    text, message = STRICT_CASES[case]
    for name in "abcd":
        write_wav(f"{name}.wav", tone(), 16000)
    path = tmp_path / "labels.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ManifestError, match=message) as error:
        load_manifest(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("csv_name,expected", [("labels.csv", "birds"), ("meta.csv", "birds"),
                                               ("train.csv", "birds"), ("birdsong.csv", "birdsong")])
def test_generic_csv_stem_takes_the_folder_name(tmp_path, write_wav, csv_name, expected):
    write_wav("birds/a.wav", tone(), 16000)
    _write(tmp_path / "birds" / csv_name, [["file", "label"], ["a.wav", "x"]])
    assert load_manifest(tmp_path / "birds" / csv_name).name == expected
    assert load_manifest(tmp_path / "birds" / csv_name, name="my-birds").name == "my-birds"


@pytest.mark.parametrize("name", ["nothing_here", "notes.txt"])
def test_not_a_dataset(tmp_path, name):
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError):
        load_manifest(tmp_path / name if name != "nothing_here" else tmp_path / "empty")


def test_demo_dataset_is_deterministic(tmp_path):
    from deepfeat.demo import write_demo_dataset

    a = write_demo_dataset(tmp_path / "a", clips_per_class=2, duration=0.5)
    b = write_demo_dataset(tmp_path / "b", clips_per_class=2, duration=0.5)
    files = sorted(p.name for p in (a / "audio").iterdir())
    assert len(files) == 2 * len(DEMO_CLASSES)
    assert all((a / "audio" / f).read_bytes() == (b / "audio" / f).read_bytes() for f in files)
    assert (a / "meta" / "esc50.csv").read_text() == (b / "meta" / "esc50.csv").read_text()
    c = write_demo_dataset(tmp_path / "c", clips_per_class=2, duration=0.5, seed=1)
    assert (c / "audio" / files[0]).read_bytes() != (a / "audio" / files[0]).read_bytes()


def test_demo_classes_are_distinguishable(demo_dir):
    """Mean log-mel profiles separate the synthetic classes (nearest-centroid, leave-one-fold-out)."""
    from deepfeat.audio import load_audio
    from deepfeat.config import MelConfig
    from deepfeat.spectrogram import log_mel

    m = load_manifest(demo_dir)
    mel = MelConfig(sample_rate=16000, n_mels=40)
    X = np.array([np.r_[log_mel(load_audio(c.path, 16000)[0], mel).mean(1), log_mel(load_audio(c.path, 16000)[0], mel).std(1)]
                  for c in m.clips])
    y, folds = m.label_indices(), m.folds()
    correct = 0
    for k in range(1, 6):
        tr, te = folds != k, folds == k
        centroids = np.array([X[tr & (y == c)].mean(0) for c in range(5)])
        pred = np.argmin(((X[te][:, None] - centroids[None]) ** 2).sum(-1), 1)
        correct += (pred == y[te]).sum()
    assert correct / len(y) >= 0.6
