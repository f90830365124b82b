"""Explicit dataset download (``make esc50``): never called at import or by other stages.

``python -m deepfeat.download esc50 DEST`` fetches the ESC-50 archive from its GitHub
repository (K. J. Piczak, CC BY-NC 3.0), unpacks it atomically and checks its layout.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from .errors import DeepfeatError

ESC50_URL = "https://github.com/karolpiczak/ESC-50/archive/master.zip"


def download_esc50(dest: str | Path, url: str = ESC50_URL, timeout: float = 30.0) -> Path:
    """Download and unpack ESC-50 into ``dest`` (with ``audio/`` and ``meta/esc50.csv``)."""
    dest = Path(dest)
    if (dest / "meta" / "esc50.csv").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        archive = Path(tmp) / "esc50.zip"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
        except OSError as e:
            raise DeepfeatError(f"cannot download ESC-50 from {url} ({e}); this machine seems offline: download the "
                                f"archive elsewhere and unpack it so that {dest}/meta/esc50.csv exists") from None
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        except zipfile.BadZipFile:
            raise DeepfeatError(f"{url}: the download is not a zip archive; try again later") from None
        roots = [p.parent.parent for p in Path(tmp).glob("*/meta/esc50.csv")]
        if not roots:
            raise DeepfeatError(f"{url}: archive has no meta/esc50.csv; the repository layout changed")
        shutil.move(str(roots[0]), dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "esc50":
        print("usage: python -m deepfeat.download esc50 DEST", file=sys.stderr)
        return 2
    try:
        path = download_esc50(args[1])
    except DeepfeatError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    print(f"ESC-50 is in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
