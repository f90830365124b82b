"""``deepfeat extract DATA -n NETWORK [-w imagenet|none|PATH] [-c COLORMAP] -o OUT.h5``
→ :func:`deepfeat.extract.extract_features`."""
from __future__ import annotations

import click

from .dataset_options import dataset_options, read_options
from .options import LibraryDefault, quiet_option, threads_option, workers_option
from .plot_options import plot_config_from, plot_options


def _list_networks(ctx, _param, value):
    """Every network as its class states it: kind, default weights, ``-w`` choices; then the
    extractor modules that could not be imported, with the reason."""
    if value and not ctx.resilient_parsing:
        from deepfeat.extractors import extractor_names, get_extractor_class, unavailable_extractors

        click.echo(f"{'network':20s} {'kind':6s} {'default':14s} -w choices")
        for name in extractor_names():
            cls = get_extractor_class(name)
            click.echo(f"{name:20s} {cls.kind:6s} {cls.default_weights:14s} {' | '.join(cls.weights_choices(name))}")
        for name, reason in unavailable_extractors().items():
            click.echo(f"{name:20s} unavailable: {reason}")
        ctx.exit()


def _clips_per_batch() -> int:
    from deepfeat.extract import CLIPS_PER_BATCH

    return CLIPS_PER_BATCH


@click.command("extract")
@click.option("--list", "list_networks", is_flag=True, expose_value=False, is_eager=True, callback=_list_networks,
              help="List the available networks and exit.")
@click.argument("data", type=click.Path(exists=True))
@click.option("-n", "--network", required=True, help="Extractor name (`deepfeat extract --list` shows all).")
@click.option("-w", "--weights", default=None,
              help="imagenet | none (random init, fixed seed) | a checkpoint path; audio models: their own default.")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False), help="HDF5 store to write.")
@click.option("--layer", default=None, help="Network layer to read (default: the network's penultimate layer).")
@click.option("--labels", "audio_root", default=None, type=click.Path(exists=True, file_okay=False),
              help="With a label CSV as DATA: folder its file paths are relative to.")
@click.option("--batch-size", type=click.IntRange(min=1), default=LibraryDefault(_clips_per_batch), show_default=True,
              help="Clips per committed batch (the network's own batch is chosen per device); a run resumes "
                   "only with the batch size it started with.")
@workers_option
@threads_option
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16"]), default="auto", show_default=True,
              help="auto: fp16 on CUDA, fp32 on CPU.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of random initialisation (-w none).")
@click.option("--size", type=(int, int), default=None, metavar="H W",
              help="Image networks: image size in pixels (default: the network's input size), e.g. 128 128 for a "
                   "backbone pre-trained at that size.")
@click.option("--on-error", type=click.Choice(["skip", "fail"]), default="skip", show_default=True,
              help="skip: record bad clips in the store and log, go on (clips cut short are kept, with a warning "
                   "in the store and log); fail: stop at the first bad or cut-short clip.")
@click.option("--overwrite", is_flag=True, help="Replace a store made with another configuration.")
@click.option("--shards", type=click.IntRange(min=1), default=None,
              help="Split the clips into N contiguous shards, each a resumable store under OUT.shards/, merged into "
                   "OUT at the end (default with --scheduler: one per Dask worker).")
@click.option("--scheduler", envvar="DEEPFEAT_SCHEDULER", default=None,
              help="Extract the shards on Dask: local:K starts K worker processes here; else a scheduler address "
                   "(tcp://host:8786). Env: DEEPFEAT_SCHEDULER.")
@click.option("--keep-shards", is_flag=True, help="Keep OUT.shards/ after the merge.")
@dataset_options
@plot_options
@quiet_option
def extract(data, network, weights, out, layer, audio_root, batch_size, workers, threads, device, precision, seed,
            size, on_error, overwrite, shards, scheduler, keep_shards, quiet, **plot_kwargs):
    """Extract features of every clip in DATA into the HDF5 store OUT.

    DATA is a dataset folder (ESC-50, UrbanSound8K, DCASE 2017 task 1, DCASE 2018 task 5, GTZAN,
    a folder per class, a flat folder of audio) or a label CSV (file,label[,fold]); README lists
    the layouts. An interrupted run resumes when rerun with the same options; one process at a
    time writes OUT (a second one stops at once, naming the first).
    With --shards or --scheduler the clips are extracted in shards (on a Dask cluster with
    --scheduler) and merged into OUT; rerunning resumes the unfinished shards only.

    Audio models (birdnet, panns_cnn14, openl3) have their own front end: image options other
    than --duration and -t (colour map, rate, mel settings) are refused for them, since the store
    would not record them yet look as if made with them.
    """
    from deepfeat.datasets import load_manifest
    from deepfeat.shards import ExtractorSpec, extract_sharded

    manifest = load_manifest(data, audio_root, **read_options(plot_kwargs))
    spec = ExtractorSpec(network, weights=weights, plot=plot_config_from(plot_kwargs, manifest), layer=layer,
                         device=device, precision=precision, seed=seed, size=tuple(size) if size else None)
    extractor = spec.build()  # checks the network and its options before anything runs
    options = {"clips_per_batch": batch_size, "workers": workers, "threads": threads, "on_error": on_error,
               "overwrite": overwrite, "progress": not quiet}
    if shards is not None or scheduler:
        path = extract_sharded(manifest, spec, out, shards=shards, scheduler=scheduler, keep_shards=keep_shards,
                               **options)
    else:
        if keep_shards:
            raise click.UsageError("--keep-shards applies to sharded runs: add --shards N or --scheduler")
        from deepfeat.extract import extract_features

        path = extract_features(manifest, extractor, out, **options)
    if not quiet:
        click.echo(f"wrote {path}")
