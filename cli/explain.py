"""``deepfeat explain RUN_DIR CLIPS... -o DIR`` → :func:`deepfeat.explain.explain_clips`."""
from __future__ import annotations

from pathlib import Path

import click


def _clips(clips, data):
    """(id, path, true class) of each CLIP: a clip id of DATA (its label known) or an audio file."""
    from deepfeat.errors import ConfigError

    by_id = {}
    if data:
        from deepfeat.datasets import load_manifest

        by_id = {c.id: c for c in load_manifest(data).clips}
        by_id.update({str(c.path.resolve()): c for c in by_id.values()})
    out = []
    for clip in clips:
        known = by_id.get(clip) or by_id.get(str(Path(clip).resolve()))
        if known is not None:
            out.append((known.id, known.path, known.label))
        elif Path(clip).is_file():
            out.append((Path(clip).stem, Path(clip), None))
        else:
            raise ConfigError(f"{clip}: neither an audio file nor a clip id of {data or 'a dataset (pass --data)'}")
    return out


@click.command("explain")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("clips", nargs=-1, required=True)
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False), help="Folder for the figures.")
@click.option("--data", default=None, type=click.Path(exists=True),
              help="The dataset: CLIPS may then be its clip ids, and the true classes are shown.")
@click.option("--method", "methods", type=click.Choice(["gradcam", "ig", "both"]), default="both", show_default=True,
              help="gradcam: Grad-CAM on the last convolutional stage; ig: Integrated Gradients from silence.")
@click.option("--steps", type=int, default=32, show_default=True, help="Integrated Gradients' integration steps.")
def explain(run_dir, clips, out, data, methods, steps):
    """Saliency maps of the model of a `deepfeat finetune` or `deepfeat crnn` RUN_DIR for CLIPS
    (audio files, or clip ids with --data), drawn over each clip's mel spectrogram: a PNG per
    clip and method, and OUT/index.md."""
    from deepfeat.explain import METHODS, explain_clips

    index = explain_clips(run_dir, _clips(clips, data), out, METHODS if methods == "both" else (methods,), steps)
    click.echo(f"wrote {index}")
