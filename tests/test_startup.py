"""Start-up: what the first seconds of a command import and compute (checked in fresh processes)."""
import json
import multiprocessing
import subprocess
import sys

import matplotlib
import numpy as np
import pytest

from deepfeat.config import BUILTIN_COLORMAPS, PlotConfig
from deepfeat.errors import ConfigError
from deepfeat.render import colormap_lut

HEAVY = ("numpy", "torch", "sklearn", "scipy", "matplotlib", "librosa", "h5py", "PIL")


def _run(code: str, **env) -> str:
    import os

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_help_imports_nothing_heavy():
    code = ("import sys\nfrom deepfeat.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    assert _run(code) == "[]"


def test_versions_and_colour_maps_without_importing_their_packages(tmp_path):
    code = ("import sys, json\nfrom deepfeat.extract import versions\nfrom deepfeat.config import PlotConfig\n"
            "v = versions(); PlotConfig(colormap='cividis_r')\n"
            "print(json.dumps([v, [m for m in ('sklearn', 'librosa', 'matplotlib') if m in sys.modules]]))")
    versions, imported = json.loads(_run(code, XDG_CACHE_HOME=str(tmp_path)))
    import librosa
    import sklearn

    assert imported == []
    assert versions["scikit-learn"] == sklearn.__version__ and versions["librosa"] == librosa.__version__


def test_front_end_with_warm_caches_imports_neither_librosa_stft_nor_matplotlib(tmp_path):
    code = ("import sys\nfrom deepfeat.extract import make_extractor\n"
            "make_extractor('efficientnet_lite0', device='cpu').warm_frontend()\n"
            "print([m for m in ('numba', 'scipy.signal', 'matplotlib', 'librosa.core') if m in sys.modules])")
    _run(code, XDG_CACHE_HOME=str(tmp_path))  # makes the filterbank and colour-map caches
    assert _run(code, XDG_CACHE_HOME=str(tmp_path)) == "[]"


def test_builtin_colour_maps_are_matplotlibs():
    assert BUILTIN_COLORMAPS <= set(matplotlib.colormaps)
    assert {"magma", "viridis", "gray"} <= BUILTIN_COLORMAPS


def test_unknown_colour_map_still_refused_and_registered_ones_accepted():
    with pytest.raises(ConfigError, match="unknown colour map 'no_such_map'"):
        PlotConfig(colormap="no_such_map")
    name = "deepfeat_test_map"
    if name not in matplotlib.colormaps:
        matplotlib.colormaps.register(matplotlib.colors.ListedColormap(["black", "white"], name=name))
    assert PlotConfig(colormap=name).colormap == name


def test_colour_map_tables_are_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    colormap_lut.cache_clear()
    try:
        lut = colormap_lut("magma")
        cached = list(tmp_path.glob("deepfeat/colormaps/matplotlib-*/magma.npy"))
        assert len(cached) == 1 and np.array_equal(np.load(cached[0]), lut)
        expected = np.round(matplotlib.colormaps["magma"].resampled(256)(np.arange(256))[:, :3] * 255)
        assert np.array_equal(lut, expected.astype(np.uint8))
        cached[0].write_bytes(b"not an array")  # a damaged cache is made again
        colormap_lut.cache_clear()
        assert np.array_equal(colormap_lut("magma"), lut)
        code = ("import sys\nfrom deepfeat.render import colormap_lut\ncolormap_lut('magma')\n"
                "print('matplotlib' in sys.modules)")
        assert _run(code, XDG_CACHE_HOME=str(tmp_path)) == "False"
    finally:
        colormap_lut.cache_clear()


_FORKED = """
import multiprocessing, sys
from deepfeat.config import MelConfig, PlotConfig
from deepfeat.extractors import create_extractor

def imported_by_frontend(extractor, samples):
    before = set(sys.modules)
    extractor.frontend(samples)
    return sorted(set(sys.modules) - before)

import numpy as np
extractor = create_extractor("efficientnet_lite0", plot=PlotConfig(mel=MelConfig(sample_rate=16000)), device="cpu")
if sys.argv[1] == "warm":
    extractor.warm_frontend()
samples = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
with multiprocessing.get_context("fork").Pool(1) as pool:
    print(len(pool.apply(imported_by_frontend, (extractor, samples))))
"""


@pytest.mark.slow
@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_forked_workers_import_nothing_after_warm_up():
    def imported(mode):
        done = subprocess.run([sys.executable, "-c", _FORKED, mode], capture_output=True, text=True, check=True)
        return int(done.stdout.strip().splitlines()[-1])

    assert imported("cold") > 10  # librosa, scipy.signal, ...: each worker would import them again
    assert imported("warm") == 0
