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


def write_images(manifest: Manifest, config: PlotConfig, out: str | Path, limit: int | None = None) -> int:
    """Render every clip of ``manifest`` (the first ``limit``) as ``config`` draws it into ``out``.

    One PNG per clip row (clip, or channel of a clip), or per window when ``config.segment`` is
    set, named by :func:`image_name`
    (a clip id with folders makes sub-folders). Returns the number of images written.
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
            target = out / image_name(clip.id, start if config.segment else None, clip.channel)
            target.parent.mkdir(parents=True, exist_ok=True)
            save_png(spectrogram_image(piece, config), target)
            n += 1
    return n
