"""The CPU plan (front-end workers + torch threads) and the passive OpenMP wait policy."""
import os
import subprocess
import sys

import pytest

from deepfeat.errors import ConfigError
from deepfeat.threads import INLINE_BELOW_CORES, ThreadPlan, _cgroup_quota, available_cores, plan_threads


@pytest.mark.parametrize("cores,device,workers,threads,expected", [
    (1, "cpu", None, None, (0, 1)),
    (2, "cpu", None, None, (0, 2)),  # below 4 cores the front end runs between the network's batches
    (4, "cpu", None, None, (1, 3)),
    (16, "cpu", None, None, (4, 12)),
    (2, "cpu", 1, None, (1, 1)),  # the threads take what the workers leave
    (2, "cpu", 2, None, (2, 1)),  # at least one thread
    (8, "cpu", 2, 3, (2, 3)),  # both given: as given
    (8, "cpu", None, 0, (2, 6)),  # 0 threads: the default
    (16, "cuda", None, None, (15, 1)),  # GPU: every core but one decodes
    (16, "cuda:1", 4, None, (4, 12)),
    (1, "cuda", None, None, (1, 1)),
])
def test_plan(cores, device, workers, threads, expected):
    plan = plan_threads(workers, threads, device=device, cores=cores)
    assert (plan.workers, plan.threads, plan.cores) == (*expected, cores)


@pytest.mark.parametrize("cores", range(1, 33))
def test_default_cpu_plan_uses_every_core_and_no_more(cores):
    plan = plan_threads(cores=cores)
    assert plan.workers + plan.threads == cores
    assert (plan.workers == 0) == (cores < INLINE_BELOW_CORES)


@pytest.mark.parametrize("kwargs", [{"workers": -1}, {"threads": -2}, {"workers": 1.5}])
def test_plan_refuses_negative_or_fractional_counts(kwargs):
    with pytest.raises(ConfigError, match="whole number"):
        plan_threads(cores=4, **kwargs)


def test_describe():
    assert ThreadPlan(0, 2, 2).describe() == "2 torch threads, front end in this process (2 cores)"
    assert ThreadPlan(1, 1, 2).describe() == "1 torch thread, 1 front-end worker (2 cores)"


@pytest.mark.parametrize("files,expected", [
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3.0),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_container_cpu_quota(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert _cgroup_quota(tmp_path) == expected


def test_available_cores_follows_the_affinity():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this OS")
    code = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); " \
           "from deepfeat.threads import available_cores, plan_threads; print(available_cores(), plan_threads())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1 ThreadPlan(workers=0, threads=1, cores=1)"
    assert available_cores() == len(os.sched_getaffinity(0))


_POLICY = "import os, sys; {first}; from deepfeat.threads import passive_wait; " \
          "print(os.environ.get('OMP_WAIT_POLICY'), passive_wait())"


@pytest.mark.parametrize("first,env,expected", [
    ("import deepfeat, torch", None, "PASSIVE True"),
    ("import deepfeat, torch", "ACTIVE", "ACTIVE False"),  # the user's choice stands
    ("import torch, deepfeat", None, "PASSIVE False"),  # too late: torch's OpenMP has started
])
def test_passive_wait_policy_is_set_before_torch(first, env, expected):
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env:
        environ["OMP_WAIT_POLICY"] = env
    done = subprocess.run([sys.executable, "-c", _POLICY.format(first=first)], capture_output=True, text=True,
                          env=environ, check=True)
    assert done.stdout.strip() == expected


_IDLE_SPIN = """
import os, sys, time
if sys.argv[1] == "active":
    os.environ["OMP_WAIT_POLICY"] = "ACTIVE"
import deepfeat, torch
torch.set_num_threads(2)
x = torch.randn(256, 256)
cpu = time.process_time()
for _ in range(100):
    x @ x
    time.sleep(0.002)
print(time.process_time() - cpu)
"""


@pytest.mark.slow
@pytest.mark.skipif(available_cores() < 2, reason="needs two cores")
def test_waiting_threads_do_not_spin():
    """Between parallel operations, torch's second thread sleeps instead of burning a core."""
    seconds = {policy: float(subprocess.run([sys.executable, "-c", _IDLE_SPIN, policy], capture_output=True,
                                            text=True, check=True).stdout) for policy in ("active", "deepfeat")}
    assert seconds["deepfeat"] < 0.5 * seconds["active"], seconds
