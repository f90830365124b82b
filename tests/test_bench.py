"""Tests of the speed benchmark (benchmarks/): one group per module (common, measure, memory, report,
and the bench.py entry), and one quick run end to end."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from deepfeat.datasets import load_manifest
from deepfeat.store import read_store

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SIBLINGS = ("common", "measure", "memory", "processes", "report", "scaleout")
HAS_PSS = hasattr(psutil.Process().memory_full_info(), "pss")


@pytest.fixture(scope="module")
def bench():
    """``benchmarks/bench.py`` loaded by path, as ``deepfeat bench`` loads it (its siblings come with it)."""
    path_before = list(sys.path)
    spec = importlib.util.spec_from_file_location("deepfeat_benchmark_under_test", BENCHMARKS / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    for name in (spec.name, *SIBLINGS):
        sys.modules.pop(name, None)
    sys.path[:] = path_before


@pytest.fixture(scope="module")
def common(bench):
    return sys.modules["common"]


@pytest.fixture(scope="module")
def measure(bench):
    return bench.measure


@pytest.fixture(scope="module")
def memory(bench):
    return bench.memory


@pytest.fixture(scope="module")
def report(bench):
    return bench.report


@pytest.fixture(scope="module")
def processes(bench):
    return bench.processes


# --- common ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("network, expected", [("vgg16", 80), ("efficientnet_lite0", 200), ("resnet50", 80),
                                               ("openl3", 10), ("panns_cnn14", 32), ("birdnet", 32)])
def test_common_full_sizes_per_network(common, network, expected):
    assert common.FULL.clips_for(network) == expected


@pytest.mark.parametrize("sizes, most", [("FULL", 400), ("QUICK", 10)])
def test_common_sizes_are_consistent(common, sizes, most):
    s = getattr(common, sizes)
    assert s.memory_clips >= 1 and common.MEMORY_REPEAT == 10
    assert set(s.process_clips) == set(common.PROCESS_NETWORKS) and s.busy_processes >= 1
    assert s.most_clips() == most  # the CRNN reads the most clips in both


def test_common_best_seconds_keeps_the_fastest_call(common):
    delays = iter([0.05, 0.01, 0.03])
    best = common.best_seconds(lambda: time.sleep(next(delays)), 3)
    assert 0.01 <= best < 0.03
    assert common.rate(10, 2.0) == 5.0 and common.rate(1, 0.0) == float("inf")


def test_common_data_defaults_to_demo_data_when_esc10_is_absent(common, tmp_path, monkeypatch):
    monkeypatch.setattr(common, "DEFAULT_DATA", tmp_path / "no-such-esc10")
    manifest, source = common.resolve_data(None, tmp_path, common.QUICK)
    assert "demo data" in source and len(manifest) >= common.QUICK.crnn_clips
    assert len(manifest.label_names) == 5 and set(manifest.folds()) == {1, 2, 3, 4, 5}


def test_common_given_data_is_used_and_a_missing_one_is_an_error(common, demo_dir, tmp_path):
    from deepfeat.errors import ManifestError

    manifest, source = common.resolve_data(str(demo_dir), tmp_path, common.FULL)
    assert source == str(demo_dir) and len(manifest) == 25
    with pytest.raises(ManifestError, match="no-such-dir"):
        common.resolve_data(str(tmp_path / "no-such-dir"), tmp_path, common.FULL)


# --- measure -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("rows, dim, classes", [(100, 16, 5), (60, 8, 3)])
def test_measure_synthetic_svm_store_is_balanced_over_classes_and_folds(common, measure, tmp_path, rows, dim,
                                                                         classes):
    sizes = common.Sizes(frontend_clips=1, frontend_repeats=1, forward_images=1, forward_repeats=1,
                         svm_rows=rows, svm_dim=dim, svm_classes=classes, svm_folds=5)
    measure.write_svm_store(tmp_path / "s.h5", sizes)
    fs = read_store(tmp_path / "s.h5")
    assert fs.features.shape == (rows, dim) and fs.features.dtype == np.float32
    assert (fs.features >= 0).all()
    assert np.bincount(fs.labels).tolist() == [rows // classes] * classes
    assert np.bincount(fs.folds)[1:].tolist() == [rows // 5] * 5
    # class-structured: rows of a class are closer to their class mean than to the others'
    means = np.stack([fs.features[fs.labels == c].mean(0) for c in range(classes)])
    nearest = np.argmin(((fs.features[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest == fs.labels).mean() > 1.0 / classes


# --- memory ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, repeat", [(3, 1), (3, 10), (5, 2)])
def test_memory_repeated_csv_lists_every_clip_repeat_times_with_distinct_ids(memory, demo_dir, tmp_path, n, repeat):
    source = load_manifest(demo_dir)
    csv_path = memory.write_repeated_csv(source, n, repeat, tmp_path / "mem")
    manifest = load_manifest(csv_path)
    assert len(manifest) == n * repeat
    assert len(set(manifest.ids())) == n * repeat
    for k, clip in enumerate(manifest.clips):
        original = source.clips[k % n]
        assert clip.path.resolve() == original.path.resolve()
        assert (clip.label, clip.fold) == (original.label, original.fold)


def test_memory_repeated_csv_can_be_rewritten_in_place(memory, demo_dir, tmp_path):
    source = load_manifest(demo_dir)
    memory.write_repeated_csv(source, 2, 1, tmp_path)
    again = memory.write_repeated_csv(source, 2, 10, tmp_path)
    assert len(load_manifest(again)) == 20


@pytest.mark.skipif(not HAS_PSS, reason="psutil reports PSS on Linux only")
def test_memory_tree_of_this_process_and_of_a_finished_one(memory):
    processes, totals = memory.tree_memory(psutil.Process())
    assert processes >= 1 and totals["rss"] >= totals["pss"] >= totals["uss"] > 0
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    root = psutil.Process(done.pid)
    done.wait()
    assert memory.tree_memory(root) == (0, {"rss": 0, "pss": 0, "uss": 0})


@pytest.mark.skipif(not HAS_PSS, reason="psutil reports PSS on Linux only")
@pytest.mark.parametrize("megabytes", [60, 200])
def test_memory_tree_sampler_sees_a_child_allocating(memory, megabytes):
    # the parent's array is shared with its forked child: RSS counts it twice, PSS once, USS not at all
    code = ("import os, time, numpy as np; a = np.ones(%d * 2**20 // 8); "
            "pid = os.fork()\nif pid == 0:\n    b = np.ones(%d * 2**20 // 8); time.sleep(0.6); os._exit(0)\n"
            "time.sleep(0.6); os.waitpid(pid, 0)") % (megabytes, megabytes)
    proc = subprocess.Popen([sys.executable, "-c", code])
    sampler = memory.TreeSampler(proc.pid, interval=0.02)
    sampler.start()
    proc.wait()
    sampler.stop()
    figures = sampler.figures()
    assert figures["tree_max_processes"] >= 2 and figures["tree_samples"] > 0  # the forked child was seen
    assert figures["tree_peak_pss_mib"] > 2 * megabytes * 0.9  # parent's and child's own arrays
    assert figures["tree_peak_rss_mib"] > 3 * megabytes * 0.9
    assert megabytes * 0.9 < figures["tree_peak_uss_mib"] < figures["tree_peak_pss_mib"] - megabytes / 2


def test_memory_own_peak_is_the_started_process_s_not_its_parent_s():
    """A small process started by a large one reports its own peak RSS (``getrusage`` alone would
    report the parent's)."""
    ballast = np.ones(256 * 2**20 // 8)  # 256 MiB, touched
    code = f"import sys; sys.path.insert(0, {str(BENCHMARKS)!r}); import memory; print(memory._own_peak_rss_mib())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert psutil.Process().memory_info().rss / 2**20 > 256 > 2 * float(done.stdout)
    del ballast


@pytest.mark.slow
def test_memory_child_extracts_the_csv_and_reports_its_peaks(memory, demo_dir, tmp_path):
    csv_path = memory.write_repeated_csv(load_manifest(demo_dir), 1, 3, tmp_path / "mem")
    spec = {"csv": str(csv_path), "out": str(tmp_path / "m.h5"), "network": "efficientnet_lite0",
            "weights": "imagenet", "device": "cpu"}
    figures = memory.memory_child(spec)
    assert figures["clips"] == 3 and len(read_store(tmp_path / "m.h5").ids) == 3
    assert figures["main_peak_rss_mib"] > 50 and figures["worker_peak_rss_mib"] >= 0


@pytest.mark.slow
@pytest.mark.skipif(not HAS_PSS, reason="psutil reports PSS on Linux only")
def test_memory_run_measures_a_subprocess_tree(memory, demo_dir, tmp_path):
    import torch

    csv_path = memory.write_repeated_csv(load_manifest(demo_dir), 1, 1, tmp_path / "mem")
    figures = memory.run_memory(csv_path, tmp_path / "m.h5", torch.device("cpu"))
    assert figures["clips"] == 1 and figures["tree_samples"] > 0 and len(read_store(tmp_path / "m.h5").ids) == 1
    # the tree holds the main process, so its peak is at least the main process's own
    assert figures["tree_peak_rss_mib"] >= 0.9 * figures["main_peak_rss_mib"] > 50
    assert figures["tree_peak_rss_mib"] >= figures["tree_peak_pss_mib"] >= figures["tree_peak_uss_mib"] > 0


# --- report ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio, verdict", [(12.0, True), (10.0, True), (9.9, False)])
def test_report_renderer_target(report, ratio, verdict):
    rows = report.targets({"frontend": {"fast_over_matplotlib": ratio}})
    assert rows[0]["pass"] is verdict and rows[0]["measured"] == ratio


@pytest.mark.parametrize("fraction, memory_ratio, svm_seconds, verdict", [
    (0.9, 1.0, 30.0, True),
    (0.8, 1.3, 61.0, False),
])
def test_report_targets_pass_and_miss(report, fraction, memory_ratio, svm_seconds, verdict):
    results = {"forward": {"vgg16": {"frozen_over_eager": 1.0}},
               "end_to_end": {"vgg16": {"fraction_of_forward": fraction}},
               "memory": {"ratio": {"main_peak_rss_mib": memory_ratio}},
               "svm": {"wall_seconds": svm_seconds, "rows": 2000, "dim": 4096, "classes": 50}}
    renderer, e2e, mem, svm = report.targets(results)  # frozen against eager is information, not a target
    assert renderer["pass"] is None  # not measured: n/a, neither PASS nor MISS
    assert "end-to-end" in e2e["target"] and "memory" in mem["target"] and "svm" in svm["target"]
    assert [e2e["pass"], mem["pass"], svm["pass"]] == [verdict] * 3


@pytest.mark.parametrize("good", [True, False])
def test_report_process_targets(report, good):
    results = {"contention": {"densenet121": {"busy_processes": 2, "wall_ratio": 0.7 if good else 0.4}},
               "startup": {"clips": 5, "network": "efficientnet_lite0", "startup_seconds": 1.5 if good else 2.5,
                           "help_seconds": 0.3 if good else 0.6},
               "gpu": {"device": "cuda", "network": "densenet121", "clips_per_s": 1500.0 if good else 900.0,
                       "fp16_max_relative_error": 0.002 if good else 0.05}}
    rows = report.targets(results)[1:]
    assert [r["pass"] for r in rows] == [good] * 5
    assert [report._measured(r) for r in rows] == (["0.70x", "1.50 s", "0.30 s", "1,500", "0.002"] if good else
                                                   ["0.40x", "2.50 s", "0.60 s", "900", "0.05"])
    on_cpu = report.targets({"gpu": {**results["gpu"], "device": "cpu"}})
    assert not any("GPU" in r["target"] for r in on_cpu)  # the GPU targets are judged on a GPU only


def test_report_memory_table_shows_every_figure_and_the_ratios(report):
    one = {"clips": 1, "seconds": 2.0, "main_peak_rss_mib": 400.0, "worker_peak_rss_mib": 150.0,
           "tree_peak_pss_mib": 600.0, "tree_peak_uss_mib": 500.0, "tree_peak_rss_mib": 800.0}
    ten = {**one, "clips": 10, "main_peak_rss_mib": 600.0}
    mem = {"network": "efficientnet_lite0", "clips": 1, "repeat": 10, "batch_size": 32, "runs": {"1x": one,
           "10x": ten}, "ratio": {"main_peak_rss_mib": 1.5, "tree_peak_pss_mib": 1.0}}
    text = "\n".join(report._memory_section(mem))
    assert "| 1x | 1 | 2.0 | 400 | 150 | 600 | 500 | 800 | n/a |" in text
    assert "| 10x | 10 | 2.0 | 600 |" in text
    assert "| ratio | | | 1.50x |  | 1.00x |  |  |  |" in text  # a ratio for each figure measured in both runs
    assert "fewer clips than one batch" in text
    main, tree = report.targets({"memory": mem})[-2:]
    assert main["pass"] is False and "main process" in main["target"]
    assert tree["pass"] is True and "PSS" in tree["target"]


def test_report_readme_shows_skipped_measurements(report):
    results = {"quick": False, "total_seconds": 1.0, "errors": {"svm": "Traceback ...\nRuntimeError: boom\n"},
               "machine": {"cpu_cores": 2, "cpu": "x", "torch": "2", "torch_threads": 2, "device": "cpu",
                           "python": "3"},
               "dataset": {"source": "demo", "clips": 5, "name": "demo"},
               "forward": {"vgg16": {"skipped": "no weights"}}, "end_to_end": {},
               "audio_models": {"birdnet": {"skipped": "BirdNET needs the LiteRT runtime"}}}
    results["targets"] = report.targets(results)
    readme = report.render_readme(results)
    assert "| vgg16 | skipped: no weights |" in readme
    assert "| birdnet | | | skipped: BirdNET needs the LiteRT runtime |" in readme
    assert "- svm: RuntimeError: boom" in readme
    assert "MISS" not in readme and "PASS" not in readme  # nothing measured, nothing judged


@pytest.mark.parametrize("sgd_rss, verdict", [(300.0, True), (2000.0, False)])
def test_report_scaleout_section_and_sgd_memory_target(report, sgd_rss, verdict):
    workers = {"network": "efficientnet_lite0", "weights": "imagenet", "clips": 200, "shards": 4,
               "runs": {"in-process": {"wall_seconds": 20.0, "clips_per_s": 10.0},
                        "local:1": {"wall_seconds": 25.0, "clips_per_s": 8.0},
                        "local:2": {"wall_seconds": 24.0, "clips_per_s": 8.3}},
               "local2_over_local1": 8.3 / 8.0, "local1_over_in_process": 0.8}
    runs = {"sgd": {"seconds": 30.0, "peak_rss_mib": sgd_rss, "test_accuracy": 0.9},
            "svc": {"seconds": 90.0, "peak_rss_mib": 2500.0, "test_accuracy": 0.91}}
    sgd = {"rows": 20000, "dim": 1280, "classes": 10, "folds": 5, "runs": runs, "sgd_over_svc": sgd_rss / 2500.0}
    text = "\n".join(report.scaleout_section(workers, sgd))
    assert "| local:2 | 24.0 | 8.30 |" in text and "2 workers / 1 worker: **1.04x**" in text
    assert f"| sgd | 30.0 | {sgd_rss:,.0f} | 90 % |" in text and "| svc | 90.0 | 2,500 | 91 % |" in text
    (target,) = [r for r in report.targets({"workers": workers, "sgd_memory": sgd}) if "sgd" in r["target"]]
    assert target["pass"] is verdict and target["measured"] == sgd_rss / 2500.0


# --- processes ---------------------------------------------------------------------------------------
def test_processes_plans_include_the_default_and_the_old_oversubscribed_one(processes):
    plans = processes.plans(2)
    assert plans["default"] == (None, None) and plans["2 workers + 2 threads"] == (2, 2)


def test_processes_busy_loops_spin_and_end(processes):
    tic = time.process_time()
    with processes.busy_loops(2):
        busy = [p for p in psutil.Process().children() if "while True" in " ".join(p.cmdline())]
        time.sleep(0.5)
        assert len(busy) == 2 and all(p.cpu_times().user > 0.05 for p in busy)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in busy)
    assert time.process_time() - tic < 0.5  # the loops spin in their own processes, not in this one


# --- bench (the entry) -------------------------------------------------------------------------------
def test_bench_loads_its_siblings_from_its_own_folder(bench):
    assert all(Path(sys.modules[name].__file__).parent == BENCHMARKS for name in SIBLINGS)
    from deepfeat.cli.bench import load_benchmark

    assert load_benchmark().report is sys.modules["report"]  # `deepfeat bench` loads it the same way


def test_bench_runs_as_a_script():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench.py"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--sections" in done.stdout


def test_bench_unknown_network_is_a_one_line_error(bench, capsys):
    assert bench.main(["--quick", "--networks", "not_a_net"]) == 2
    assert "unknown network not_a_net" in capsys.readouterr().err


@pytest.fixture
def restore_threads():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_bench_quick_run_writes_report_and_json(bench, demo_dir, tmp_path, capsys, restore_threads):
    """Every section but memory (tested above) in quick mode on the tiny demo set, one CNN, one audio model
    (one torch thread: steady on a busy machine)."""
    out = tmp_path / "bench"
    status = bench.main(["--quick", "--data", str(demo_dir), "--out", str(out), "--device", "cpu", "--threads", "1",
                         "--networks", "efficientnet_lite0", "--audio-models", "panns_cnn14",
                         "--sections", "frontend,image,audio,svm,crnn"])
    assert status == 0
    results = json.loads((out / "bench.json").read_text())
    assert {"machine", "dataset", "frontend", "forward", "end_to_end", "audio_models", "svm", "crnn",
            "targets", "total_seconds"} <= set(results)
    assert results["errors"] == {} and "memory" not in results
    assert {"cpu_cores", "torch", "device"} <= set(results["machine"]) and results["machine"]["torch_threads"] == 1
    fe = results["frontend"]
    for key in ("decode_resample_clips_per_s", "mel_clips_per_s", "render_fast_clips_per_s",
                "render_matplotlib_clips_per_s", "frontend_clips_per_s"):
        assert fe[key] > 0
    speedup = fe["render_fast_clips_per_s"] / fe["render_matplotlib_clips_per_s"]
    assert fe["fast_over_matplotlib"] == pytest.approx(speedup)
    assert 0 <= fe["mean_abs_pixel_difference"] < 10  # the two renderers draw the same picture
    fwd, e2e = results["forward"]["efficientnet_lite0"], results["end_to_end"]["efficientnet_lite0"]
    assert fwd["images_per_s"] > 0 and fwd["default"] == "frozen" and fwd["frozen"]["images_per_s"] > 0
    assert fwd["images_per_s"] == fwd["frozen"]["images_per_s"] and fwd["eager"]["images_per_s"] > 0
    assert fwd["frozen_over_eager"] == pytest.approx(fwd["frozen"]["images_per_s"] / fwd["eager"]["images_per_s"])
    assert e2e["fraction_of_forward"] == pytest.approx(e2e["clips_per_s"] / fwd["images_per_s"])
    assert e2e["rows"] == e2e["clips"] == 4 and e2e["dim"] == 1280 and e2e["threads"] >= 1
    assert results["audio_models"]["panns_cnn14"]["dim"] == 2048
    assert results["svm"]["wall_seconds"] > 0 and results["svm"]["rows"] == 200
    assert results["crnn"]["seconds_per_epoch"] > 0 and results["crnn"]["clips"] == 10
    names = [r["target"] for r in results["targets"]]
    assert any("matplotlib" in n for n in names) and any("svm" in n for n in names)
    assert not any("eager" in n for n in names)  # measured and shown, but not a target
    readme = (out / "README.md").read_text()
    assert "## Targets" in readme and "quick mode" in readme and "eager images/s" in readme
    assert readme.count("PASS") + readme.count("MISS") >= len(results["targets"])
    printed = capsys.readouterr().out
    assert "machine:" in printed and printed.rstrip().splitlines()[-1].startswith(("PASS", "MISS"))


def test_deepfeat_bench_passes_its_arguments_to_the_script(monkeypatch):
    """``deepfeat bench ARGS`` runs ``benchmarks/bench.py``'s ``main(ARGS)`` (its --help included)."""
    from click.testing import CliRunner

    from deepfeat.cli.bench import load_benchmark
    from deepfeat.cli.main import cli

    seen = []
    monkeypatch.setattr(load_benchmark(), "main", lambda argv: seen.append(argv) or 0)
    for args in (["--quick", "--threads", "1", "--networks", "vgg16", "--sections", "svm"], ["--help"]):
        assert CliRunner().invoke(cli, ["bench", *args]).exit_code == 0
    assert seen == [["--quick", "--threads", "1", "--networks", "vgg16", "--sections", "svm"], ["--help"]]


def test_bench_opt_in_sections_are_not_run_by_default(bench):
    assert bench.parse_args([]).sections is None
    assert set(bench.OPT_IN_SECTIONS).isdisjoint(bench.SECTIONS)
    assert bench._names("svm,workers,sgd_memory", bench.SECTIONS + bench.OPT_IN_SECTIONS, "section")


@pytest.mark.slow
def test_bench_quick_process_sections(bench, demo_dir, tmp_path):
    """Start-up, quiet/contended, CPU plans and the GPU section (here on the CPU) in quick mode."""
    out = tmp_path / "bench"
    assert bench.main(["--quick", "--data", str(demo_dir), "--out", str(out), "--device", "cpu",
                       "--sections", "startup,contention,plans,gpu"]) == 0
    results = json.loads((out / "bench.json").read_text())
    assert results["errors"] == {}
    start = results["startup"]
    assert 0 < start["help_seconds"] < start["wall_seconds"] and start["clips"] == 2
    assert start["startup_seconds"] == pytest.approx(start["wall_seconds"] - start["load_seconds"])
    for net in ("efficientnet_lite0", "densenet121"):
        con = results["contention"][net]
        assert con["quiet"]["cpu_seconds"] > 0 and con["contended"]["clips"] == con["clips"]
        assert con["wall_ratio"] == pytest.approx(con["contended"]["wall_clips_per_s"] / con["quiet"]["wall_clips_per_s"])
        assert [p["workers"] for p in results["plans"][net].values()][1] == 1
    gpu = results["gpu"]
    assert gpu["device"] == "cpu" and gpu["fp16_max_relative_error"] == 0.0  # no float16 on the CPU
    assert gpu["images"]["max_levels"] <= 4
    readme = (out / "README.md").read_text()
    assert "## 7. Start-up" in readme and "## 8. Quiet and beside busy processes" in readme
    assert "## 9. CPU plans" in readme and "## 10. GPU" in readme
    assert not any("GPU" in r["target"] for r in results["targets"])
