"""deepfeat.fusion: aligning scores files, the fusion estimators, groups and the fold protocol.

Systems are synthetic: each is good (a large margin on the true class) on a few classes and
near chance on the others, so systems are complementary and fusion has something to gain.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from deepfeat.errors import ConfigError, StoreError
from deepfeat.fusion import (
    GROUPS, METHODS, MajorityVote, MeanFusion, StackingFusion, WeightedFusion, align_scores, evaluate_fusion,
    fused_system_name,
    make_fusion, read_aligned, run_fusion, select_group, stack_scores, system_info,
)
from deepfeat.scores import Scores, read_scores

LABEL_NAMES = ["baby", "clock", "dog", "rain", "sea"]
N_CLASSES = len(LABEL_NAMES)


def clip_table(per_class: int = 8, n_folds: int = 5):
    """ids, folds, labels of a balanced dataset: per_class clips of each class in each fold."""
    folds = np.repeat(np.arange(1, n_folds + 1), N_CLASSES * per_class)
    labels = np.tile(np.repeat(np.arange(N_CLASSES), per_class), n_folds)
    ids = np.array([f"{f}-{i:03d}" for i, f in enumerate(folds)], dtype=object)
    return ids, folds, labels


def system_config(family: str, network: str, weights: str | None, colormap: str = "viridis") -> dict:
    """Scores ``config`` as `deepfeat svm` / `deepfeat crnn` write it (the parts fusion reads)."""
    if family == "crnn":
        return {"training": {"epochs": 3}, "mel": {}, "dataset": "synthetic"}
    extractor = {"network": network, "kind": family, "weights": weights, "layer": None}
    if family == "image":
        extractor["plot"] = {"colormap": colormap}
    return {"best_C": 0.1, "store": f"features/{network}.h5",
            "store_config": {"extractor": extractor, "dataset": {"name": "synthetic", "n_clips": 200}}}


def synthetic_system(name: str, good: tuple[int, ...], seed: int, *, family: str = "image", network: str | None = None,
                     weights: str | None = "imagenet", strength: float = 3.0, per_class: int = 8, test_fold: int = 5,
                     scale: float = 1.0) -> Scores:
    """A system whose true-class score is ``strength`` above noise on classes ``good``, 0.3 elsewhere."""
    rng = np.random.default_rng(seed)
    ids, folds, labels = clip_table(per_class)
    scores = rng.normal(size=(len(ids), N_CLASSES))
    scores[np.arange(len(ids)), labels] += np.where(np.isin(labels, good), strength, 0.3)
    return Scores(system=name, ids=ids, folds=folds, labels=labels, label_names=LABEL_NAMES, scores=scale * scores,
                  test_fold=test_fold, score_kind="probability" if family == "crnn" else "decision_function",
                  config=system_config(family, network or name.removeprefix("svm-").split("-")[0], weights))


def complementary_systems() -> list[Scores]:
    return [synthetic_system("svm-vgg16-imagenet", (0, 1, 2), seed=1),
            synthetic_system("svm-resnet50-none", (2, 3, 4), seed=2, weights="none", scale=40.0),
            synthetic_system("crnn", (0, 4), seed=3, family="crnn")]


def accuracy(scores: Scores, mask) -> float:
    return float((scores.scores.argmax(axis=1) == scores.labels)[mask].mean())


@pytest.fixture
def written(tmp_path):
    """The complementary systems written as run folders results/synthetic/<system>/scores.h5."""
    paths = []
    for s in complementary_systems():
        paths.append(s.write(tmp_path / "results" / "synthetic" / s.system / "scores.h5"))
    return paths


# --- aligning --------------------------------------------------------------------------------
def test_align_reorders_rows_by_clip_id():
    a, b = complementary_systems()[:2]
    order = np.random.default_rng(0).permutation(len(b.ids))
    shuffled = Scores(b.system, b.ids[order], b.folds[order], b.labels[order], b.label_names, b.scores[order],
                      b.test_fold, config=b.config)
    aligned = align_scores([a, shuffled])
    np.testing.assert_array_equal(aligned[1].ids, a.ids)
    np.testing.assert_array_equal(aligned[1].scores, b.scores)


def _corrupt(s: Scores, what: str) -> Scores:
    ids, folds, labels = s.ids.copy(), s.folds.copy(), s.labels.copy()
    names, test_fold = list(s.label_names), s.test_fold
    if what == "ids":
        ids[3] = "not-a-clip"
    elif what == "folds":
        folds[3] = folds[3] % 5 + 1
    elif what == "labels":
        labels[3] = (labels[3] + 1) % N_CLASSES
    elif what == "label_names":
        names[0] = "cat"
    elif what == "test_fold":
        test_fold = 4
    elif what == "fewer_rows":
        keep = slice(0, len(ids) - 1)
        return Scores(s.system, ids[keep], folds[keep], labels[keep], names, s.scores[keep], test_fold, config=s.config)
    return Scores(s.system, ids, folds, labels, names, s.scores, test_fold, config=s.config)


@pytest.mark.parametrize("what, message", [
    ("ids", "clip ids differ"), ("fewer_rows", "clip ids differ"), ("folds", "clip folds differ"),
    ("labels", "clip labels differ"), ("label_names", "class names differ"), ("test_fold", "test fold 4 differs"),
])
def test_mismatched_files_are_a_one_line_error_naming_both(tmp_path, what, message):
    a, b = complementary_systems()[:2]
    pa = a.write(tmp_path / "a" / "scores.h5")
    pb = _corrupt(b, what).write(tmp_path / "b" / "scores.h5")
    with pytest.raises(StoreError, match=message) as err:
        read_aligned([pa, pb])
    text = str(err.value)
    assert str(pa) in text and str(pb) in text and "\n" not in text


def test_a_system_given_twice_is_refused():
    a = complementary_systems()[0]
    with pytest.raises(ConfigError, match="given twice"):
        align_scores([a, a])


def test_stack_scores_is_system_major():
    systems = complementary_systems()
    X = stack_scores(systems)
    assert X.shape == (len(systems[0].ids), len(systems) * N_CLASSES)
    np.testing.assert_allclose(X[:, N_CLASSES:2 * N_CLASSES], systems[1].scores, rtol=1e-6)


# --- estimators -------------------------------------------------------------------------------
def _training_data():
    systems = complementary_systems()
    s = systems[0]
    dev = ~s.test_mask
    return stack_scores(systems)[dev], s.labels[dev], s.folds[dev]


@pytest.mark.parametrize("method", list(METHODS))
def test_estimators_follow_the_sklearn_api(method):
    X, y, groups = _training_data()
    est = make_fusion(method, classes=list(range(N_CLASSES)))
    params = est.get_params()
    twin = clone(est).set_params(**params)
    assert twin.get_params() == params
    fitted = clone(est).fit(X, y, **({"groups": groups} if method == "stacking" else {}))
    scores = fitted.decision_function(X)
    assert scores.shape == (len(X), N_CLASSES)
    np.testing.assert_array_equal(fitted.predict(X), fitted.classes_[scores.argmax(axis=1)])
    assert 0.0 <= fitted.score(X, y) <= 1.0
    pipe = Pipeline([("identity", FunctionTransformer()), ("fuse", clone(est))]).fit(X, y)
    np.testing.assert_array_equal(pipe.predict(X), clone(est).fit(X, y).predict(X))


@pytest.mark.parametrize("est", [MeanFusion(normalise="standard"), MeanFusion(normalise="softmax"), MajorityVote(),
                                 WeightedFusion(), StackingFusion(normalise="softmax"),
                                 StackingFusion(normalise="standard")])
def test_fixed_rules_ignore_each_systems_scale_and_offset(est):
    X, y, _ = _training_data()
    rescaled = X.copy()
    rescaled[:, :N_CLASSES] = 1000.0 * rescaled[:, :N_CLASSES] - 7.0  # system 0 in other units
    a, b = clone(est).fit(X, y), clone(est).fit(rescaled, y)
    np.testing.assert_allclose(a.decision_function(X), b.decision_function(rescaled), rtol=1e-9, atol=1e-12)


def test_mean_fusion_is_the_mean_of_standardised_scores():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 2 * 3)) * [1, 1, 1, 5, 5, 5] + [0, 0, 0, 2, 2, 2], np.arange(30) % 3
    est = MeanFusion().fit(X, y)
    z = [(X[:, :3] - X[:, :3].mean()) / X[:, :3].std(), (X[:, 3:] - X[:, 3:].mean()) / X[:, 3:].std()]
    np.testing.assert_allclose(est.decision_function(X), (z[0] + z[1]) / 2)
    soft = MeanFusion(normalise="softmax").fit(X, y).decision_function(X)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0)


@pytest.mark.parametrize("rows, expected", [
    # three systems over three classes: each row lists the class each system ranks first
    ([0, 0, 1], 0), ([2, 1, 2], 2), ([1, 1, 1], 1),
])
def test_majority_vote_takes_the_most_voted_class(rows, expected):
    X = np.zeros((1, 9))
    for s, c in enumerate(rows):
        X[0, 3 * s + c] = 1.0
    train = np.tile(np.eye(3), (2, 3))  # three identical systems, each right on every training row
    est = MajorityVote(classes=[0, 1, 2]).fit(train, np.array([0, 1, 2, 0, 1, 2]))
    assert est.predict(X)[0] == expected
    votes = est.decision_function(X)[0]
    assert votes[expected] == pytest.approx(votes.max())


def test_majority_vote_breaks_ties_by_mean_score():
    # two systems disagree (class 0 vs class 1); system 1 is far more confident in class 1
    train = np.tile(np.eye(3), (2, 2))
    est = MajorityVote(classes=[0, 1, 2]).fit(train, np.array([0, 1, 2, 0, 1, 2]))
    X = np.array([[0.5, 0.4, 0.0, 0.0, 3.0, 0.0]])
    assert est.predict(X)[0] == 1
    X_flipped = np.array([[3.0, 0.0, 0.0, 0.0, 0.5, 0.4]])
    assert est.predict(X_flipped)[0] == 0


def test_stacking_tunes_C_on_the_groups_like_deepfeat_svm(tmp_path):
    """The stacking SVM picks the same C with the same devel accuracy as `deepfeat svm`'s protocol
    run on the concatenated scores as a feature store."""
    from deepfeat.classify import evaluate_store
    from deepfeat.store import FeatureSet
    from deepfeat.svm import TunedSVM

    systems = complementary_systems()
    s = systems[0]
    fs = FeatureSet(path=tmp_path / "stacked.h5", features=stack_scores(systems), ids=s.ids,
                    labels=s.labels, folds=s.folds, label_names=LABEL_NAMES, window_starts=None, config={}, attrs={},
                    skipped=[])
    grid = (1e-3, 1e-2, 1e-1, 1.0)
    svm = evaluate_store(fs, 5, estimator=TunedSVM(Cs=grid, n_jobs=1))
    fused = evaluate_fusion(systems, "stacking", params={"Cs": grid, "normalise": "none"})
    assert fused.metrics["best_C"] == svm.metrics["best_C"]
    assert fused.metrics["devel_accuracy"] == pytest.approx(svm.metrics["devel_accuracy"])
    assert fused.metrics["test_accuracy"] == pytest.approx(svm.metrics["test_accuracy"])
    assert [r["accuracy"] for r in fused.metrics["cv"]] == pytest.approx([r["accuracy"] for r in svm.metrics["cv"]])


@pytest.mark.parametrize("method", list(METHODS))
def test_fusion_of_complementary_systems_beats_each_of_them(method):
    systems = complementary_systems()
    result = evaluate_fusion(systems, method)
    dev = ~systems[0].test_mask
    best_single = max(accuracy(s, dev) for s in systems)
    assert result.metrics["devel_accuracy"] > best_single + 0.05


def test_stacking_beats_fixed_rules_when_systems_differ_in_quality():
    systems = complementary_systems()
    noisy = [synthetic_system(f"svm-noise{i}-none", (), seed=10 + i, strength=0.0, weights="none") for i in range(3)]
    stacked = evaluate_fusion(systems + noisy, "stacking").metrics["devel_accuracy"]
    voted = evaluate_fusion(systems + noisy, "vote").metrics["devel_accuracy"]
    assert stacked > voted


# --- no test-fold information reaches training --------------------------------------------------
def _with_corrupted_test_fold(systems: list[Scores], seed: int) -> list[Scores]:
    rng = np.random.default_rng(seed)
    out = []
    test = systems[0].test_mask
    labels = systems[0].labels.copy()
    labels[test] = rng.permutation(labels[test])[::-1]
    labels[test] = (labels[test] + 1) % N_CLASSES
    for s in systems:
        scores = s.scores.copy()
        scores[test] = rng.normal(scale=100.0, size=scores[test].shape)
        out.append(Scores(s.system, s.ids, s.folds, labels, s.label_names, scores, s.test_fold, s.score_kind, s.config))
    return out


@pytest.mark.parametrize("method", list(METHODS))
def test_test_fold_scores_and_labels_change_nothing_fitted(method):
    systems = complementary_systems()
    clean = evaluate_fusion(systems, method)
    corrupt = evaluate_fusion(_with_corrupted_test_fold(systems, seed=4), method)
    dev = ~systems[0].test_mask
    np.testing.assert_array_equal(clean.scores.scores[dev], corrupt.scores.scores[dev])
    for key in ("devel_accuracy", "devel_macro_f1", "devel_uar", "best_C", "cv", "devel_fold_accuracy"):
        assert clean.metrics.get(key) == corrupt.metrics.get(key), key
    X_dev = stack_scores(systems)[dev]
    np.testing.assert_array_equal(clean.model.decision_function(X_dev), corrupt.model.decision_function(X_dev))
    assert not np.array_equal(clean.scores.scores[~dev], corrupt.scores.scores[~dev])


# --- system metadata and groups ----------------------------------------------------------------
@pytest.mark.parametrize("scores, family, network, weights", [
    (synthetic_system("svm-vgg16-imagenet", (), 0), "image", "vgg16", "imagenet"),
    (synthetic_system("svm-densenet121-none", (), 0, weights="none"), "image", "densenet121", "none"),
    (synthetic_system("svm-birdnet-birdnet_v2.4", (), 0, family="audio", weights="birdnet_v2.4"), "audio", "birdnet",
     "birdnet_v2.4"),
    (synthetic_system("crnn-aug", (), 0, family="crnn"), "crnn", "crnn", None),
])
def test_system_info_reads_the_scores_config(scores, family, network, weights):
    info = system_info(scores)
    assert (info.family, info.network, info.weights) == (family, network, weights)


def test_system_info_without_a_known_config_is_an_error():
    s = synthetic_system("svm-x-none", (), 0)
    s.config = {"something": 1}
    with pytest.raises(StoreError, match="names no extractor"):
        system_info(s)


@pytest.fixture
def results_dir(tmp_path):
    root = tmp_path / "results" / "synthetic"
    specs = [("svm-efficientnet_lite0-imagenet", "image", "imagenet"), ("svm-vgg16-imagenet", "image", "imagenet"),
             ("svm-densenet121-none", "image", "none"), ("svm-resnet50-none", "image", "none"),
             ("svm-birdnet-birdnet_v2.4", "audio", "birdnet_v2.4"), ("crnn", "crnn", None)]
    for seed, (name, family, weights) in enumerate(specs):
        system = synthetic_system(name, (seed % N_CLASSES,), seed, family=family, weights=weights)
        system.write(root / name / "scores.h5")
    # a run for another test fold and a --cv fold folder of an existing system: never picked twice
    synthetic_system("svm-vgg16-imagenet", (0,), 7, test_fold=4).write(root / "svm-vgg16-imagenet-fold4" / "scores.h5")
    synthetic_system("svm-vgg16-imagenet", (0,), 8).write(root / "svm-vgg16-imagenet" / "fold-5" / "scores.h5")
    (root / "notes.h5").write_bytes(b"not hdf5")
    return root


@pytest.mark.parametrize("group, members", [
    ("imagenet", {"svm-efficientnet_lite0-imagenet", "svm-vgg16-imagenet"}),
    ("untrained", {"svm-densenet121-none", "svm-resnet50-none"}),
    ("image", {"svm-efficientnet_lite0-imagenet", "svm-vgg16-imagenet", "svm-densenet121-none", "svm-resnet50-none"}),
    ("crnn+image", {"crnn", "svm-efficientnet_lite0-imagenet", "svm-vgg16-imagenet", "svm-densenet121-none",
                    "svm-resnet50-none"}),
    ("image+audio", {"svm-birdnet-birdnet_v2.4", "svm-efficientnet_lite0-imagenet", "svm-vgg16-imagenet",
                     "svm-densenet121-none", "svm-resnet50-none"}),
    ("pretrained", {"svm-birdnet-birdnet_v2.4", "svm-efficientnet_lite0-imagenet", "svm-vgg16-imagenet"}),
    ("all", {"crnn", "svm-birdnet-birdnet_v2.4", "svm-efficientnet_lite0-imagenet", "svm-vgg16-imagenet",
             "svm-densenet121-none", "svm-resnet50-none"}),
])
def test_select_group_picks_the_papers_groups(results_dir, group, members):
    paths = select_group(results_dir, group, test_fold=5)
    assert {read_scores(p).system for p in paths} == members
    assert all(p.parent.parent == results_dir for p in paths)  # the run itself, not its fold-5/ copy
    assert set(GROUPS) == {"imagenet", "untrained", "image", "crnn+image", "image+audio", "pretrained",
                           "finetuned+audio", "all"}


def test_select_group_excludes_fusions_and_needs_two_systems(results_dir, tmp_path):
    run_fusion(select_group(results_dir, "untrained", 5), method="mean", group="untrained", results_dir=results_dir)
    assert "fusion-untrained-mean" not in {read_scores(p).system for p in select_group(results_dir, "all", 5)}
    with pytest.raises(ConfigError, match="needs at least two"):
        select_group(results_dir, "imagenet", test_fold=3)
    with pytest.raises(ConfigError, match="unknown fusion group"):
        select_group(results_dir, "cnns", test_fold=5)


# --- runs ---------------------------------------------------------------------------------------
def test_fused_system_names():
    assert fused_system_name("stacking", ["svm-a-none", "crnn"], group="all") == "fusion-all-stacking"
    assert fused_system_name("vote", ["svm-b-none", "crnn"]) == "fusion-vote-b-none+crnn"
    long = fused_system_name("mean", [f"svm-network{i}-imagenet" for i in range(6)])
    assert long.startswith("fusion-mean-6systems-") and len(long) < 40


def test_run_fusion_writes_a_run_that_can_be_fused_again(written, tmp_path):
    metrics = run_fusion(written, method="stacking", fold=5, run_dir=tmp_path / "stack")
    on_disk = json.loads((tmp_path / "stack" / "metrics.json").read_text())
    assert on_disk["system"] == metrics["system"] and on_disk["test_accuracy"] == metrics["test_accuracy"]
    assert [i["system"] for i in on_disk["fusion"]["inputs"]] == [read_scores(p).system for p in written]
    assert all(len(i["sha256"]) == 64 for i in on_disk["fusion"]["inputs"])
    assert on_disk["best_C"] in on_disk["fusion"]["params"]["Cs"]
    for name in ("report.txt", "report.json", "confusion_matrix.png", "model.joblib", "scores.h5"):
        assert (tmp_path / "stack" / name).is_file(), name
    fused = read_scores(tmp_path / "stack" / "scores.h5")
    assert system_info(fused).family == "fusion"
    again = run_fusion([tmp_path / "stack" / "scores.h5", written[0]], method="mean", fold=5,
                       run_dir=tmp_path / "again")
    assert again["systems"] == [metrics["system"], "svm-vgg16-imagenet"]


def test_run_fusion_checks_the_test_fold(written):
    with pytest.raises(ConfigError, match="test fold 5, not --fold 3"):
        run_fusion(written, fold=3)


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown fusion method"):
        make_fusion("median")


def test_stacking_fusion_rejects_a_bad_grid():
    X, y, groups = _training_data()
    with pytest.raises(ConfigError, match="positive"):
        StackingFusion(Cs=(0.0, 1.0)).fit(X, y, groups=groups)


def test_weighted_fusion_gives_a_noise_system_little_weight():
    good = complementary_systems()[0]
    noise = synthetic_system("svm-noise-none", (), seed=21, strength=0.0, weights="none", scale=50.0)
    systems = [good, noise]
    dev = ~good.test_mask
    X, y = stack_scores(systems)[dev], good.labels[dev]
    est = WeightedFusion(classes=list(range(N_CLASSES))).fit(X, y)
    assert abs(est.weights_[1]) < 0.25 * est.weights_[0]
    weighted = evaluate_fusion(systems, "weighted").metrics["devel_accuracy"]
    mean = evaluate_fusion(systems, "mean").metrics["devel_accuracy"]
    assert weighted >= accuracy(good, dev) - 0.03 and weighted > mean


def test_weighted_fusion_of_one_balanced_system_keeps_its_decisions():
    s = synthetic_system("svm-even-imagenet", tuple(range(N_CLASSES)), seed=5, strength=1.5)
    est = WeightedFusion(classes=list(range(N_CLASSES))).fit(s.scores, s.labels)
    assert est.weights_[0] > 0
    assert np.mean(est.predict(s.scores) == s.scores.argmax(axis=1)) > 0.95  # only small class offsets differ


def test_select_group_among_files_and_folders(results_dir):
    files = [results_dir / name / "scores.h5" for name in ("svm-densenet121-none", "svm-vgg16-imagenet", "crnn")]
    assert select_group(files, "crnn+image", 5) == sorted(files)
    assert {read_scores(p).system for p in select_group(files, "image", 5)} == {
        "svm-densenet121-none", "svm-vgg16-imagenet"}
    both = select_group([results_dir, files[0]], "untrained", 5)  # a file also found in the folder counts once
    assert {read_scores(p).system for p in both} == {"svm-densenet121-none", "svm-resnet50-none"}
