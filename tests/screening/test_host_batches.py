"""Host batches (the CPU default): each host task predicts its own hops; what happens when it cannot."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import screener.screening.run as run_module
import screener.screening.tasks as tasks_module
from screener.model.registry import default_model_dir
from screener.screening.execution import TaskRunner
from screener.screening.run import screen
from tests.screening.hosts import bundled_host_dir

HOSTS = ["MgCr2O4.cif", "MgTi2S4.cif"]  # 2 hosts x 1 distinct hop x 2 limits = 4 hop rows

pytestmark = [pytest.mark.skipif(not (default_model_dir() / "model.json").exists(),
                                reason="no model: set SCREENER_MODEL_DIR"),
              pytest.mark.usefixtures("one_torch_thread_module")]


@pytest.fixture(scope="module")
def host_dir(tmp_path_factory) -> Path:
    return bundled_host_dir(tmp_path_factory, HOSTS)


@pytest.fixture(scope="module")
def reference(host_dir):
    """An uninterrupted synchronous run with host batches of one hop."""
    res = screen("Mg", str(host_dir), synchronous=True, batch_size=1, fuse=True)
    assert res.exit_code == 0 and len(res.hops) == 4
    return res


def _same(a, b) -> None:
    for name in ("hops", "structures", "shortlist", "failures"):
        pd.testing.assert_frame_equal(a.tables[name].reset_index(drop=True), b.tables[name].reset_index(drop=True),
                                      obj=name)


def test_the_host_tasks_predictions_are_the_ones_used(host_dir, reference, monkeypatch):
    def no_batch_task(*args, **kwargs):
        raise AssertionError("a batch was predicted in a task of its own")

    monkeypatch.setattr(run_module, "predict_batch", no_batch_task)
    res = screen("Mg", str(host_dir), synchronous=True, batch_size=1, fuse=True)
    assert res.run_info["resume"]["batches_run"] == 4 and res.exit_code == 0
    _same(reference, res)


def test_a_batch_that_raises_in_the_host_task_is_predicted_in_a_task_of_its_own(host_dir, reference, monkeypatch):
    calls = {"n": 0}
    real = tasks_module.predict_batch

    def first_one_raises(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("model server went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks_module, "predict_batch", first_one_raises)  # inside host_batches only
    res = screen("Mg", str(host_dir), synchronous=True, batch_size=1, fuse=True)
    assert res.run_info["resume"]["batches_run"] == 4 and res.exit_code == 0
    _same(reference, res)


def test_a_host_task_that_crashes_is_run_again_in_two_steps(host_dir, reference, monkeypatch):
    def crash(*args, **kwargs):
        raise MemoryError("the worker ran out of memory while predicting")

    monkeypatch.setattr(run_module, "host_batches", crash)
    res = screen("Mg", str(host_dir), synchronous=True, batch_size=1, fuse=True)
    info = res.run_info["resume"]
    # Nothing lost: the hops were found by plain host tasks and predicted by batch tasks.
    assert info["hosts_crashed"] == 0 and info["hosts_run"] == 2 and info["batches_run"] == 4
    assert res.exit_code == 0
    _same(reference, res)


def test_tables_do_not_depend_on_the_order_host_tasks_finish(host_dir, monkeypatch):
    # Model-stage failures (one hop per host fails its descriptors) are listed in host order even
    # when the hosts finish in reverse order.
    real_features = tasks_module.band_features
    seen: set[str] = set()

    def fail_first_hop_of_each_host(band):
        key = ",".join(sorted({site.specie.symbol for site in band.structure}))  # one per host
        if key not in seen:
            seen.add(key)
            raise ValueError(f"descriptors of {key} failed")
        return real_features(band)

    monkeypatch.setattr(tasks_module, "band_features", fail_first_hop_of_each_host)
    in_order = screen("Mg", str(host_dir), synchronous=True, batch_size=1, fuse=True)
    assert len(in_order.failures) == 2 and in_order.exit_code == 3

    real_results = TaskRunner.results

    def reversed_results(self):
        if self.client is None:
            self._inline.reverse()  # the hosts finish last one first
        yield from real_results(self)

    seen.clear()
    monkeypatch.setattr(TaskRunner, "results", reversed_results)
    reversed_run = screen("Mg", str(host_dir), synchronous=True, batch_size=1, fuse=True)
    assert list(reversed_run.failures["item"]) == list(in_order.failures["item"])
    _same(in_order, reversed_run)
    np.testing.assert_array_equal(in_order.hops["predicted_em_eV"].isna(), reversed_run.hops["predicted_em_eV"].isna())


# ----------------------------------------------------------------------------- hosts sharing a task
def test_small_hosts_share_tasks_and_the_last_ones_go_alone():
    from screener.screening.execution import GROUP_GUIDE, GROUP_HOSTS, GROUP_SITES, guided_groups

    sizes = [5, 12, 28, 56, 200, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4] * 4
    groups = guided_groups(sizes, threads=2)
    assert [i for g in groups for i in g] == list(range(len(sizes)))  # every host once, in order
    assert len(groups) < len(sizes)  # fewer tasks...
    for g in groups:  # ...none too large (a host above the limit goes alone)
        assert len(g) <= GROUP_HOSTS and (len(g) == 1 or sum(sizes[i] for i in g) <= GROUP_SITES)
    # No worker waits on another's last large task: the hosts left at the end go one per task.
    tail = GROUP_GUIDE * 2
    assert all(len(g) == 1 for g in groups if g[0] >= len(sizes) - tail)
    # As many worker threads as hosts: nothing to share.
    assert all(len(g) == 1 for g in guided_groups(sizes, threads=len(sizes)))
    assert guided_groups([], threads=2) == []


@pytest.fixture(scope="module")
def cluster_address():
    from screener.screening.execution import local_cluster

    cluster = local_cluster(2, 1)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def _one_group(sizes, threads):
    return [list(range(len(sizes)))]


def _marking(marker: Path, then):
    """A task function that leaves ``marker`` (the proof it ran, from a worker process), then calls ``then``."""
    def task(*args, **kwargs):
        marker.write_text("ran")
        return then(*args, **kwargs)

    return task


def _crash(*args, **kwargs):
    raise MemoryError("the worker ran out of memory")


def test_hosts_sharing_a_task_give_the_tables_of_one_task_each(host_dir, reference, cluster_address, monkeypatch,
                                                                 tmp_path):
    marker = tmp_path / "group-ran"
    monkeypatch.setattr(run_module, "guided_groups", _one_group)
    monkeypatch.setattr(run_module, "host_group_batches", _marking(marker, tasks_module.host_group_batches))
    res = screen("Mg", str(host_dir), scheduler=cluster_address, batch_size=1)
    assert marker.exists()  # the two hosts did go through one shared task
    assert res.run_info["resume"]["hosts_run"] == 2 and res.run_info["resume"]["batches_run"] == 4
    _same(reference, res)


def test_a_shared_task_that_crashes_runs_each_host_alone(host_dir, reference, cluster_address, monkeypatch, tmp_path):
    import cloudpickle

    marker = tmp_path / "group-ran"
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        monkeypatch.setattr(run_module, "guided_groups", _one_group)
        monkeypatch.setattr(run_module, "host_group_batches", _marking(marker, _crash))
        res = screen("Mg", str(host_dir), scheduler=cluster_address, batch_size=1)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert marker.exists()  # the shared task ran and crashed...
    info = res.run_info["resume"]  # ...and each host then ran alone, nothing lost
    assert info["hosts_crashed"] == 0 and info["hosts_run"] == 2 and info["batches_run"] == 4
    assert res.exit_code == 0
    _same(reference, res)


def test_a_band_the_model_fails_on_fails_alone_in_its_batch(host_dir, reference, monkeypatch):
    """Across hosts (the GPU layout) one batch holds all 4 hops; the model raises on MgTi2S4's."""
    from screener.model.predictor import BandPredictor

    real = BandPredictor.predict

    def fails_on_titanium(self, bands, *args, **kwargs):
        if any("Ti" in b.structure.composition for b in bands):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(self, bands, *args, **kwargs)

    monkeypatch.setattr(BandPredictor, "predict", fails_on_titanium)
    res = screen("Mg", str(host_dir), synchronous=True, batch_size=4, fuse=False)
    assert res.run_info["resume"]["batches_run"] == 1 and res.exit_code == 3
    failed = res.failures
    assert set(failed["item"].str.split("#").str[0]) == {"MgTi2S4.cif"}
    assert (failed["stage"] == "model").all() and (failed["error_type"] == "RuntimeError").all()
    # the other host's hops were predicted, as in the reference
    got = res.hops[res.hops["material_id"] == "MgCr2O4.cif"].sort_values(["hop_id", "limit"])
    want = reference.hops[reference.hops["material_id"] == "MgCr2O4.cif"].sort_values(["hop_id", "limit"])
    assert got["predicted_em_eV"].notna().all()
    np.testing.assert_allclose(got["predicted_em_eV"].to_numpy(), want["predicted_em_eV"].to_numpy(), rtol=1e-6)


def test_each_local_gpu_worker_puts_its_model_on_its_own_gpu(monkeypatch):
    import distributed
    import torch

    from screener.screening.tasks import worker_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert worker_device("cuda") == "cuda"  # outside a Dask worker: torch's current device
    for name, want in ((0, "cuda:0"), (2, "cuda:2"), (5, "cuda:1"), ("SLURMCluster-0-1", "cuda")):
        monkeypatch.setattr(distributed, "get_worker", lambda name=name: type("W", (), {"name": name})())
        assert worker_device("cuda") == want
    assert worker_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert worker_device("cuda") == "cuda"
