"""``deepfeat demo-data OUT [--layout NAME]``: write a small synthetic dataset in a supported layout."""
import click

from .options import LazyChoice


def _layouts():
    from deepfeat.datasets import dataset_readers

    return [name for name, reader in dataset_readers().items() if reader.demo is not None]


@click.command("demo-data")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--layout", type=LazyChoice(_layouts), default="esc50", show_default=True,
              help="Whose layout to copy: esc50, dcase2017 (development + evaluation set), dcase2018 (4-channel "
                   "development + evaluation set), gtzan.")
@click.option("--clips-per-class", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Clip length, seconds.")
@click.option("--sample-rate", type=click.IntRange(min=1), default=None,
              help="Hz (default: the layout's own, e.g. 16000 for dcase2018).")
@click.option("--seed", type=int, default=0, show_default=True)
def demo_data(out, layout, clips_per_class, duration, sample_rate, seed):
    """Write a small deterministic synthetic dataset (5 classes built from tones, sweeps, noise
    bursts, clicks and modulated tones) in the layout of a supported dataset."""
    from deepfeat.datasets import dataset_readers, load_manifest

    rate = {} if sample_rate is None else {"sample_rate": sample_rate}
    path = dataset_readers()[layout].demo(out, clips_per_class=clips_per_class, duration=duration, seed=seed, **rate)
    manifest = load_manifest(path)
    click.echo(f"wrote {manifest.n_clips} clips ({', '.join(manifest.label_names)}) in the {layout} layout to {out}")
