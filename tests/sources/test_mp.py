"""The Materials Project source: the real mp-api client against a local stand-in server.

Nothing here reaches the internet: ``no_internet`` makes every non-loopback connection fail and
``MP_API_ENDPOINT`` points at the stand-in (:mod:`mp_standin`).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from screener.cli.main import main
from screener.sources.mp.settings import (
    MPAuthError,
    MPOptions,
    MPSourceError,
    read_api_key,
)
from screener.sources.mp.source import MPSource
from tests.helpers_mp import (  # noqa: F401
    VALID_KEY,
    StandIn,
    catalogue_docs,
    electrode_docs,
    no_internet,
    summary_doc,
)

pytestmark = pytest.mark.usefixtures("no_internet")

SECRET = "SECRET123"
FAST = {"timeout": 0.5, "backoff": 0.01, "retries": 3}
QUICK_HOSTS = {"bundled-kcof3", "bundled-kmnf3"}  # 5-site perovskites: quick to screen


@pytest.fixture
def server():
    s = StandIn().start()
    yield s
    s.stop()


@pytest.fixture
def env(server, tmp_path, monkeypatch):
    """The stand-in as the endpoint, no config file, caches under tmp_path."""
    monkeypatch.setenv("MP_API_ENDPOINT", server.endpoint)
    monkeypatch.setenv("SCREENER_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path


@pytest.fixture
def model_env(monkeypatch):
    """The shipped model when it is there, else the small development model."""
    from screener.model.registry import models_dir

    if not (models_dir() / "em-band-v3" / "model.json").exists() and not os.environ.get("SCREENER_MODEL_DIR"):
        monkeypatch.setenv("SCREENER_MODEL_DIR", "/tmp/devmodel")


def source(tmp_path: Path, key: str | None = VALID_KEY, **options) -> MPSource:
    return MPSource(key, MPOptions(cache=str(tmp_path / "cache"), **{**FAST, **options}))


def expected_ids(server: StandIn, ion: str, max_ehull: float = 0.1, max_sites: int = 150,
                 experimental_only: bool = False) -> set[str]:
    return {m for m, d in server.docs.items()
            if ion in d["elements"] and d["energy_above_hull"] <= max_ehull and d["nsites"] <= max_sites
            and not (experimental_only and d["theoretical"])}


# ----------------------------------------------------------------------------- listing and chunking
def test_listing_pages_filters_and_downloads_in_chunks(server, env):
    src = source(env, page_size=3, id_chunk=2)
    delta = src.sync("Li")
    want = expected_ids(server, "Li")
    assert set(delta.members) == want and set(delta.new) == want and delta.downloaded == len(want)
    assert 3 < len(want) and want != {m for m, d in server.docs.items() if "Li" in d["elements"]}  # ehull cut bites

    listing = [r for r in server.data_requests("/materials/summary/") if "material_ids" not in r.query]
    assert [int(r.query["_limit"]) for r in listing][0] == 3
    assert [int(r.query.get("_skip", 0)) for r in listing] == list(range(0, len(want), 3))
    assert listing[0].query["_fields"] == "material_id,last_updated"
    assert {"elements", "energy_above_hull_max", "nsites_max", "deprecated"} <= set(listing[0].query)
    downloads = [r for r in server.data_requests("/materials/summary/") if "material_ids" in r.query]
    assert max(len(r.ids) for r in downloads) == 2
    assert sorted(i for r in downloads for i in r.ids) == sorted(want)
    assert "structure" in downloads[0].query["_fields"]
    # Every data request carried criteria (without them mp-api would read S3).
    assert all({"elements", "material_ids", "working_ion"} & set(r.query) for r in server.data_requests())

    items = src.items("Li")
    assert [h.item for h in items] == sorted(want)
    assert all(h.structure is not None and "Li" in h.structure.composition for h in items)
    assert all(h.meta["last_updated"] and h.meta["structure_hash"] for h in items)


def test_criteria_experimental_only_and_sites(server, env):
    src = source(env, experimental_only=True, max_sites=30, max_ehull=0.2)
    assert set(src.sync("Li").members) == expected_ids(server, "Li", 0.2, 30, True)
    assert server.data_requests()[0].query["theoretical"] == "False"


def test_long_id_lists_are_chunked(server, env):
    """Insertion electrodes name many ids: sent in chunks, never as one URL the server refuses (414)."""
    electrodes, charged = electrode_docs(server.docs, "Li")
    server.electrodes = electrodes
    server.docs.update(charged)
    server.max_url = 300  # about 15 ids per URL
    src = source(env, insertion_electrodes=True, id_chunk=8)
    delta = src.sync("Li")
    # The union: listed hosts, plus the electrode hosts above the hull cut; charged ends hold no Li.
    assert set(delta.members) == {m for m, d in server.docs.items() if "Li" in d["elements"]}
    assert not [r for r in server.requests if r.status == 414]
    by_id = [r for r in server.data_requests("/materials/summary/") if r.ids]
    assert len(by_id) >= 4 and max(len(r.ids) for r in by_id) == 8
    assert server.data_requests("/materials/insertion_electrodes/")[0].query["working_ion"] == "Li"

    # One request for all ids is refused by the server: a clear error, not a crash.
    big = source(env / "other", insertion_electrodes=True, id_chunk=1000)
    with pytest.raises(MPSourceError, match="414"):
        big.sync("Li")


# ----------------------------------------------------------------------------- faults
@pytest.mark.parametrize("kind", ["429", "500", "503", "slow", "truncated", "cut"])
def test_transient_faults_are_retried(server, env, kind, caplog):
    src = source(env)
    server.inject(kind, "/materials/summary/", delay=1.5)
    with caplog.at_level(logging.WARNING, logger="screener.sources.mp"):
        delta = src.sync("Zn")
    assert set(delta.members) == expected_ids(server, "Zn")
    first, second = server.data_requests()[:2]
    assert first.fault == kind and second.fault == "" and second.status == 200
    assert first.query == second.query  # the same request again
    assert len(src.client.retries_seen) == 1
    assert "retry 1 of 3" in caplog.text


def test_persistent_failure_gives_up_with_one_line(server, env):
    server.inject("500", "/materials/summary/", times=100)
    src = source(env, retries=2)
    with pytest.raises(MPSourceError) as err:
        src.sync("Zn")
    assert "gave up after 2 retries" in str(err.value) and "\n" not in str(err.value)
    assert len(server.data_requests()) == 3


@pytest.mark.parametrize("status", ["401", "403"])
def test_rejected_key_is_one_clear_error(server, env, status):
    server.inject(status, "/materials/summary/")
    with pytest.raises(MPAuthError, match=f"rejected the API key \\(HTTP {status}\\)") as err:
        source(env).sync("Zn")
    assert SECRET not in str(err.value)
    assert len(server.data_requests()) == 1  # not retried


def test_the_real_service_is_out_of_reach(env):
    """The guard works: the public endpoint fails at once, with the clear error."""
    src = MPSource(VALID_KEY, MPOptions(cache=str(env / "cache"), **FAST), endpoint="https://api.materialsproject.org/")
    with pytest.raises(MPSourceError, match="cannot reach the Materials Project.*no internet"):
        src.sync("Zn")


def test_unknown_key_unreachable_server_and_missing_cache(server, env, monkeypatch):
    with pytest.raises(MPAuthError, match="HTTP 403"):
        source(env, key="x" * 32).sync("Zn")
    monkeypatch.setenv("MP_API_ENDPOINT", "http://127.0.0.1:9/")  # nothing listens there
    with pytest.raises(MPSourceError, match="cannot reach the Materials Project.*--offline"):
        MPSource(VALID_KEY, MPOptions(cache=str(env / "c2"), **FAST)).sync("Zn")
    with pytest.raises(MPSourceError, match="no Materials Project cache"):
        source(env / "empty", key=None, offline=True).sync("Zn")


@pytest.mark.parametrize("key,message", [
    (None, "no Materials Project API key: set MP_API_KEY"),
    ("sk-test-SECRET123", "malformed"),
    ("sk-test-SECRET123" + "9" * 15, "rejected the API key (HTTP 403)"),
])
def test_cli_key_errors_exit_2_with_one_line(env, model_env, monkeypatch, caplog, capfd, key, message):
    if key:
        monkeypatch.setenv("MP_API_KEY", key)
    caplog.set_level(logging.DEBUG)
    rc = main(["run", "--chemistry", "Zn", "--source", "mp", "--cache", str(env / "cache"),
               "--out", str(env / "out"), "--sync"])
    assert rc == 2
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert message in errors[0].getMessage() and "\n" not in errors[0].getMessage()
    out, err = capfd.readouterr()
    assert SECRET not in caplog.text + out + err


def test_cli_malformed_key_in_a_real_process(server, env, model_env):
    """The key of the issue, through ``python -m screener``: one line on stderr, exit 2, no secret."""
    import subprocess
    import sys

    envvars = {**os.environ, "MP_API_KEY": "sk-test-SECRET123", "MP_API_ENDPOINT": server.endpoint,
               "SCREENER_CONFIG": str(env / "none.toml"), "XDG_CACHE_HOME": str(env / "xdg")}
    p = subprocess.run([sys.executable, "-m", "screener", "run", "--chemistry", "Zn", "--source", "mp",
                        "--out", str(env / "out"), "--quiet"], env=envvars, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "malformed" in lines[0] and "Traceback" not in p.stderr
    assert SECRET not in p.stdout + p.stderr


def test_key_from_config_file(server, env, monkeypatch):
    cfg = env / "config.toml"
    cfg.write_text(f'mp_api_key = "{VALID_KEY}"\n')
    monkeypatch.setenv("SCREENER_CONFIG", str(cfg))
    assert read_api_key() == VALID_KEY
    assert MPSource.from_env(cache=str(env / "cache")).sync("Zn").members
    monkeypatch.setenv("MP_API_KEY", "y" * 32)  # the environment wins
    assert read_api_key() == "y" * 32
    cfg.write_text("mp_api_key = [not toml")
    monkeypatch.delenv("MP_API_KEY")
    with pytest.raises(MPSourceError, match="cannot read the config file"):
        read_api_key()


# ----------------------------------------------------------------------------- cache
def test_second_sync_downloads_only_what_changed(server, env):
    from pymatgen.core import Structure

    source(env).sync("Zn")
    before = expected_ids(server, "Zn")
    modified, touched, removed = sorted(before)[:3]
    s = Structure.from_dict(server.docs[modified]["structure"])
    s.scale_lattice(s.volume * 1.03)
    server.docs[modified].update(structure=s.as_dict(), last_updated="2025-10-01T00:00:00")
    server.docs[touched]["last_updated"] = "2025-10-01T00:00:00"  # new stamp, same structure
    del server.docs[removed]
    server.docs["mp-5000"] = summary_doc("mp-5000", s.copy(), last_updated="2025-10-01T00:00:00")
    server.db_version = "2025.10.01"
    server.clear_log()

    src = source(env)
    delta = src.sync("Zn")
    assert delta.new == ["mp-5000"] and delta.changed == [modified, touched] and delta.removed == [removed]
    assert len(delta.unchanged) == len(before) - 3 and delta.downloaded == 3
    assert (delta.previous_db_version, delta.db_version) == ("2025.09.25", "2025.10.01")
    downloaded = sorted(i for r in server.data_requests() for i in r.ids)
    assert downloaded == sorted([modified, touched, "mp-5000"])
    old = {h.item: h.meta["structure_hash"] for h in source(env, offline=True).items("Zn")}
    assert delta.members[modified].structure_hash != delta.members[touched].structure_hash
    assert old[touched] == delta.members[touched].structure_hash

    server.clear_log()
    again = source(env).sync("Zn")  # nothing changed since: listing only, no downloads
    assert again.counts() == {"new": 0, "changed": 0, "unchanged": len(delta.members), "removed": 0,
                              "downloaded": 0}
    assert all(not r.ids for r in server.data_requests())


def test_a_download_cut_short_keeps_the_chunks_that_arrived(server, env):
    """A sync that dies half-way has cached every chunk before the failing one: the next sync
    downloads only the rest."""
    want = sorted(expected_ids(server, "Li"))
    assert len(want) >= 5
    server.inject("500", "/materials/summary/", times=100, skip=1, downloads=True)  # chunk 2 on
    with pytest.raises(MPSourceError, match="gave up"):
        source(env, id_chunk=2, retries=1).sync("Li")
    assert set(source(env).cache.stamps()) == set(want[:2])  # the first chunk is kept
    server.faults.clear()
    server.clear_log()
    delta = source(env, id_chunk=2).sync("Li")
    assert set(delta.members) == set(want) and delta.downloaded == len(want) - 2
    assert sorted(i for r in server.data_requests() for i in r.ids) == want[2:]


def test_a_changed_material_that_fails_to_download_keeps_its_cached_copy(server, env, caplog):
    from pymatgen.core import Structure

    first = source(env).sync("Zn")
    changed, other = sorted(first.members)[:2]
    old_hash = first.members[changed].structure_hash
    s = Structure.from_dict(server.docs[changed]["structure"])
    server.docs[changed].update(structure={"not": "a structure"}, last_updated="2025-10-01T00:00:00")
    server.docs["mp-6000"] = summary_doc("mp-6000", s, last_updated="2025-10-01T00:00:00")
    server.docs["mp-6000"]["structure"] = {"not": "a structure"}
    with caplog.at_level(logging.WARNING, logger="screener.sources.mp"):
        delta = source(env).sync("Zn")
    # the older copy is still screened; a new material with no readable structure is not a member
    assert changed in delta.members and delta.members[changed].structure_hash == old_hash
    assert changed in delta.unchanged and "mp-6000" not in delta.members
    assert delta.counts()["downloaded"] == 0 and other in delta.unchanged
    assert "2 listed materials could not be downloaded" in caplog.text and "1 of them keep" in caplog.text
    server.docs[changed]["structure"] = s.as_dict()  # a later sync gets the new one
    again = source(env).sync("Zn")
    assert again.changed == [changed] and again.members[changed].last_updated.startswith("2025-10-01")


def test_database_versions_order_by_number_and_caches_by_endpoint(env, monkeypatch):
    from screener.sources.mp.cache import version_key
    from screener.sources.mp.settings import DEFAULT_ENDPOINT, default_cache_dir

    assert max(["2023.9.30", "2023.11.1", "2022.12.31"], key=version_key) == "2023.11.1"
    assert sorted(["2025.10.01", "2025.9.25", "2025.09.26"], key=version_key) == \
        ["2025.9.25", "2025.09.26", "2025.10.01"]
    monkeypatch.setitem(sys.modules, "platformdirs", None)  # the documented fallback: $XDG_CACHE_HOME
    public = default_cache_dir(DEFAULT_ENDPOINT)
    assert public == env / "xdg-cache" / "screener" / "mp"
    a, b = default_cache_dir("http://127.0.0.1:8001/"), default_cache_dir("https://user:pw@mirror.example/api/")
    assert a.parent == b.parent == public / "endpoints" and a != b
    assert "pw" not in b.name and "user" not in b.name and a == default_cache_dir("http://127.0.0.1:8001/")


def test_offline_uses_the_cache_alone(server, env):
    online = source(env).sync("Zn")
    server.stop()
    server.clear_log()
    src = source(env, key=None, offline=True)
    delta = src.sync("Zn")
    assert delta.members == online.members and delta.offline and delta.db_version == "2025.09.25"
    assert src.database_version() == "2025.09.25"
    assert len(src.items("Zn")) == len(online.members) and not server.requests
    # Other criteria, never queried online: the cached materials that meet them.
    narrow = source(env, key=None, offline=True, max_sites=30).sync("Zn")
    assert set(narrow.members) == {m for m in online.members if server.docs[m]["nsites"] <= 30}


# ----------------------------------------------------------------------------- end to end
def _files(*roots: Path) -> list[Path]:
    return [p for r in roots for p in r.rglob("*") if p.is_file()]


def test_run_cli_rescreens_only_changes_and_never_leaks_the_key(server, env, model_env, monkeypatch, caplog, capfd,
                                                                one_torch_thread):
    """Two ``screener run --source mp`` runs; the key must appear in no log, output or file."""
    from pymatgen.core import Structure

    server.docs = catalogue_docs(only=QUICK_HOSTS)
    monkeypatch.setenv("MP_API_KEY", VALID_KEY)
    cache, out1, out2 = env / "cache", env / "run1", env / "run2"
    caplog.set_level(logging.DEBUG)
    args = ["-v", "run", "--chemistry", "K", "--source", "mp", "--cache", str(cache), "--sync", "--top", "3"]

    assert main([*args, "--out", str(out1)]) == 0
    info1 = json.loads((out1 / "run.json").read_text())
    assert {k: info1["counts"][k] for k in ("new", "changed", "unchanged", "removed", "screened", "reused")} == \
        {"new": 2, "changed": 0, "unchanged": 0, "removed": 0, "screened": 2, "reused": 0}
    hops1 = pd.read_parquet(out1 / "hops.parquet")
    assert set(hops1["material_id"]) == set(server.docs) and hops1["predicted_em_eV"].notna().all()
    assert info1["source"] == "mp" and info1["source_database_version"] == "2025.09.25"

    modified, unchanged = sorted(server.docs)
    s = Structure.from_dict(server.docs[modified]["structure"])
    s.scale_lattice(s.volume * 1.05)
    server.docs[modified].update(structure=s.as_dict(), last_updated="2025-10-02T00:00:00")
    added = next(iter(catalogue_docs(only={"bundled-knif3"}).values()))
    server.docs["mp-7777"] = {**added, "material_id": "mp-7777", "last_updated": "2025-10-02T00:00:00"}

    assert main([*args, "--out", str(out2)]) == 0
    info2 = json.loads((out2 / "run.json").read_text())
    assert {k: info2["counts"][k] for k in ("new", "changed", "unchanged", "removed", "screened", "reused")} == \
        {"new": 1, "changed": 1, "unchanged": 1, "removed": 0, "screened": 2, "reused": 1}
    assert info2["incremental"]["by_chemistry"]["K"]["downloaded"] == 2
    hops2 = pd.read_parquet(out2 / "hops.parquet")
    assert set(hops2["material_id"]) == {modified, unchanged, "mp-7777"}
    def same(h: pd.DataFrame) -> pd.DataFrame:
        return h[h["material_id"] == unchanged].sort_values(["hop_id", "limit"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(same(hops1), same(hops2))  # reused, not recomputed
    assert "K: 1 new, 1 changed, 1 unchanged, 0 removed" in caplog.text

    # Offline: the cache alone, nothing screened again.
    monkeypatch.delenv("MP_API_KEY")
    server.stop()
    assert main([*args, "--offline", "--out", str(env / "run3")]) == 0
    info3 = json.loads((env / "run3" / "run.json").read_text())
    assert info3["counts"]["screened"] == 0 and info3["counts"]["hosts"] == 3

    out, err = capfd.readouterr()
    assert "DEBUG" in caplog.text and "127.0.0.1" in caplog.text  # debug logging was on
    assert SECRET not in caplog.text and SECRET not in out and SECRET not in err
    files = _files(out1, out2, env / "run3", cache)
    assert any(p.suffix == ".parquet" for p in files) and any(p.name == "mp.sqlite" for p in files)
    for p in files:
        assert SECRET.encode() not in p.read_bytes(), p
        if p.suffix == ".parquet":  # only pandas' schema; Arrow's copy of the schema is base64
            assert set(pq.read_schema(p).metadata or {}) <= {b"pandas"}, p
            meta = pq.read_metadata(p).metadata or {}
            decoded = [base64.b64decode(v) if k == b"ARROW:schema" else v for k, v in meta.items()]
            assert not any(SECRET.encode() in v for v in [*meta, *decoded]), p


# ----------------------------------------------------------------------------- empty frameworks
def test_with_voids_mp_also_pulls_frameworks_without_the_ion(server, env, model_env, monkeypatch,
                                                             one_torch_thread):
    from screener.sources.bundled import catalogue_dir
    from screener.sources.files import read_structure

    server.docs = catalogue_docs(only={"bundled-licoo2"})
    tis2 = read_structure(catalogue_dir() / "TiS2.cif")
    server.docs["mp-2156"] = summary_doc("mp-2156", tis2)  # Ti + S, no Li: a framework
    server.docs["mp-1265"] = summary_doc("mp-1265", read_structure(catalogue_dir() / "KZnF3.cif"))  # no redox metal
    unstable = summary_doc("mp-9999", tis2, ehull=0.3)  # a framework above the hull cut
    server.docs["mp-9999"] = {**unstable, "material_id": "mp-9999"}

    plain = source(env).sync("Li")
    assert set(plain.members) == {m for m, d in server.docs.items() if "Li" in d["elements"]}
    with_frameworks = source(env, frameworks=True).sync("Li")
    assert set(with_frameworks.members) - set(plain.members) == {"mp-2156"}
    # the cache keeps the two queries apart, and offline finds the frameworks again
    offline = source(env, key=None, offline=True, frameworks=True).sync("Li")
    assert set(offline.members) == set(with_frameworks.members)

    monkeypatch.setenv("MP_API_KEY", VALID_KEY)
    out = env / "run"
    assert main(["run", "--chemistry", "Li", "--source", "mp", "--cache", str(env / "cache2"), "--sync",
                 "--quiet", "--sites", "voids", "--out", str(out)]) == 0
    hops = pd.read_parquet(out / "hops.parquet")
    framework = hops[hops["material_id"] == "mp-2156"]
    assert len(framework) and (framework["isite_kind"] == "void").all() and (framework["limit"] == "dilute").all()
