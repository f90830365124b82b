"""``deepfeat demo-data OUT``: write the synthetic ESC-50-layout demo dataset."""
import click


@click.command("demo-data")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--clips-per-class", type=int, default=10, show_default=True)
@click.option("--duration", type=float, default=2.0, show_default=True, help="Clip length, seconds.")
@click.option("--sample-rate", type=int, default=22050, show_default=True, help="Hz.")
@click.option("--seed", type=int, default=0, show_default=True)
def demo_data(out, clips_per_class, duration, sample_rate, seed):
    """Write a small deterministic synthetic dataset (5 classes, 5 folds) in the ESC-50 layout."""
    from deepfeat.demo import DEMO_CLASSES, write_demo_dataset

    write_demo_dataset(out, clips_per_class=clips_per_class, duration=duration, sample_rate=sample_rate, seed=seed)
    click.echo(f"wrote {clips_per_class * len(DEMO_CLASSES)} clips ({', '.join(DEMO_CLASSES)}) to {out}")
