"""Nightly pipeline: pull, diff, screen the delta, append by date and chemistry, refresh latest/.

Runs against the Materials Project stand-in (:mod:`mp_standin`); nothing reaches the internet.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pipelines.nightly import main
from pipelines.results import ResultsDataset
from screener.sources.files import PathSource
from screener.sources.incremental import SnapshotSource
from tests.helpers_mp import VALID_KEY, StandIn, catalogue_docs, no_internet  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_internet")


@pytest.fixture
def model_dir() -> Path:
    """The shipped model when it is there, else the small development model."""
    from screener.model.registry import models_dir

    shipped = models_dir() / "em-band-v3"
    if (shipped / "model.json").exists():
        return shipped
    return Path(os.environ.get("SCREENER_MODEL_DIR") or "/tmp/devmodel")


def snapshot(*roots: Path) -> dict[str, tuple[str, int]]:
    """``{path: (sha256, mtime_ns)}`` of every file under ``roots``."""
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for r in roots for p in sorted(r.rglob("*")) if p.is_file()}


def test_nightly_screens_only_the_delta_and_a_rerun_changes_nothing(tmp_path, monkeypatch, capsys, model_dir,
                                                                    one_torch_thread):
    from pymatgen.core import Structure

    server = StandIn(catalogue_docs(only={"bundled-kcof3", "bundled-kmnf3"})).start()
    try:
        monkeypatch.setenv("MP_API_ENDPOINT", server.endpoint)
        monkeypatch.setenv("MP_API_KEY", VALID_KEY)
        monkeypatch.setenv("SCREENER_CONFIG", str(tmp_path / "none.toml"))
        results, cache = tmp_path / "results", tmp_path / "cache"
        args = ["--chemistry", "K", "--source", "mp", "--results", str(results), "--cache", str(cache),
                "--sync", "--quiet", "--model", str(model_dir)]

        def nightly(*extra: str) -> dict:
            assert main([*args, *extra]) == 0
            return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

        first = nightly()
        assert (first["screened"], first["new"], first["reused"]) == (2, 2, 0)
        parts = sorted(results.glob("hops/date=*/chemistry=K/part-*.parquet"))
        assert len(parts) == 1
        for name in ("hops", "structures", "shortlist", "failures"):
            assert (results / "latest" / f"{name}.parquet").exists()
        latest = pd.read_parquet(results / "latest" / "structures.parquet")
        assert sorted(latest["material_id"]) == sorted(server.docs)
        assert len(list(results.glob("runs/date=*/run-*.json"))) == 1

        # Twice in a row: no new work, not one byte or mtime changed (results and cache).
        before = snapshot(results, cache)
        second = nightly()
        assert (second["screened"], second["unchanged"], second["files_written"]) == (0, 2, 0)
        assert snapshot(results, cache) == before

        # One structure modified (new stamp), one removed, one added: only those are screened.
        modified, removed = sorted(server.docs)
        s = Structure.from_dict(server.docs[modified]["structure"])
        s.scale_lattice(s.volume * 1.05)
        server.docs[modified].update(structure=s.as_dict(), last_updated="2025-10-03T00:00:00")
        del server.docs[removed]
        server.docs.update(catalogue_docs(only={"bundled-knif3"}))
        added = (set(server.docs) - {modified}).pop()
        third = nightly()
        assert (third["screened"], third["new"], third["changed"], third["removed"], third["reused"]) == \
            (2, 1, 1, 1, 0)
        assert len(sorted(results.glob("hops/date=*/chemistry=K/part-*.parquet"))) == 2
        mats = pd.read_parquet(results / "latest" / "chemistry=K" / "materials.parquet")
        assert sorted(mats["material_id"]) == sorted([modified, added])
        assert set(pd.read_parquet(results / "latest" / "hops.parquet")["material_id"]) == {modified, added}
        history = ResultsDataset(results).read("screened", "K")
        assert sorted(history["material_id"]) == sorted([modified, removed, modified, added])  # kept

        # A new model version: the whole chemistry is screened again.
        bumped = tmp_path / "model-v2"
        shutil.copytree(model_dir, bumped)
        meta = json.loads((bumped / "model.json").read_text())
        meta["version"] = str(meta.get("version", "0")) + ".1"
        (bumped / "model.json").write_text(json.dumps(meta))
        args[args.index("--model") + 1] = str(bumped)
        fourth = nightly()
        assert (fourth["screened"], fourth["reused"], fourth["unchanged"]) == (2, 0, 2)
        mats = pd.read_parquet(results / "latest" / "chemistry=K" / "materials.parquet")
        assert set(mats["model_version"]) == {f"{meta['name']}@{meta['version']}"}
        summary = json.loads((results / "latest" / "run.json").read_text())
        assert summary["model_versions"] == [f"{meta['name']}@{meta['version']}"] and summary["chemistry"] == ["K"]
    finally:
        server.stop()


def test_nightly_config_errors_exit_2(tmp_path, monkeypatch, caplog, model_dir):
    monkeypatch.setenv("SCREENER_CONFIG", str(tmp_path / "none.toml"))
    common = ["--chemistry", "Zn", "--source", "mp", "--results", str(tmp_path / "r"), "--cache",
              str(tmp_path / "c"), "--model", str(model_dir), "--quiet"]
    assert main(common) == 2
    assert "no Materials Project API key" in caplog.text
    assert main([*common, "--offline"]) == 2
    assert "no Materials Project cache" in caplog.text


def test_sources_without_stamps_are_diffed_by_structure_hash(tmp_path):
    from screener.sources.bundled import catalogue_dir

    folder = tmp_path / "hosts"
    folder.mkdir()
    for name in ("MgCr2O4.cif", "MgTi2S4.cif", "MgV2O4.cif"):
        shutil.copy(catalogue_dir() / name, folder / name)
    first = SnapshotSource(PathSource(folder), lambda ion: {}).sync("Mg")
    assert first.new == ["MgCr2O4.cif", "MgTi2S4.cif", "MgV2O4.cif"]
    previous = {k: m.structure_hash for k, m in first.members.items()}
    previous["MgTi2S4.cif"] = "0" * 16
    (folder / "MgV2O4.cif").unlink()
    (folder / "junk.cif").write_text("not a structure")
    src = SnapshotSource(PathSource(folder), lambda ion: previous)
    delta = src.sync("Mg")
    assert (delta.new, delta.changed, delta.unchanged, delta.removed) == \
        (["junk.cif"], ["MgTi2S4.cif"], ["MgCr2O4.cif"], ["MgV2O4.cif"])
    assert [h.item for h in src.items("Mg", ["junk.cif"])] == ["junk.cif"]


def test_a_nightly_run_that_dies_before_appending_resumes_its_screening(tmp_path, monkeypatch, model_dir,
                                                                        one_torch_thread):
    import pipelines.increment as nightly
    from screener.sources.bundled import catalogue_dir

    folder = tmp_path / "hosts"
    folder.mkdir()
    for name in ("MgCr2O4.cif", "MgTi2S4.cif"):
        shutil.copy(catalogue_dir() / name, folder / name)
    results = ResultsDataset(tmp_path / "results")

    def run():
        return nightly.screen_increment("Mg", PathSource(folder), results, synchronous=True,
                                        model_dir=str(model_dir))

    real_append = nightly._append_results

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # killed after screening, before its results were appended

    monkeypatch.setattr(nightly, "_append_results", die)
    with pytest.raises(KeyboardInterrupt):
        run()
    assert not results.read("hops", "Mg").shape[0]
    assert len(list((results.root / "_work").iterdir())) == 1  # the finished work is kept

    monkeypatch.setattr(nightly, "_append_results", real_append)
    again = run()
    assert again.run_info["resume"]["hosts_run"] == 0 and again.run_info["resume"]["batches_run"] == 0
    assert sorted(again.screened["Mg"]) == ["MgCr2O4.cif", "MgTi2S4.cif"]
    hops = results.read("hops", "Mg")
    assert len(hops) == 4 and hops.groupby(["material_id", "hop_id", "limit"]).size().max() == 1
    assert not list((results.root / "_work").iterdir())  # removed once appended
