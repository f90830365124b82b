import zipfile

import pytest

from deepfeat.download import download_esc50, main
from deepfeat.errors import DeepfeatError


def test_offline_download_fails_with_clear_message(tmp_path):
    with pytest.raises(DeepfeatError, match="seems offline.*meta/esc50.csv"):
        download_esc50(tmp_path / "ESC-50", url="http://127.0.0.1:9/esc50.zip", timeout=2)
    assert not (tmp_path / "ESC-50").exists()


def test_download_unpacks_the_repository_layout(tmp_path):
    archive = tmp_path / "master.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ESC-50-master/meta/esc50.csv", "filename,fold,target,category\n")
        z.writestr("ESC-50-master/audio/1-1-A-0.wav", b"")
    dest = download_esc50(tmp_path / "data" / "ESC-50", url=archive.as_uri())
    assert (dest / "meta" / "esc50.csv").is_file() and (dest / "audio").is_dir()


def test_cli_usage_error():
    assert main(["nope"]) == 2
