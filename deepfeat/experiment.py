"""The paper's experiment on one dataset, end to end and resumable (``deepfeat paper DATA``,
``make paper DATA=...``).

Stages, each a call of the stage's library function (:class:`Stages`), printed as the
equivalent ``deepfeat`` command so any stage can be re-run by hand: ``extract`` every configured
feature set → ``svm`` on each store → ``crnn`` → ``finetune`` each fine-tuned CNN → ``fuse`` each of the paper's groups (over this
experiment's systems only; a group with fewer than two of them, or the same members as an
earlier group, is skipped) with every method → ``report``. Re-running skips what is finished:

* extract: always called; ``deepfeat extract`` itself returns at once when the store is
  complete for the same configuration (and refuses a store of another configuration);
* svm: skipped when ``metrics.json`` of the run names the same store checksum and test fold
  and the default protocol (SVM kind, C grid);
* crnn: skipped when ``metrics.json`` has the same test fold, dataset manifest, training,
  mel and duration configuration;
* finetune: skipped when ``metrics.json`` has the same test fold and fine-tuning configuration
  (network, weights, trainable stages, ensemble, augmentations, training);
* fuse: skipped when ``metrics.json["fusion"]`` equals the configuration the run would have
  (method, parameters, group and each input's scores checksum: a re-run input re-fuses).

A stage that is not skipped reruns in its run folder; when that folder holds a run of other
inputs or settings (e.g. made by hand, or before a store was re-extracted), the stage refuses
(:func:`deepfeat.runs.claim_run_dir`) unless the experiment is run with ``overwrite``.

Outputs: ``features/<dataset>-<network>[-<weights>].h5`` and ``results/<dataset>/<system>/``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .evaluation import RESULTS_DIR, default_run_dir


@dataclass(frozen=True)
class FeatureSpec:
    """One feature set: ``deepfeat extract -n NETWORK [-w WEIGHTS]`` with default plot options."""

    network: str
    weights: str | None = None  #: None: the extractor's own default

    @classmethod
    def parse(cls, text: str) -> "FeatureSpec":
        """``NETWORK`` or ``NETWORK:WEIGHTS`` (e.g. ``densenet121:none``)."""
        network, _, weights = text.partition(":")
        if not network:
            raise ConfigError(f"feature set {text!r}: write NETWORK or NETWORK:WEIGHTS, e.g. densenet121:none")
        return cls(network, weights or None)

    def store(self, features_dir: Path, dataset: str) -> Path:
        """``<features_dir>/<dataset>-<network>[-<weights>].h5`` (a checkpoint path by its file stem)."""
        weights = self.weights
        if weights and ("/" in weights or "\\" in weights):
            weights = Path(weights).stem
        return features_dir / (f"{dataset}-{self.network}" + (f"-{weights}" if weights else "") + ".h5")

    def extract_args(self) -> list[str]:
        return ["-n", self.network] + (["-w", self.weights] if self.weights else [])


#: The feature sets of the ESC-10 experiment obtainable offline: EfficientNet-Lite0 (ImageNet),
#: three randomly initialised image CNNs (the paper's "no pre-training" rows) and BirdNET.
PAPER_FEATURES = (
    FeatureSpec("efficientnet_lite0", "imagenet"),
    FeatureSpec("densenet121", "none"),
    FeatureSpec("resnet50", "none"),
    FeatureSpec("vgg16", "none"),
    FeatureSpec("birdnet"),
)


@dataclass
class Experiment:
    """What ``deepfeat paper`` runs on one dataset.

    ``fold``: a fold number or ``"evaluation"``; ``channels``, ``dataset_name``, ``n_folds``: how
    the dataset is read (:func:`deepfeat.datasets.load_manifest`); ``select_metric``: what the SVMs,
    stacking fusions and the CRNN select by (None: the dataset's primary metric).
    """

    data: Path
    fold: int | str = 5
    features: Sequence[FeatureSpec] = PAPER_FEATURES
    crnn_epochs: int | None = 100  #: None: no CRNN
    crnn_augment: str = "none"
    #: fine-tuned CNNs (``NETWORK:WEIGHTS``), each ``deepfeat finetune`` with the settings below
    finetune: Sequence[str] = ("efficientnet_lite0:imagenet",)
    finetune_epochs: int | None = 30  #: None: no fine-tuning
    finetune_ensemble: int = 1
    finetune_augment: str = "mixup,specaugment"
    methods: Sequence[str] = ("stacking", "weighted", "mean", "vote")
    groups: Sequence[str] | None = None  #: None: every group of :data:`deepfeat.fusion.GROUPS`
    features_dir: Path = Path("features")
    results_root: Path = RESULTS_DIR
    device: str | None = None
    channels: str = "mix"
    dataset_name: str | None = None
    n_folds: int | None = None
    select_metric: str | None = None
    overwrite: bool = False  #: svm, crnn and fuse replace runs of other inputs or settings in their folders
    dataset: str = field(init=False, default="")
    manifest_sha256: str = field(init=False, default="")

    def manifest(self):
        """The dataset as this experiment reads it."""
        from .datasets import load_manifest

        return load_manifest(self.data, channels=self.channels, name=self.dataset_name, n_folds=self.n_folds)

    def data_args(self) -> list[str]:
        """The command-line options that read the dataset this way."""
        return [*(["--channels", self.channels] if self.channels != "mix" else []),
                *(["--dataset-name", self.dataset_name] if self.dataset_name else []),
                *(["--folds", str(self.n_folds)] if self.n_folds else [])]

    def fusion_params(self, method: str) -> dict:
        """The parameters every fusion of ``method`` gets (stacking: the selection metric)."""
        from .fusion import fusion_params_for

        return fusion_params_for(method, None, self.select_metric)


class Stages:
    """The stages the experiment runs, each a library call (tests replace the slow ones)."""

    def __init__(self, exp: Experiment):
        self.exp = exp

    def extract(self, spec: FeatureSpec, store: Path) -> None:
        from .extract import extract_features, make_extractor

        extractor = make_extractor(spec.network, weights=spec.weights, device=self.exp.device)
        extract_features(self.exp.manifest(), extractor, store, progress=False)

    def svm(self, store: Path, run_dir: Path) -> None:
        from .classify import run_svm

        run_svm(store, fold=self.exp.fold, run_dir=run_dir, select_metric=self.exp.select_metric,
                overwrite=self.exp.overwrite)

    def crnn(self, run_dir: Path) -> None:
        from .crnn import run_crnn

        run_crnn(self.exp.manifest(), run_dir, test_fold=self.exp.fold, classifier=crnn_classifier(self.exp),
                 device=self.exp.device, progress=False, select_metric=self.exp.select_metric,
                 overwrite=self.exp.overwrite)

    def fuse(self, paths: list[Path], method: str, group: str, run_dir: Path) -> None:
        from .fusion import run_fusion

        run_fusion(paths, method=method, fold=self.exp.fold, run_dir=run_dir, group=group,
                   params=self.exp.fusion_params(method), overwrite=self.exp.overwrite)

    def finetune(self, spec: FeatureSpec, run_dir: Path) -> None:
        from .finetune import run_finetune

        classifier, augment = finetune_classifier(self.exp, spec)
        run_finetune(self.exp.manifest(), run_dir, test_fold=self.exp.fold, classifier=classifier, augment=augment,
                     ensemble=self.exp.finetune_ensemble, device=self.exp.device, progress=False,
                     overwrite=self.exp.overwrite)

    def report(self, results_dir: Path) -> None:
        from .report import write_report

        write_report(results_dir, self.exp.fold)


from .experiment_checks import (  # noqa: E402 - they take Experiment and FeatureSpec, defined above
    crnn_classifier, crnn_done, crnn_expected, finetune_classifier, finetune_done, fuse_done, svm_done,
)


def _run_dir(exp: Experiment, system: str) -> Path:
    """``default_run_dir`` (``results/<dataset>/<system>``) under ``exp.results_root``."""
    return exp.results_root / default_run_dir(exp.dataset, system).relative_to(RESULTS_DIR)


# --- the driver ----------------------------------------------------------------------------------
Echo = Callable[[str], None]


def _step(echo: Echo, dry_run: bool, command: list[str], action: Callable[[], None], overwrite: bool = False) -> None:
    """Print ``deepfeat COMMAND`` (what the step amounts to), then run ``action`` unless ``dry_run``."""
    echo("+ deepfeat " + " ".join(command + (["--overwrite"] if overwrite else [])))
    if not dry_run:
        action()


def _extract_all(exp: Experiment, stages: Stages, echo: Echo, dry_run: bool) -> list[Path]:
    stores = []
    device = ["--device", exp.device] if exp.device else []
    for spec in exp.features:
        store = spec.store(exp.features_dir, exp.dataset)
        _step(echo, dry_run, ["extract", str(exp.data), *exp.data_args(), *spec.extract_args(), "-o", str(store),
                              "-q", *device],
              lambda spec=spec, store=store: stages.extract(spec, store))
        stores.append(store)
    return stores


def _svm_all(exp: Experiment, stages: Stages, stores: list[Path], echo: Echo, dry_run: bool) -> list[Path]:
    from .classify import system_name
    from .store import read_store

    planned = []
    for store in stores:
        if dry_run and not store.is_file():
            echo(f"  (after extract) deepfeat svm {store}")
            continue
        run_dir = _run_dir(exp, system_name(read_store(store)))
        planned.append(run_dir)
        reason = svm_done(run_dir, store, exp.fold, exp.select_metric)
        if reason:
            echo(f"  skip {run_dir}: {reason}")
            continue
        _step(echo, dry_run, ["svm", str(store), "--fold", str(exp.fold), "--select-metric", exp.select_metric,
                              "-o", str(run_dir), "-q"],
              lambda store=store, run_dir=run_dir: stages.svm(store, run_dir), exp.overwrite)
    return planned


def _crnn(exp: Experiment, stages: Stages, echo: Echo, dry_run: bool) -> Path:
    system, expected = crnn_expected(exp)
    run_dir = _run_dir(exp, system)
    reason = crnn_done(run_dir, exp, expected)
    if reason:
        echo(f"  skip {run_dir}: {reason}")
        return run_dir
    device = ["--device", exp.device] if exp.device else []
    _step(echo, dry_run, ["crnn", str(exp.data), *exp.data_args(), "--fold", str(exp.fold), "-o", str(run_dir),
                          "--epochs", str(exp.crnn_epochs), "--augment", exp.crnn_augment,
                          "--select-metric", exp.select_metric, "-q", *device],
          lambda: stages.crnn(run_dir), exp.overwrite)
    return run_dir


def _finetune_all(exp: Experiment, stages: Stages, echo: Echo, dry_run: bool) -> list[Path]:
    from .finetune import system_name

    planned = []
    device = ["--device", exp.device] if exp.device else []
    for text in exp.finetune:
        spec = FeatureSpec.parse(text)
        classifier, _ = finetune_classifier(exp, spec)
        run_dir = _run_dir(exp, system_name(classifier, exp.finetune_ensemble))
        planned.append(run_dir)
        reason = finetune_done(run_dir, exp, spec)
        if reason:
            echo(f"  skip {run_dir}: {reason}")
            continue
        _step(echo, dry_run, ["finetune", str(exp.data), "--fold", str(exp.fold), "-n", classifier.network, "-w",
                              classifier.weights, "--epochs", str(exp.finetune_epochs), "--augment",
                              exp.finetune_augment, *(["--ensemble", str(exp.finetune_ensemble)]
                                                      if exp.finetune_ensemble > 1 else []),
                              "-o", str(run_dir), "-q", *device],
              lambda spec=spec, run_dir=run_dir: stages.finetune(spec, run_dir), exp.overwrite)
    return planned


def _fuse_groups(exp: Experiment, stages: Stages, singles: list[Path], results_dir: Path, echo: Echo,
                 dry_run: bool) -> list[Path]:
    from .fusion import GROUPS, fused_system_name, fusion_config, fusion_params, select_group
    from .scores import read_scores

    scores_files = [d / "scores.h5" for d in singles if (d / "scores.h5").is_file()]
    planned, seen = [], {}
    for group in exp.groups or list(GROUPS):
        if not scores_files:
            echo(f"  (after svm and crnn) deepfeat fuse --group {group} ...")
            continue
        try:
            paths = select_group(scores_files, group, test_fold=exp.fold)
        except ConfigError:
            echo(f"  skip group {group}: fewer than two of this experiment's systems belong to it")
            continue
        systems = [read_scores(p).system for p in paths]
        members = tuple(sorted(systems))
        if members in seen:
            echo(f"  skip group {group}: the same systems as group {seen[members]}")
            continue
        seen[members] = group
        for method in exp.methods:
            run_dir = results_dir / fused_system_name(method, systems, group)
            planned.append(run_dir)
            params = exp.fusion_params(method)
            reason = fuse_done(run_dir, fusion_config(paths, systems, method, fusion_params(method, params), group))
            if reason:
                echo(f"  skip {run_dir}: {reason}")
                continue
            metric = ["--select-metric", params["select_metric"]] if "select_metric" in params else []
            _step(echo, dry_run, ["fuse", "--group", group, *map(str, paths), "-m", method, "--fold", str(exp.fold),
                                  *metric, "-o", str(run_dir), "-q"],
                  lambda paths=paths, method=method, group=group, run_dir=run_dir:
                  stages.fuse(paths, method, group, run_dir), exp.overwrite)
    return planned


def run_experiment(exp: Experiment, *, stages: Stages | None = None, echo: Echo = print,
                   dry_run: bool = False) -> Path:
    """Run every unfinished stage of ``exp`` (see the module docstring); returns the results
    folder of the dataset. ``dry_run`` prints the commands and what would be skipped.
    ``stages`` (default :class:`Stages`) runs each stage."""
    from .protocol import resolve_test_fold

    manifest = exp.manifest()
    exp.dataset, exp.manifest_sha256 = manifest.name, manifest.fingerprint()
    exp.fold = resolve_test_fold(exp.fold, manifest.evaluation_folds, str(exp.data))
    exp.select_metric = exp.select_metric or manifest.primary_metric
    stages = stages or Stages(exp)
    results_dir = _run_dir(exp, "any").parent

    rows = f", {len(manifest)} rows" if len(manifest) != manifest.n_clips else ""
    echo(f"== extract: {len(exp.features)} feature sets of {exp.dataset} ({manifest.n_clips} clips{rows})")
    stores = _extract_all(exp, stages, echo, dry_run)
    echo("== svm: one linear SVM per feature set")
    planned = _svm_all(exp, stages, stores, echo, dry_run)
    if exp.crnn_epochs:
        echo("== crnn: trained on log-mel spectrograms")
        planned.append(_crnn(exp, stages, echo, dry_run))
    if exp.finetune_epochs and exp.finetune:
        echo("== finetune: image CNNs fine-tuned on the mel images")
        planned += _finetune_all(exp, stages, echo, dry_run)
    echo("== fuse: the paper's groups, over this experiment's systems only")
    planned += _fuse_groups(exp, stages, planned, results_dir, echo, dry_run)

    others = sorted(p.parent for p in results_dir.glob("*/metrics.json") if p.parent not in planned) \
        if results_dir.is_dir() else []
    for other in others:
        echo(f"  note: {other} is not part of this experiment; the report lists it too (delete it to leave it out)")
    echo("== report")
    if results_dir.is_dir():
        _step(echo, dry_run, ["report", str(results_dir), "--fold", str(exp.fold)], lambda: stages.report(results_dir))
    return results_dir
