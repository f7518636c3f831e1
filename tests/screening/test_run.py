"""End-to-end screening: bundled hosts -> Dask -> ranked Parquet tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from screener.cli.main import build_parser, main
from screener.screening.run import screen
from screener.screening.tables import FAILURE_COLUMNS, HOP_COLUMNS, STRUCTURE_COLUMNS
from tests.screening.hosts import bundled_host_dir

HOSTS = ["MgCr2O4.cif", "MgTi2S4.cif", "LiCoO2.cif"]

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")


@pytest.fixture(scope="module")
def host_dir(tmp_path_factory):
    return bundled_host_dir(tmp_path_factory, HOSTS, {"garbage.cif": b"\x00\x01 this is no structure \xff"})


@pytest.fixture(scope="module")
def dask_run(host_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    rc = main(["run", "--chemistry", "Mg", "--source", str(host_dir), "--workers", "2",
               "--batch-size", "4", "--out", str(out), "--quiet"])
    return rc, out


def test_run_writes_every_table_with_the_documented_schema(dask_run):
    rc, out = dask_run
    assert rc == 3  # garbage.cif and LiCoO2 (no Mg) failed; the others were screened
    hops = pd.read_parquet(out / "hops.parquet")
    structures = pd.read_parquet(out / "structures.parquet")
    shortlist = pd.read_parquet(out / "shortlist.parquet")
    failures = pd.read_parquet(out / "failures.parquet")
    assert list(hops.columns) == HOP_COLUMNS
    assert list(structures.columns) == STRUCTURE_COLUMNS
    assert list(failures.columns) == FAILURE_COLUMNS
    assert {"rank", "path_hop_ids", "path_max_uncertainty_eV", "percolation_1d_eV"} <= set(shortlist.columns)
    assert set(hops["material_id"]) == {"MgCr2O4.cif", "MgTi2S4.cif"}
    assert hops["predicted_em_eV"].notna().all() and (hops["uncertainty_eV"] >= 0).all()
    assert set(hops["limit"]) == {"vacancy", "dilute"}
    assert hops.groupby(["material_id", "hop_id", "limit"]).size().max() == 1  # no duplicates
    assert set(failures["item"]) == {"garbage.cif", "LiCoO2.cif"}
    assert dict(zip(failures["item"], failures["error_type"]))["LiCoO2.cif"] == "NoWorkingIonError"
    info = json.loads((out / "run.json").read_text())
    assert info["counts"]["hosts"] == 4 and info["counts"]["failures"] == 2
    assert info["model_version"] == hops["model_version"].iloc[0]
    assert {"source", "pathways", "writing"} <= set(info["timings_s"])
    assert {"bands", "inputs", "model"} <= set(info["timings_s"])
    # On a CPU each host task predicts its own hops (2 hosts x 2 hop rows, 4 to a batch).
    assert info["config"]["fuse"] is True
    assert info["resume"]["hosts_run"] == 3 and info["resume"]["batches_run"] == 2
    # Memory goals are checked in benchmarks/run.py; here only that it is measured.
    assert info["workers"]["processes"] >= 1 and info["workers"]["peak_rss_mib"] > 0


def test_rows_are_ranked_and_shortlist_obeys_threshold(dask_run):
    _, out = dask_run
    hops = pd.read_parquet(out / "hops.parquet")
    assert np.all(np.diff(hops["predicted_em_eV"].to_numpy()) >= 0)
    structures = pd.read_parquet(out / "structures.parquet")
    p1 = structures["percolation_1d_eV"].to_numpy()
    assert np.all(np.diff(p1) >= 0)
    # Spinel 8a-8a network and the thiospinel: one distinct hop that percolates in 3D.
    for _, row in structures.iterrows():
        assert row["n_hops"] == 1
        assert row["percolation_3d_eV"] == pytest.approx(row["percolation_1d_eV"])
        assert row["passes"] == (row["percolation_1d_eV"] < 0.65)


def test_synchronous_run_gives_identical_predictions(dask_run, host_dir):
    _, out = dask_run
    hops = pd.read_parquet(out / "hops.parquet")
    res = screen("Mg", str(host_dir), synchronous=True, write=False, batch_size=3)
    a = hops.set_index(["material_id", "hop_id", "limit"])["predicted_em_eV"].sort_index()
    b = res.hops.set_index(["material_id", "hop_id", "limit"])["predicted_em_eV"].sort_index()
    assert list(a.index) == list(b.index)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-5, atol=1e-6)
    # A threshold between the two materials: the shortlist holds only those below it.
    p1 = np.sort(res.structures["percolation_1d_eV"].to_numpy())
    mid = float(p1.mean())
    res2 = screen("Mg", str(host_dir), synchronous=True, write=False, threshold=mid)
    assert len(res2.shortlist) == int(np.sum(p1 < mid))
    assert (res2.shortlist["percolation_1d_eV"] < mid).all()
    assert list(res2.shortlist["rank"]) == list(range(1, len(res2.shortlist) + 1))
    assert res2.exit_code == 3


def test_empty_shortlist_keeps_its_columns(dask_run, host_dir):
    res = screen("Mg", str(host_dir), synchronous=True, write=False, threshold=-1.0)
    assert len(res.shortlist) == 0
    assert {"rank", "material_id", "percolation_1d_eV", "path_hop_ids"} <= set(res.shortlist.columns)


def test_run_help_documents_every_option(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    run_parser = sub.choices["run"]
    assert main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    for action in run_parser._actions:
        for opt in action.option_strings:
            assert opt in text
        assert action.help and len(action.help) > 10, action.option_strings


def test_usage_errors_exit_2(tmp_path):
    assert main(["run"]) == 2
    assert main(["run", "--chemistry", "Mg", "--batch-size", "0", "--out", str(tmp_path)]) == 2
    assert main(["run", "--chemistry", "Mg", "--model", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert main(["run", "--chemistry", "Mg", "--source", str(tmp_path / "missing"), "--sync",
                 "--out", str(tmp_path)]) == 2


def test_default_task_size_follows_the_device(host_dir):
    from screener.screening.tasks import default_batch_size

    res = screen("Mg", str(host_dir), synchronous=True, write=False, device="cpu")
    # on a CPU batching buys nothing: small tasks spread the hops over the workers
    assert res.run_info["config"]["batch_size"] == default_batch_size("cpu") == 8
    # on a GPU a task is one forward pass of 32 bands
    assert default_batch_size("cuda") == 32
    assert len(res.hops) == 4


def _worker_settings(dask_worker) -> tuple[str, bool, float]:
    import os

    callbacks = dask_worker.periodic_callbacks
    return os.environ.get("OMP_NUM_THREADS", ""), "profile" in callbacks, callbacks["monitor"].callback_time


def test_local_cluster_workers_hold_their_threads_and_run_no_profiler(monkeypatch):
    # OpenMP threads = the worker's threads (no oversubscription), whatever the shell exports, and
    # none of the services that only feed a dashboard: no statistical profiler stealing the GIL
    # from the task every 10 ms, the system monitor every 5 s instead of twice a second.
    from distributed import Client

    from screener.screening.execution import local_cluster

    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    cluster = local_cluster(1, 2)
    try:
        with Client(cluster) as client:
            settings = list(client.run(_worker_settings).values())
            scheduler_monitor_ms = cluster.scheduler.periodic_callbacks["monitor"].callback_time
    finally:
        cluster.close()
    assert settings == [("2", False, 5000)]
    assert scheduler_monitor_ms == 5000


def test_a_local_cluster_gives_results_straight_from_its_workers():
    from screener.screening.execution import dask_client

    with dask_client(workers=1) as client:
        assert client.direct_to_workers is True
        assert client.submit(sum, [1, 2]).result() == 3


class _RemoteClient:
    direct_to_workers = None

    def scheduler_info(self):
        # A scheduler reached through a tunnel: localhost here, its workers on other machines.
        return {"address": "tcp://127.0.0.1:8786", "workers": {"tcp://10.1.2.3:40001": {}, "tcp://127.0.0.1:40002": {}}}


def test_results_of_workers_elsewhere_go_through_the_scheduler():
    from screener.screening.execution import prefer_direct

    client = _RemoteClient()
    assert prefer_direct(client) is False and client.direct_to_workers is None


@pytest.mark.parametrize("address, local", [
    ("tcp://127.0.0.1:8786", True), ("tcp://localhost:8786", True), ("tcp://[::1]:8786", True),
    ("127.0.0.1:40575", True), ("tcp://10.1.2.3:8786", False), ("tcp://node12:8786", False),
    ("not an address", False),
])
def test_loopback_addresses_are_told_apart_from_others(address, local):
    from screener.screening.execution import is_loopback

    assert is_loopback(address) is local


def test_a_hop_with_a_limit_left_unpredicted_is_not_on_the_path():
    import pandas as pd

    from screener.screening.tables import shortlist_table

    structures = pd.DataFrame({"material_id": ["m"], "working_ion": ["Mg"], "passes": [True],
                               "percolation_1d_eV": [0.4]})
    hops = pd.DataFrame({
        "material_id": ["m"] * 4, "working_ion": ["Mg"] * 4, "hop_label": ["a", "a", "b", "b"],
        "hop_id": ["a-vac", "a-dil", "b-vac", "b-dil"], "limit": ["vacancy", "dilute"] * 2,
        # b's dilute-limit band failed: b is not open in every limit, so not on the path
        "predicted_em_eV": [0.3, 0.4, 0.2, float("nan")], "uncertainty_eV": [0.1, 0.2, 0.05, float("nan")],
    })
    short = shortlist_table(structures, hops)
    assert short["path_hop_ids"].iloc[0] == ["a-dil", "a-vac"]
    assert short["path_max_uncertainty_eV"].iloc[0] == 0.2


def test_a_material_that_never_percolates_has_no_path():
    """The summary's ± of a material without a 1D path is missing, not the spread of every hop."""
    import pandas as pd

    from screener.screening.tables import with_path

    structures = pd.DataFrame({"material_id": ["m", "n"], "working_ion": ["Mg", "Mg"],
                               "percolation_1d_eV": [float("inf"), 0.5]})
    hops = pd.DataFrame({"material_id": ["m", "m", "n"], "working_ion": ["Mg"] * 3, "hop_label": ["a", "b", "c"],
                         "hop_id": ["a", "b", "c"], "predicted_em_eV": [2.0, float("nan"), 0.5],
                         "uncertainty_eV": [0.4, float("nan"), 0.1]})
    got = with_path(structures, hops).set_index("material_id")
    assert got.loc["m", "path_hop_ids"] == [] and math.isnan(got.loc["m", "path_max_uncertainty_eV"])
    assert got.loc["n", "path_hop_ids"] == ["c"] and got.loc["n", "path_max_uncertainty_eV"] == 0.1
