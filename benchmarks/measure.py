"""The timed measurements: front end, CNN forward pass, end to end, audio models, svm, crnn.

Each ``bench_*`` function measures one thing and returns its figures as a dict (rates in clips/s,
images/s or rows/s, times in seconds); the ``bench.py`` entry runs them and :mod:`report` shows them.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import Sizes, audio_seconds, best_seconds, head, rate


# --- 1. front end --------------------------------------------------------------------------------
def _time_frontend(clips, plot, repeats: int) -> tuple[dict, list[np.ndarray], list[np.ndarray]]:
    """Best-of-``repeats`` seconds of each front-end stage on ``clips``.

    Returns the seconds per stage (``decode``, ``mel``, ``fast``, ``matplotlib``, ``image``) and
    the images of the two renderers (uint8 HxWx3, one per clip).
    """
    from deepfeat.audio import load_audio
    from deepfeat.render import render_fast, render_matplotlib, spectrogram_image
    from deepfeat.spectrogram import log_mel

    # Warm-up outside the timings: imports, the cached mel filterbank, matplotlib's font cache.
    first = log_mel(load_audio(clips[0].path, plot.mel.sample_rate)[0], plot.mel)
    render_fast(first, plot)
    render_matplotlib(first, plot)
    audio: list[np.ndarray] = []
    mels: list[np.ndarray] = []
    images: dict[str, list[np.ndarray]] = {}

    def decode():
        audio[:] = [load_audio(c.path, plot.mel.sample_rate)[0] for c in clips]

    def mel():
        mels[:] = [log_mel(x, plot.mel) for x in audio]

    def draw(renderer):
        images[renderer.__name__] = [renderer(db, plot) for db in mels]

    seconds = {"decode": best_seconds(decode, repeats), "mel": best_seconds(mel, repeats),
               "fast": best_seconds(lambda: draw(render_fast), repeats),
               "matplotlib": best_seconds(lambda: draw(render_matplotlib), repeats),
               "image": best_seconds(lambda: [spectrogram_image(x, plot) for x in audio], repeats)}
    return seconds, images["render_fast"], images["render_matplotlib"]


def bench_frontend(manifest, sizes: Sizes) -> tuple[dict, list[np.ndarray]]:
    """Decode + resample, log-mel and both renderers on the first clips, in this one process.

    Parameters
    ----------
    manifest : deepfeat.datasets.Manifest
        Its first ``sizes.frontend_clips`` clips are read.
    sizes : Sizes
        ``frontend_clips`` and ``frontend_repeats`` (the best repetition is kept).

    Returns
    -------
    figures : dict
        Rates per stage (clips/s), ``fast_over_matplotlib`` (ratio of the renderers' rates), the
        renderers' ``mean_abs_pixel_difference`` (uint8 levels, 0-255) and each stage's share of
        the front-end time.
    images : list of ndarray
        The ``fast`` renderer's images (uint8 HxWx3), one per clip.
    """
    from deepfeat.config import PlotConfig

    plot = PlotConfig()  # the defaults `deepfeat extract` uses
    clips = manifest.clips[:sizes.frontend_clips]
    n, reps = len(clips), sizes.frontend_repeats
    t, fast, slow = _time_frontend(clips, plot, reps)
    diff = float(np.mean([np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() for a, b in zip(fast, slow)]))
    frontend_seconds = t["decode"] + t["image"]
    figures = {
        "clips": n, "repeats": reps, "plot": {"window_s": plot.mel.window, "hop_s": plot.mel.hop,
                                              "n_mels": plot.mel.n_mels, "size": list(plot.size),
                                              "colormap": plot.colormap, "interpolation": plot.interpolation},
        "decode_resample_clips_per_s": rate(n, t["decode"]),
        "mel_clips_per_s": rate(n, t["mel"]),
        "render_fast_clips_per_s": rate(n, t["fast"]),
        "render_matplotlib_clips_per_s": rate(n, t["matplotlib"]),
        "fast_over_matplotlib": t["matplotlib"] / t["fast"],
        "mean_abs_pixel_difference": diff,  # uint8 levels (0-255), averaged over pixels, channels and clips
        "frontend_clips_per_s": rate(n, frontend_seconds),  # decode + mel + fast render: one extract worker
        "share_of_frontend": {"decode_resample": t["decode"] / frontend_seconds, "mel": t["mel"] / frontend_seconds,
                              "render_fast": t["fast"] / frontend_seconds},
    }
    return figures, fast


# --- 2. forward only -----------------------------------------------------------------------------
def _forward(network: str, weights: str, batch: np.ndarray, repeats: int, device, optimize: bool | None) -> dict:
    """Best-of-``repeats`` ``Extractor.embed`` on ``batch``: ``images_per_s`` and ``load_seconds``."""
    from deepfeat.extractors import create_extractor

    extractor = create_extractor(network, weights=weights, device=str(device), optimize=optimize)
    tic = time.perf_counter()
    extractor.load()
    load = time.perf_counter() - tic
    extractor.embed(batch[:extractor.batch_size])  # warm-up: allocator, kernels, thread pool
    seconds = best_seconds(lambda: extractor.embed(batch), repeats)
    return {"images_per_s": rate(len(batch), seconds), "load_seconds": load, "batch_size": extractor.batch_size,
            "frozen": bool(getattr(extractor, "optimize", False)) and extractor.device.type == "cpu"}


def bench_forward(network: str, weights: str, images: np.ndarray, sizes: Sizes, device) -> dict:
    """``Extractor.embed`` on ready-made images, as ``extract`` runs it; on CPU also the other way
    (traced and frozen, or eager), which tells whether freezing pays for this network.

    Parameters
    ----------
    network, weights : str
        As ``deepfeat extract -n NETWORK -w WEIGHTS``.
    images : ndarray, uint8 [N, H, W, 3]
        Front-end images; repeated to ``sizes.forward_images``.
    sizes : Sizes
        ``forward_images`` and ``forward_repeats``.
    device : torch.device

    Returns
    -------
    dict
        ``images_per_s`` and ``load_seconds`` of the default; on CPU ``frozen`` and ``eager`` (each
        ``images_per_s``, ``load_seconds``), ``default`` (``"frozen"`` or ``"eager"``) and
        ``frozen_over_eager`` (ratio of their images/s).
    """
    from deepfeat.extractors import create_extractor

    batch = np.resize(images, (sizes.forward_images, *images.shape[1:]))  # repeat the dataset's images
    # an untimed load first: the imports (torchvision) and first-touch costs are charged to neither variant
    create_extractor(network, weights=weights, device=str(device), optimize=False).load()
    default = _forward(network, weights, batch, sizes.forward_repeats, device, None)
    out = {"weights": weights, "images": len(batch), **default}
    if device.type == "cpu":
        other = _forward(network, weights, batch, sizes.forward_repeats, device, not default["frozen"])
        variants = {"frozen": default, "eager": other} if default["frozen"] else {"frozen": other, "eager": default}
        out.update(variants, default="frozen" if default["frozen"] else "eager",
                   frozen_over_eager=variants["frozen"]["images_per_s"] / variants["eager"]["images_per_s"])
    return out


# --- 3./4. end to end ----------------------------------------------------------------------------
def bench_extract(manifest, network: str, weights: str | None, scratch: Path, device) -> dict:
    """``extract_features`` on ``manifest`` with one network (image CNN or audio model).

    Parameters
    ----------
    manifest : deepfeat.datasets.Manifest
        Every clip is extracted.
    network : str
    weights : str or None
        None: the network's default.
    scratch : Path
        Folder for the store (deleted afterwards).
    device : torch.device
        Not passed to BirdNET (LiteRT runs on the CPU).

    Returns
    -------
    dict
        ``clips_per_s`` (the store's own timing: network loaded to last commit), ``wall_clips_per_s``
        (the whole call: model load, workers, HDF5 write), ``realtime_factor`` (audio seconds per
        pipeline second), the store's ``rows`` and ``dim``, the CPU plan (``workers``, ``threads``)
        and ``load_seconds``.
    """
    import h5py

    from deepfeat.extract import extract_features
    from deepfeat.extractors import create_extractor

    params = {"weights": weights} if weights else {}
    if network != "birdnet":
        params["device"] = str(device)
    extractor = create_extractor(network, **params)
    out = scratch / f"e2e-{network}.h5"
    tic = time.perf_counter()
    extract_features(manifest, extractor, out, overwrite=True, progress=False)
    wall = time.perf_counter() - tic
    with h5py.File(out, "r") as f:
        seconds = float(f.attrs["extract_seconds"])
        rows, dim = f["features"].shape
        plan = {key: int(f.attrs[key]) for key in ("workers", "threads")}
        load = float(f.attrs["load_seconds"])
    seconds_audio = audio_seconds(manifest)
    out.unlink()
    n = len(manifest)
    return {"weights": extractor.weights, "clips": n, "rows": int(rows), "dim": int(dim), **plan, "load_seconds": load,
            "pipeline_seconds": seconds, "clips_per_s": rate(n, seconds),
            "wall_seconds": wall, "wall_clips_per_s": rate(n, wall), "realtime_factor": seconds_audio / seconds}


# --- 5. svm and crnn -----------------------------------------------------------------------------
def write_svm_store(path: Path, sizes: Sizes, seed: int = 0) -> dict:
    """Write a synthetic ESC-50-size feature store for the svm measurement.

    ``svm_rows`` × ``svm_dim`` non-negative (post-ReLU-like) float32 features, ``svm_classes``
    balanced classes spread evenly over ``svm_folds`` folds; each class has its own mean direction,
    buried in unit noise (the classes overlap: the SVM must work).

    Returns
    -------
    dict
        The store's ``rows``, ``dim``, ``classes`` and ``folds``.
    """
    from deepfeat.store import StoreWriter

    rng = np.random.default_rng(seed)
    n, d, c = sizes.svm_rows, sizes.svm_dim, sizes.svm_classes
    labels = np.arange(n) % c
    folds = (np.arange(n) // c) % sizes.svm_folds + 1
    centres = rng.standard_normal((c, d)).astype(np.float32) * 0.12
    names = [f"class{k:02d}" for k in range(c)]
    writer = StoreWriter(path, {"benchmark": "synthetic", "rows": n, "dim": d, "classes": c, "seed": seed},
                         names, n, overwrite=True,
                         attrs={"network": "synthetic", "weights": "none", "dataset": "bench-synthetic"})
    for start in range(0, n, 500):
        idx = np.arange(start, min(n, start + 500))
        x = np.maximum(centres[labels[idx]] + rng.standard_normal((len(idx), d)).astype(np.float32), 0.0)
        writer.commit(x, [f"clip{i:05d}" for i in idx], labels[idx], folds[idx], clips_done=int(idx[-1]) + 1)
    writer.finish()
    return {"rows": n, "dim": d, "classes": c, "folds": sizes.svm_folds}


def bench_svm(scratch: Path, sizes: Sizes) -> dict:
    """``deepfeat svm STORE --fold 5`` on :func:`write_svm_store`'s store, as a user runs it.

    A fresh process, imports included; ``wall_seconds`` is its whole run (seconds),
    ``protocol_seconds`` the command's own timing of the protocol.
    """
    store = scratch / "svm-store.h5"
    shape = write_svm_store(store, sizes)
    command = [sys.executable, "-m", "deepfeat.cli.main", "svm", str(store), "--fold", str(sizes.svm_folds),
               "-o", str(scratch / "svm-run"), "--json"]
    tic = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if done.returncode != 0:
        raise RuntimeError(f"deepfeat svm failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    metrics = json.loads(done.stdout)
    return {**shape, "command": "deepfeat svm STORE --fold 5", "wall_seconds": wall,
            "rows_per_s": rate(shape["rows"], wall), "best_C": metrics.get("best_C"),
            "test_accuracy": metrics.get("test_accuracy"), "devel_accuracy": metrics.get("devel_accuracy"),
            "protocol_seconds": (metrics.get("timings") or {}).get("total_seconds")}


def bench_crnn(manifest, scratch: Path, sizes: Sizes, device) -> dict:
    """Mel cache of the first ``sizes.crnn_clips`` clips, then ``sizes.crnn_epochs`` CRNN epochs on them.

    Returns
    -------
    dict
        ``mel_cache_seconds``, ``seconds_per_epoch`` (median over the epochs), ``train_clips_per_s``
        and ``projected_100_epochs_minutes``.
    """
    import dataclasses

    from deepfeat.crnn import CRNN_MEL, CRNN_TRAINING, DEFAULT_DURATION, CRNNClassifier
    from deepfeat.mel_cache import ensure_mel_cache, read_mels

    subset = head(manifest, sizes.crnn_clips)
    cache = scratch / "crnn-mels.h5"
    tic = time.perf_counter()
    ensure_mel_cache(cache, subset, CRNN_MEL, DEFAULT_DURATION, progress=False, overwrite=True)
    mel_seconds = time.perf_counter() - tic
    mels = read_mels(cache, ["original"])
    model = CRNNClassifier(training=dataclasses.replace(CRNN_TRAINING, epochs=sizes.crnn_epochs), device=str(device))
    model.fit(mels.transpose(1, 0, 2, 3), subset.label_indices())
    epochs = [h["seconds"] for h in model.history_]
    per_epoch = float(np.median(epochs))
    n = len(subset)
    return {"clips": n, "duration_s": DEFAULT_DURATION, "mel_frames": int(mels.shape[-1]),
            "mel_cache_seconds": mel_seconds, "mel_cache_clips_per_s": rate(n, mel_seconds),
            "epochs": len(epochs), "epoch_seconds": epochs, "seconds_per_epoch": per_epoch,
            "train_clips_per_s": rate(n, per_epoch),
            "projected_100_epochs_minutes": 100 * per_epoch / 60.0}
