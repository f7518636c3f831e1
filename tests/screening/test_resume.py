"""Exactly-once runs: kill -9 and resume, damaged parts, a second run on the same folder, dying workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from screener.cli.main import main
from screener.core.errors import ScreenerError
from screener.model.registry import default_model_dir
from screener.screening.run import screen
from screener.screening.store import MANIFEST, PARTS_DIR, PartStore
from tests.screening.hosts import bundled_host_dir

HOSTS = ["MgCr2O4.cif", "MgTi2S4.cif"]  # 2 hosts x 1 distinct hop x 2 limits = 4 hop rows
TABLES = ["hops", "structures", "shortlist", "failures"]
REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.skipif(not (default_model_dir() / "model.json").exists(),
                                reason="no model: set SCREENER_MODEL_DIR"),
              pytest.mark.usefixtures("one_torch_thread_module")]


@pytest.fixture(scope="module")
def host_dir(tmp_path_factory) -> Path:
    # one failure row (notes.cif), so exit code 3
    return bundled_host_dir(tmp_path_factory, HOSTS, {"notes.cif": b"not a structure\n"})


@pytest.fixture(scope="module")
def reference(host_dir, tmp_path_factory) -> Path:
    """An uninterrupted run, one hop per batch."""
    out = tmp_path_factory.mktemp("reference") / "out"
    res = screen("Mg", str(host_dir), out, synchronous=True, batch_size=1)
    assert res.run_info["resume"]["batches_run"] == 4
    return out


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(out / f"{name}.parquet") for name in TABLES}


def _assert_same_tables(a: Path, b: Path, exact: bool = True) -> None:
    ta, tb = _tables(a), _tables(b)
    for name in TABLES:
        if exact:
            pd.testing.assert_frame_equal(ta[name], tb[name], obj=name)
        else:
            pd.testing.assert_frame_equal(ta[name], tb[name], obj=name, check_exact=False,
                                          rtol=1e-6, atol=1e-8)
    hops = tb["hops"]
    assert hops.groupby(["material_id", "working_ion", "hop_id"]).size().max() == 1
    assert hops["predicted_em_eV"].notna().all()


def _run_and_kill(args: list[str], out: Path, pattern: str, timeout: float = 180.0) -> int:
    """Start ``python -m screener`` and SIGKILL it as soon as a file matching ``pattern`` exists."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "screener", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any((out / PARTS_DIR).glob(pattern)):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def _manifest_lines(out: Path) -> list[dict]:
    lines = []
    for raw in (out / PARTS_DIR / MANIFEST).read_bytes().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            pass
    return lines


def test_kill_9_then_rerun_gives_the_uninterrupted_tables(host_dir, reference, tmp_path):
    out = tmp_path / "out"
    args = ["run", "--chemistry", "Mg", "--source", str(host_dir), "--sync", "--batch-size", "1",
            "--batches", "across", "--out", str(out), "--quiet"]
    # 1st attempt: killed as soon as the first host is stored (hosts are analysed first).
    rc = _run_and_kill(args, out, "hosts/*.json")
    assert rc == -signal.SIGKILL
    assert not (out / "hops.parquet").exists()
    # 2nd attempt: killed as soon as a first batch of predictions is stored.
    rc = _run_and_kill(args, out, "batches/*.json")
    assert rc == -signal.SIGKILL
    done = [d for d in _manifest_lines(out) if d["type"] == "batch"]
    assert 1 <= len(done) < 4, "the kill must land mid-run for this test to mean anything"
    # 3rd attempt: the same command finishes the work left.
    assert main(args) == 3
    info = json.loads((out / "run.json").read_text())["resume"]
    assert info["hosts_from_parts"] == 2 and info["hosts_run"] == 0  # hosts run before batches
    assert info["batches_from_parts"] == len(done) and info["batches_run"] == 4 - len(done)
    _assert_same_tables(reference, out)
    # Each part is recorded once, however often the run was started.
    parts = [(d["type"], d["key"]) for d in _manifest_lines(out) if d["type"] != "run"]
    assert len(parts) == len(set(parts)) == 6
    # A rerun of the finished run does no work and rewrites identical tables.
    before = {name: (out / f"{name}.parquet").read_bytes() for name in TABLES}
    assert main(args) == 3
    info = json.loads((out / "run.json").read_text())["resume"]
    assert info["hosts_run"] == 0 and info["batches_run"] == 0
    assert {name: (out / f"{name}.parquet").read_bytes() for name in TABLES} == before


def test_kill_9_with_host_batches_then_rerun_gives_the_uninterrupted_tables(host_dir, reference, tmp_path):
    # The CPU default: each host task predicts its own hops; the client stores the host, then its
    # batches. Killed once a first batch is stored, the rerun keeps every stored part and
    # predicts only the batches left (in tasks of their own where their host is stored).
    out = tmp_path / "out"
    args = ["run", "--chemistry", "Mg", "--source", str(host_dir), "--sync", "--batch-size", "1",
            "--batches", "host", "--out", str(out), "--quiet"]
    rc = _run_and_kill(args, out, "batches/*.json")
    assert rc == -signal.SIGKILL
    done = [d for d in _manifest_lines(out) if d["type"] == "batch"]
    hosts_done = [d for d in _manifest_lines(out) if d["type"] == "host"]
    assert 1 <= len(done) < 4 and len(hosts_done) < 2, "the kill must land mid-run"
    assert main(args) == 3
    info = json.loads((out / "run.json").read_text())["resume"]
    assert info["hosts_from_parts"] == len(hosts_done) and info["hosts_run"] == 2 - len(hosts_done)
    assert info["batches_from_parts"] == len(done) and info["batches_run"] == 4 - len(done)
    _assert_same_tables(reference, out)
    parts = [(d["type"], d["key"]) for d in _manifest_lines(out) if d["type"] != "run"]
    assert len(parts) == len(set(parts)) == 6


def test_host_and_across_batches_give_the_same_tables(host_dir, tmp_path):
    a = screen("Mg", str(host_dir), tmp_path / "host", synchronous=True, batch_size=8, fuse=True)
    b = screen("Mg", str(host_dir), tmp_path / "across", synchronous=True, batch_size=8, fuse=False)
    assert a.run_info["config"]["fuse"] is True and b.run_info["config"]["fuse"] is False
    # Host batches never span hosts: one per host here, against one for both hosts' 4 hops.
    assert a.run_info["resume"]["batches_run"] == 2 and b.run_info["resume"]["batches_run"] == 1
    _assert_same_tables(tmp_path / "host", tmp_path / "across", exact=False)


def test_parquet_batch_parts_of_earlier_runs_are_still_read(host_dir, reference, tmp_path):
    # Parts format 1 stored batches as Parquet (NaN in the text columns of a mixed batch): a run
    # resumed by this version reuses them, failed hops included.
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    lines = (out / PARTS_DIR / MANIFEST).read_bytes().splitlines()
    rewritten = []
    failed = None
    for raw in lines:
        d = json.loads(raw)
        if d.get("type") == "batch":
            rows = json.loads((out / PARTS_DIR / d["file"]).read_bytes())["rows"]
            if failed is None:  # the first batch: one good row and one failed row, as Parquet has them
                failed = dict(rows[0])
                failed.update(hop_id="f" * 12, predicted_em_eV=float("nan"), uncertainty_eV=float("nan"),
                              stage="descriptors", error_type="ValueError", message="no neighbours")
                rows = [rows[0], failed]
            (out / PARTS_DIR / d["file"]).unlink()
            d["file"] = d["file"].replace(".json", ".parquet")
            pd.DataFrame(rows).to_parquet(out / PARTS_DIR / d["file"])
            import hashlib

            d["sha256"] = hashlib.sha256((out / PARTS_DIR / d["file"]).read_bytes()).hexdigest()
        rewritten.append(json.dumps(d).encode())
    (out / PARTS_DIR / MANIFEST).write_bytes(b"\n".join(rewritten) + b"\n")
    res = screen("Mg", str(host_dir), out, synchronous=True, batch_size=1)
    assert res.run_info["resume"]["batches_from_parts"] == 4 and res.run_info["resume"]["batches_run"] == 0
    rows = res.failures.to_dict("records")
    assert {"item": f"{failed['material_id']}#{'f' * 12}", "working_ion": "Mg", "stage": "descriptors",
            "error_type": "ValueError", "message": "no neighbours"} in rows
    ref = _tables(reference)
    pd.testing.assert_frame_equal(res.hops.reset_index(drop=True), ref["hops"].reset_index(drop=True))


def test_torn_manifest_and_damaged_parts_are_recomputed(host_dir, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    batches = sorted((out / PARTS_DIR / "batches").glob("*.json"))
    batches[0].write_bytes(b"PAR1 damaged")  # checksum no longer matches
    batches[1].unlink()  # listed but missing
    with open(out / PARTS_DIR / MANIFEST, "ab") as fh:
        fh.write(b'{"type": "batch", "key": "torn-by-kill')  # a line cut by kill -9
    (out / PARTS_DIR / "batches" / ".x.parquet.tmp-123").write_bytes(b"left by a killed run")
    res = screen("Mg", str(host_dir), out, synchronous=True, batch_size=1)
    assert res.run_info["resume"]["batches_run"] == 2
    assert res.run_info["resume"]["hosts_run"] == 0
    assert not list((out / PARTS_DIR / "batches").glob(".*tmp*"))
    _assert_same_tables(reference, out)


def test_new_settings_compute_new_parts_and_old_ones_stay(host_dir, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    res = screen("Mg", str(host_dir), out, synchronous=True, batch_size=2)  # other batches
    assert res.run_info["resume"]["hosts_run"] == 0  # host parts do not depend on batching
    assert res.run_info["resume"]["batches_run"] == 2
    _assert_same_tables(reference, out, exact=False)
    res = screen("Mg", str(host_dir), out, synchronous=True, batch_size=1)
    assert res.run_info["resume"]["batches_run"] == 0  # the earlier batches are still there


def test_batches_do_not_depend_on_the_order_tasks_finish():
    import itertools

    from screener.pathways.config import PathwayConfig
    from screener.screening.run import Batcher

    results = {f"h{i}": {"item": f"m{i}", "ion": "Mg", "cell": {},
                         "hop_specs": {f"hop{i}{j}": {} for j in range(n)}}
               for i, n in enumerate([3, 0, 5, 1])}
    seen = set()
    for perm in itertools.permutations(results):
        b = Batcher(sorted(results), 2, PathwayConfig())
        batches = [tuple(k for k, _ in batch) for key in perm for batch in b.add(key, results[key])]
        assert sum(len(x) for x in batches) == 9 and len(set(batches)) == len(batches)
        seen.add(tuple(batches))
    assert len(seen) == 1


def test_a_batch_is_keyed_by_what_its_bands_are_built_from():
    from screener.screening.keys import band_input_hash, batch_key, cell_hash

    keys = [("m.cif", "Mg", "h1"), ("m.cif", "Mg", "h2")]
    cell = {"lattice": [[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]], "species": ["Mg", "O"],
            "frac_coords": [[0, 0, 0], [0.5, 0.5, 0.5]]}
    hops = [{"hop_id": "h1", "start": [0, 0, 0]}, {"hop_id": "h2", "start": [0.5, 0, 0]}]
    inputs = [band_input_hash(cell_hash(cell), h) for h in hops]
    key = batch_key(keys, "model", "settings", inputs)
    assert batch_key(keys[::-1], "model", "settings", inputs[::-1]) == key  # the order of the hops
    # same hop ids, an edited input file (a moved atom): predicted again
    moved = {**cell, "frac_coords": [[0, 0, 0], [0.5, 0.5, 0.49]]}
    assert batch_key(keys, "model", "settings", [band_input_hash(cell_hash(moved), h) for h in hops]) != key
    assert batch_key(keys, "other model", "settings", inputs) != key
    with pytest.raises(ValueError):
        batch_key(keys, "model", "settings", inputs[:1])


def test_two_runs_cannot_write_one_folder(tmp_path):
    with PartStore(tmp_path / "out"):
        with pytest.raises(ScreenerError, match="another screener run"):
            PartStore(tmp_path / "out")
    PartStore(tmp_path / "out").close()  # released with the first store
    # a run that would start afresh (--no-resume) does not wipe the parts of a run still going
    with PartStore(tmp_path / "out") as first:
        first.put_host("k" * 64, "m", {"item": "m", "hops": []})
        with pytest.raises(ScreenerError, match="another screener run"):
            PartStore(tmp_path / "out", fresh=True)
        assert first.host("k" * 64) is not None
    with PartStore(tmp_path / "out", fresh=True) as again:
        assert again.host("k" * 64) is None and not again.records


def test_the_folder_stays_locked_until_its_tables_are_written(host_dir, tmp_path, monkeypatch):
    import screener.screening.run as run_module

    out = tmp_path / "out"
    seen = []
    real = run_module.write_json_atomic

    def write_json(obj, path):  # run.json, the last file a run writes
        with pytest.raises(ScreenerError, match="another screener run"):
            PartStore(out)
        seen.append(sorted(p.name for p in out.glob("*.parquet")))
        return real(obj, path)

    monkeypatch.setattr(run_module, "write_json_atomic", write_json)
    screen("Mg", str(host_dir), out, synchronous=True, batch_size=1)
    assert seen == [sorted(f"{t}.parquet" for t in TABLES)]
    PartStore(out).close()  # released at the end


# ----------------------------------------------------------------------------- dying workers
class KillWorkerOnce:
    """Worker plugin: the worker process dies (``os._exit``) when it starts the first task whose
    key starts with one of ``prefixes``; a marker file per prefix makes it happen once."""

    name = "kill-worker-once"

    def __init__(self, marker_dir: str, prefixes: tuple[str, ...]):
        self.marker_dir = marker_dir
        self.prefixes = prefixes

    def setup(self, worker):
        pass

    def teardown(self, worker):
        pass

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing":
            return
        name = key if isinstance(key, str) else str(key)
        for prefix in self.prefixes:
            marker = Path(self.marker_dir) / f"killed-{prefix}"
            if name.startswith(prefix) and not marker.exists():
                marker.write_text(name)
                os._exit(1)


@pytest.mark.parametrize("fuse", [False, True], ids=["across", "host"])
def test_a_worker_killed_mid_task_loses_and_duplicates_nothing(host_dir, reference, tmp_path, fuse):
    import cloudpickle
    from distributed import Client, LocalCluster, WorkerPlugin

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    plugin_cls = type("KillWorkerOncePlugin", (KillWorkerOnce, WorkerPlugin), {})
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "out"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        prefixes = ("host_pathways-",) if fuse else ("host_pathways-", "predict_batch-")
        client.register_plugin(plugin_cls(str(markers), prefixes))
        res = screen("Mg", str(host_dir), out, scheduler=cluster.scheduler_address, batch_size=1, fuse=fuse)
    # Every kind of task lost a worker while running (with host batches, the host task predicts)...
    assert {p.name for p in markers.iterdir()} == {f"killed-{p}" for p in prefixes}
    # ...and were run again: nothing crashed, nothing missing, nothing twice.
    info = res.run_info["resume"]
    assert info["hosts_crashed"] == 0 and info["batches_crashed"] == 0
    assert info["hosts_run"] == 2 and info["batches_run"] == 4
    assert res.exit_code == 3 and list(res.failures["item"]) == ["notes.cif"]
    _assert_same_tables(reference, out, exact=False)
    np.testing.assert_allclose(
        res.hops.sort_values(["material_id", "hop_id"])["predicted_em_eV"].to_numpy(),
        _tables(reference)["hops"].sort_values(["material_id", "hop_id"])["predicted_em_eV"].to_numpy(),
        rtol=1e-6,
    )


class KillOnFormula:
    """Worker plugin: the worker process dies (``os._exit``) whenever it looks for the hops of a
    host of reduced formula ``formula``, leaving a marker file per death."""

    name = "kill-on-formula"

    def __init__(self, marker_dir: str, formula: str):
        self.marker_dir = marker_dir
        self.formula = formula

    def setup(self, worker):
        import uuid

        import screener.screening.tasks as tasks

        real, marker_dir, formula = tasks.find_pathways, self.marker_dir, self.formula

        def find_pathways(structure, ion, config):
            if structure.composition.reduced_formula == formula:
                (Path(marker_dir) / f"death-{uuid.uuid4().hex}").write_text(str(os.getpid()))
                os._exit(1)
            return real(structure, ion, config)

        tasks.find_pathways = find_pathways

    def teardown(self, worker):
        pass


def test_an_input_that_kills_every_worker_fails_alone(host_dir, reference, tmp_path):
    import cloudpickle
    from distributed import Client, WorkerPlugin

    from screener.screening.execution import local_cluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    plugin_cls = type("KillOnFormulaPlugin", (KillOnFormula, WorkerPlugin), {})
    markers = tmp_path / "markers"
    markers.mkdir()
    with local_cluster(2) as cluster:
        allowed = cluster.scheduler.allowed_failures
        # The plugin through a client of its own, closed before the screen starts its client: with
        # two clients in this process, a finished result lost with a dying worker once came back
        # to the screen as a RuntimeError (an asyncio Event bound to another loop).
        with Client(cluster) as client:
            client.register_plugin(plugin_cls(str(markers), "Mg(TiS2)2"))  # MgTi2S4
        res = screen("Mg", str(host_dir), tmp_path / "out", scheduler=cluster.scheduler_address, batch_size=1,
                     fuse=True)
    deaths = len(list(markers.iterdir()))
    # Each of screener's levels (a group of hosts, the host alone, its hops apart from their
    # predictions) is tried allowed + 1 times; the host alone and apart at least.
    assert 2 * (allowed + 1) <= deaths <= 3 * (allowed + 1)
    assert res.exit_code == 3
    failed = res.failures.set_index("item")
    assert sorted(failed.index) == ["MgTi2S4.cif", "notes.cif"]
    assert failed.loc["MgTi2S4.cif", "error_type"] == "KilledWorker"
    # the other host lost nothing
    ref = _tables(reference)["hops"]
    got = res.hops.sort_values(["material_id", "hop_id"])
    want = ref[ref["material_id"] == "MgCr2O4.cif"].sort_values(["material_id", "hop_id"])
    assert list(got["material_id"].unique()) == ["MgCr2O4.cif"] and len(got) == len(want)
    np.testing.assert_allclose(got["predicted_em_eV"].to_numpy(), want["predicted_em_eV"].to_numpy(), rtol=1e-6)


def _die_once(marker: str) -> str:
    """A task whose first run kills its worker."""
    m = Path(marker)
    if not m.exists():
        m.write_text("died")
        os._exit(1)
    return m.name


def _innocent(i: int) -> int:
    time.sleep(0.05)
    return i


def test_a_gpu_worker_that_dies_twice_fails_none_of_its_waiting_batches(tmp_path):
    """Dask counts a death against every task the worker held; a GPU worker holds all its batches.

    With ``allowed-failures`` 1 all 12 tasks came back as KilledWorker; screener's local clusters
    must keep enough retries for two transient deaths.
    """
    import cloudpickle
    from distributed import Client

    from screener.screening.execution import TaskRunner, local_cluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    gpu = {"GPU": 1}
    with local_cluster(1, resources=gpu) as cluster, Client(cluster) as client:
        runner = TaskRunner(client)
        runner.submit("a", _die_once, (str(tmp_path / "a"),), resources=gpu)
        for i in range(10):
            runner.submit(i, _innocent, (i,), resources=gpu)
        runner.submit("b", _die_once, (str(tmp_path / "b"),), resources=gpu)
        got = dict(runner.results())
    assert got == {"a": "a", "b": "b", **{i: i for i in range(10)}}
