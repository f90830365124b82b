"""Property-based fuzzing of the label-CSV reader (issue 14): whatever the bytes of a label file,
reading it ends in a manifest or a one-line ManifestError naming the file, never another exception."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfeat.datasets import Manifest, load_manifest
from deepfeat.errors import ManifestError

from .conftest import tone

FILES = ("a.wav", "b.wav", "sub/c.wav")


@pytest.fixture(scope="module")
def folder():
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in FILES:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / name, tone(seconds=0.1), 16000)
        yield root


def _read(folder: Path, data: bytes) -> None:
    path = folder / "labels.csv"
    path.write_bytes(data)
    try:
        manifest = load_manifest(path)
    except ManifestError as e:
        message = str(e)
        assert "\n" not in message and "\r" not in message, message
        assert str(path) in message
        return
    assert isinstance(manifest, Manifest) and len(manifest) >= 1
    assert all(c.path.is_file() for c in manifest.clips)
    assert len(set(manifest.ids())) == len(manifest)
    assert all(c.fold >= 0 for c in manifest.clips)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_end_in_a_manifest_or_a_one_line_error(folder, data):
    _read(folder, data)


_CELLS = st.one_of(st.sampled_from([*FILES, "missing.wav", "", "x", "dog", "1", "2", "0", "-3", "1.5", " 2", '"',
                                    '"a.wav"', "a,wav", "\t", "é", "../a.wav", "/", ".", "sub/../a.wav", "nul\x00"]),
                   st.text(max_size=8))
_HEADERS = st.sampled_from(["file,label", "file,label,fold", "label,file,fold,notes", "file", "file,file,label",
                            "\ufefffile,label", "", "filename,category"])


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(_HEADERS, st.lists(st.lists(_CELLS, min_size=0, max_size=5), max_size=6),
       st.sampled_from([",", ";"]), st.sampled_from(["\n", "\r\n", "\r"]))
def test_any_table_ends_in_a_manifest_or_a_one_line_error(folder, header, rows, sep, newline):
    text = newline.join([header, *(sep.join(r) for r in rows)]) + newline
    _read(folder, text.encode("utf-8", "surrogatepass"))
