"""``deepfeat plot``: the images ``extract`` feeds an image network, written as PNG files."""
from __future__ import annotations

from pathlib import Path

from .config import PlotConfig
from .datasets import Manifest


def image_name(clip_id: str, start: float | None = None, channel: int | None = None) -> str:
    """``<clip id>.png``, ``<clip id>_<start>s.png`` for a window starting at ``start`` seconds,
    with ``_ch<channel>`` before the suffix for a single channel's image."""
    stem = clip_id if channel is None else f"{clip_id}_ch{channel}"
    return f"{stem}.png" if start is None else f"{stem}_{start:.3f}s.png"


FIGURES = "figures"  #: sub-folder of ``deepfeat plot --figure``'s labelled figures


def save_figure(samples, config: PlotConfig, path: str | Path, title: str = "") -> Path:
    """Save :func:`spectrogram_figure` as a PNG."""
    from .io import atomic_path

    fig = spectrogram_figure(samples, config, title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return Path(path)


def spectrogram_figure(samples, config: PlotConfig, title: str = ""):
    """A labelled figure of what the network sees: the clipped log-mel spectrogram of mono
    ``samples`` (at ``config.mel.sample_rate``) with time in seconds, frequency in Hz on a mel
    axis and a colour bar in dB (0 dB: the clip's maximum). ``mel3`` images show their first
    resolution in magma. Returns the matplotlib Figure (8 × 4 inches)."""
    import librosa.display
    from matplotlib.figure import Figure

    from .spectrogram import log_mel

    mel = config.mel
    db = log_mel(samples, mel)
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    image = librosa.display.specshow(db, sr=mel.sample_rate, hop_length=int(round(mel.hop * mel.sample_rate)),
                                     x_axis="s", y_axis="mel", fmin=mel.fmin, fmax=mel.fmax, ax=ax,
                                     cmap="magma" if config.colormap == "mel3" else config.colormap,
                                     vmin=mel.clip_db, vmax=0.0)
    fig.colorbar(image, ax=ax, format="%+.0f dB", label="level re. clip maximum [dB]")
    ax.set(xlabel="time [s]", ylabel="frequency [Hz] (mel scale)")
    ax.set_title(f"{title + ': ' if title else ''}{mel.n_mels} mel bands, window {mel.window * 1000:.4g} ms, "
                 f"hop {mel.hop * 1000:.4g} ms, floor {mel.clip_db:g} dB", fontsize=10)
    return fig


def write_images(manifest: Manifest, config: PlotConfig, out: str | Path, limit: int | None = None,
                 figures: bool = False) -> int:
    """Render every clip of ``manifest`` (the first ``limit``) as ``config`` draws it into ``out``.

    One PNG per clip row (clip, or channel of a clip), or per window when ``config.segment`` is
    set, named by :func:`image_name` (a clip id with folders makes sub-folders). With ``figures``,
    also a labelled figure of each (:func:`save_figure`) under the same name in ``out/figures/``.
    Returns the number of network images written.
    """
    from .audio import load_audio, segments
    from .render import save_png, spectrogram_image

    out = Path(out)
    clips = manifest.clips[:limit] if limit else manifest.clips
    n = 0
    for clip in clips:
        samples, rate = load_audio(clip.path, config.mel.sample_rate, clip.channel)
        pieces, starts = segments(samples, rate, config.duration, config.segment)
        for piece, start in zip(pieces, starts):
            name = image_name(clip.id, start if config.segment else None, clip.channel)
            for target in (out / name, *([out / FIGURES / name] if figures else [])):
                target.parent.mkdir(parents=True, exist_ok=True)
            save_png(spectrogram_image(piece, config), out / name)
            if figures:
                save_figure(piece, config, out / FIGURES / name,
                            title=clip.id + (f" from {start:.2f} s" if config.segment else ""))
            n += 1
    return n
