"""Deep ensembles (Lakshminarayanan et al. 2017): M copies of a trained classifier that differ
only in their seed (initialisation of what trains, batch order, augmentation draws); the
ensemble's probabilities are the mean of its members' softmax outputs."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from ..errors import ConfigError, StoreError
from ..io import write_json


class SeedEnsemble(ClassifierMixin, BaseEstimator):
    """``n_members`` clones of ``estimator`` (a :class:`~deepfeat.training.classifier.TorchClassifier`)
    with training seeds ``seed, seed + 1, …``; ``predict_proba`` is their mean.

    Fitted attributes: ``estimators_`` (the members), ``classes_``, ``summary_`` (per member).
    ``fit``'s ``checkpoint`` path gets a ``-m<k>`` suffix per member, so each resumes alone.
    """

    def __init__(self, estimator=None, n_members: int = 5):
        self.estimator, self.n_members = estimator, n_members

    def _member(self, k: int):
        base = clone(self.estimator)
        config = base.training_config()
        return base.set_params(training=dataclasses.replace(config, seed=config.seed + k))

    def fit(self, X, y, clips=None, checkpoint: str | Path | None = None):
        if self.estimator is None or self.n_members < 1:
            raise ConfigError(f"an ensemble needs an estimator and n_members >= 1, got {self.n_members}")
        self.estimators_ = []
        for k in range(self.n_members):
            path = None if checkpoint is None else Path(checkpoint).with_name(f"{Path(checkpoint).stem}-m{k}.pt")
            self.estimators_.append(self._member(k).fit(X, y, clips=clips, checkpoint=path))
        self.classes_ = self.estimators_[0].classes_
        self.n_features_in_ = self.estimators_[0].n_features_in_
        self.summary_ = {"members": [m.summary_ for m in self.estimators_]}
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Mean of the members' class probabilities [N, n_classes]."""
        check_is_fitted(self)
        return np.mean([m.predict_proba(X) for m in self.estimators_], axis=0)

    def predict(self, X):
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    def save(self, run_dir: str | Path) -> Path:
        """Each member in ``run_dir/member-<k>/`` and ``model.json`` naming them."""
        check_is_fitted(self)
        run_dir = Path(run_dir)
        for k, member in enumerate(self.estimators_):
            member.save(run_dir / f"member-{k}")
        write_json(run_dir / "model.json", {"model": "ensemble", "member_class": type(self.estimators_[0]).__name__,
                                            "members": [f"member-{k}" for k in range(len(self.estimators_))]})
        return run_dir

    @classmethod
    def load(cls, run_dir: str | Path, member_class) -> "SeedEnsemble":
        """The ensemble saved in ``run_dir``; ``member_class`` loads each member."""
        info_path = Path(run_dir) / "model.json"
        if not info_path.is_file():
            raise StoreError(f"{info_path}: missing; point at a finished run folder")
        info = json.loads(info_path.read_text())
        ensemble = cls(n_members=len(info["members"]))
        ensemble.estimators_ = [member_class.load(Path(run_dir) / name) for name in info["members"]]
        ensemble.estimator = ensemble.estimators_[0]
        ensemble.classes_ = ensemble.estimators_[0].classes_
        ensemble.n_features_in_ = ensemble.estimators_[0].n_features_in_
        return ensemble
