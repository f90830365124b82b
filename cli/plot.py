"""``deepfeat plot DATA -o DIR``: render the mel images (PNGs) that ``extract`` would feed a network."""
from __future__ import annotations

import click

from .options import quiet_option
from .plot_options import plot_config_from, plot_options


@click.command("plot")
@click.argument("data", type=click.Path(exists=True))
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False), help="Folder for PNGs.")
@click.option("--size", type=(int, int), default=(224, 224), show_default=True, metavar="H W", help="Pixels.")
@click.option("--limit", type=int, default=None, help="Only the first N clips.")
@plot_options
@quiet_option
def plot(data, out, size, limit, quiet, **plot_kwargs):
    """Write one PNG per clip (or per window with -t) to OUT, named after the clip id."""
    from pathlib import Path

    from deepfeat.audio import load_audio, segments
    from deepfeat.datasets import load_manifest
    from deepfeat.render import save_png, spectrogram_image

    config = plot_config_from(plot_kwargs, size=tuple(size))
    manifest = load_manifest(data)
    clips = manifest.clips[:limit] if limit else manifest.clips
    out = Path(out)
    n = 0
    for clip in clips:
        samples, rate = load_audio(clip.path, config.mel.sample_rate)
        pieces, starts = segments(samples, rate, config.duration, config.segment)
        for piece, start in zip(pieces, starts):
            image = spectrogram_image(piece, config)
            target = out / (f"{clip.id}.png" if not config.segment else f"{clip.id}_{start:.3f}s.png")
            target.parent.mkdir(parents=True, exist_ok=True)
            save_png(image, target)
            n += 1
    if not quiet:
        click.echo(f"wrote {n} images to {out}")
