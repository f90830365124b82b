"""``deepfeat ssl-study DATA``: the linear-probe vs fine-tune study of self-supervised pre-training
→ :func:`deepfeat.ssl.study.run_study`."""
from __future__ import annotations

import click

from .finetune import _blocks
from .options import LibraryDefault


def _study_default(name):
    def read():
        import dataclasses

        from deepfeat.ssl.study import Study

        field = next(f for f in dataclasses.fields(Study) if f.name == name)
        return field.default

    return read


def _pretrain_epochs():
    from deepfeat.ssl.study import STUDY_PRETRAIN

    return STUDY_PRETRAIN.epochs


def _methods_text():
    from deepfeat.ssl.config import METHODS

    return ",".join(METHODS)


@click.command("ssl-study")
@click.argument("data", type=click.Path(exists=True))
@click.option("-n", "--network", "backbone", default=LibraryDefault(_study_default("backbone")), show_default=True,
              help="The backbone (an image CNN small enough for the device).")
@click.option("--methods", default=LibraryDefault(_methods_text), show_default=True, metavar="LIST",
              help="Comma-separated self-supervised methods.")
@click.option("--fold", type=int, default=5, show_default=True,
              help="Test fold: never read by pre-training, scored once by each evaluation.")
@click.option("--size", type=(int, int), default=LibraryDefault(_study_default("size")), show_default=True,
              metavar="H W", help="Image size in pixels (pre-training, probe and fine-tuning).")
@click.option("--pretrain-epochs", type=int, default=LibraryDefault(_pretrain_epochs), show_default=True)
@click.option("--batch-size", type=int, default=None, help="Pre-training batch (default: the pre-training default).")
@click.option("--finetune-epochs", type=int, default=LibraryDefault(_study_default("finetune_epochs")),
              show_default=True)
@click.option("--train-blocks", default="2", show_default=True, metavar="K|all", callback=lambda c, p, v: _blocks(v),
              help="Fine-tuning: trainable stages at the end of the network.")
@click.option("--reference", default=LibraryDefault(_study_default("reference")), show_default=True,
              help="An ImageNet network as a reference row (none: no reference).")
@click.option("--limit", type=int, default=None,
              help="At most N clips per fold and class (a quick end-to-end check; results under <dataset>-limitN).")
@click.option("-o", "--output", "out", default=None, type=click.Path(file_okay=False),
              help="Results folder (default: results/<dataset>/ssl).")
@click.option("--work", default="features", show_default=True, type=click.Path(file_okay=False),
              help="Folder of weights files, feature stores and spectrogram caches (under ssl/<dataset>/).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available).")
@click.option("--threads", type=int, default=None, help="CPU threads for torch (default: torch's).")
@click.option("--workers", type=int, default=None, help="Front-end worker processes (default: CPU count, at most 4).")
@click.option("--overwrite", is_flag=True, help="Redo every row, replacing what another configuration left.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def ssl_study(data, backbone, methods, fold, size, pretrain_epochs, batch_size, finetune_epochs, train_blocks,
              reference, limit, out, work, device, threads, workers, overwrite, quiet):
    """Random init / ImageNet where obtainable / each self-supervised method, each evaluated by a
    linear probe (frozen features + SVM) and by fine-tuning, under the fold protocol; writes a
    table and a chart (results/<dataset>/ssl/). Rerunning skips finished rows and resumes the rest.
    """
    import dataclasses
    import shlex
    import sys
    from pathlib import Path

    from deepfeat.ssl.config import check_method
    from deepfeat.ssl.study import STUDY_PRETRAIN, Study, run_study

    pretrain = dataclasses.replace(STUDY_PRETRAIN, epochs=pretrain_epochs,
                                   warmup_epochs=min(STUDY_PRETRAIN.warmup_epochs, pretrain_epochs - 1),
                                   **({"batch_size": batch_size} if batch_size else {}))
    study = Study(Path(data), backbone=backbone, methods=tuple(check_method(m.strip()) for m in methods.split(",")
                                                                 if m.strip()),
                  fold=fold, size=tuple(size), pretrain=pretrain, finetune_epochs=finetune_epochs,
                  train_blocks=train_blocks,
                  reference=None if reference in ("none", "") else reference, limit=limit,
                  out=Path(out) if out else None, work=Path(work), device=device, threads=threads, workers=workers,
                  overwrite=overwrite, progress=not quiet,
                  command=" ".join(["deepfeat ssl-study", *map(shlex.quote, sys.argv[2:])]))
    run_study(study, echo=click.echo)
