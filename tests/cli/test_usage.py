"""Bad usage is refused before any work (exit 2, one line naming the problem); output is readable."""

from __future__ import annotations

import argparse
import logging
import re
import shutil

import pytest

from screener.cli.main import build_parser, main
from screener.core.chemistry import parse_chemistry
from screener.sources.bundled import catalogue_dir

COMMANDS = ["run", "hops", "nightly", "export", "refine", "report", "predict", "suggest", "learn", "train", "evaluate"]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_states_each_default_once_and_none_for_required_options(command):
    text = _subparsers()[command].format_help()
    assert "(default: None)" not in text
    for option in re.split(r"\n  (?=-)", text):
        assert option.count("(default") <= 1, option
    for action in _subparsers()[command]._actions:
        if action.required and action.help:
            assert "default" not in action.help


def test_chemistry_is_read_without_regard_to_case():
    assert parse_chemistry("ca, MG,mg") == ["Ca", "Mg"]
    assert parse_chemistry(["Li", "na"]) == ["Li", "Na"]
    for bad in ("Xx", "Mg,Qq", " , "):
        with pytest.raises(ValueError):
            parse_chemistry(bad)


@pytest.mark.parametrize("argv, message", [
    (["run", "--chemistry", "Xx"], "not a chemical element: Xx"),
    (["run", "--chemistry", "Mg", "--threshold", "-1"], "--threshold"),
    (["run", "--chemistry", "Mg", "--workers", "0"], "--workers"),
    (["run", "--chemistry", "Mg", "--min-width", "-2"], "min_width"),
    (["nightly", "--chemistry", "Qq", "--source", "bundled"], "not a chemical element: Qq"),
    (["nightly", "--chemistry", "Mg", "--threshold", "0"], "--threshold"),
    (["export", "NO_SUCH_RUN", "--out", "x"], "no such run directory"),
    (["export", "NO_SUCH_RUN", "--out", "x", "--min-width", "0"], "--min-width"),
    (["refine", "NO_SUCH_RUN"], "no such run directory"),
    (["report", "NO_SUCH_RUN", "--out", "r.html"], "no such run directory"),
    (["evaluate", "--data", "NO_SUCH_FILE.json", "--out", "p.csv"], "cannot read dataset"),
    (["predict", "--ini", "a.cif"], "give --ini FILE --fin FILE"),
    (["suggest", "NO_SUCH_RUN"], "no such run directory"),
    (["suggest", "NO_SUCH_RUN", "--n", "0"], "--n must be positive"),
])
def test_bad_usage_exits_2_with_one_line_before_any_work(argv, message, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and message in errors[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_a_scheduler_nobody_answers_at_is_a_usage_error(tmp_path, caplog):
    import dask
    import distributed  # noqa: F401 - its defaults first: leaving the override below must not remove them

    hosts = tmp_path / "hosts"
    hosts.mkdir()
    shutil.copy(catalogue_dir() / "MgCr2O4.cif", hosts)
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}), caplog.at_level(logging.ERROR):
        rc = main(["run", "--chemistry", "Mg", "--source", str(hosts), "--scheduler", "tcp://127.0.0.1:9",
                   "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in caplog.text
    assert not list((tmp_path / "out").glob("*.parquet"))


def test_an_empty_source_folder_says_no_structures_were_found(tmp_path, caplog):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no structures here")
    assert main(["run", "--chemistry", "Mg", "--source", str(tmp_path / "empty"), "--sync",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "no structure files found" in caplog.text


@pytest.fixture(scope="module")
def long_named_run(tmp_path_factory):
    """A run over files with long names, one of them a POSCAR with selective dynamics."""
    root = tmp_path_factory.mktemp("long")
    hosts = root / "hosts"
    hosts.mkdir()
    for name in ("MgCr2O4.cif", "MgTi2S4.cif"):
        shutil.copy(catalogue_dir() / name, hosts / f"ICSD_collection_code_123456_{name}")
    from pymatgen.core import Structure

    # a VASP file with "Selective dynamics" and every flag T: pymatgen warns once per file
    s = Structure.from_file(catalogue_dir() / "MgV2O4.cif")
    head = ["MgV2O4", "1.0", *(" ".join(f"{x:.10f}" for x in row) for row in s.lattice.matrix),
            "Mg V O", " ".join(str(int(s.composition[e])) for e in ("Mg", "V", "O")), "Selective dynamics", "Direct"]
    sites = sorted(s, key=lambda site: ["Mg", "V", "O"].index(site.specie.symbol))
    body = [" ".join(f"{x:.10f}" for x in site.frac_coords) + " T T T" for site in sites]
    for i in (1, 2):
        (hosts / f"POSCAR_relaxed_{i}").write_text("\n".join(head + body) + "\n")
    return root, hosts


def test_every_summary_row_shows_the_uncertainty_of_its_path(long_named_run, monkeypatch, capsys, one_torch_thread):
    """Shortlisted or not, each row's ± is the largest uncertainty on its 1D path."""
    import pandas as pd

    from screener.screening.tables import with_path

    root, hosts = long_named_run
    monkeypatch.setenv("COLUMNS", "200")
    out = root / "out"
    assert main(["run", "--chemistry", "Mg", "--source", str(hosts), "--sync", "--out", str(out),
                 "--threshold", "0.05"]) == 0
    text = capsys.readouterr().out
    ranked = with_path(pd.read_parquet(out / "structures.parquet"), pd.read_parquet(out / "hops.parquet"))
    assert len(ranked) == 4 and not ranked["passes"].any() and ranked["path_max_uncertainty_eV"].notna().all()
    for r in ranked.itertuples():
        row = next(line for line in text.splitlines() if r.material_id in line)
        assert f"{r.percolation_1d_eV:.2f}   {r.path_max_uncertainty_eV:.2f}" in row


def test_the_summary_shows_the_whole_ranking_with_whole_ids_at_80_columns(long_named_run, monkeypatch, capsys,
                                                                          caplog, one_torch_thread):
    root, hosts = long_named_run
    monkeypatch.setenv("COLUMNS", "80")
    out = root / "out"
    with caplog.at_level(logging.WARNING):
        assert main(["run", "--chemistry", "Mg", "--source", str(hosts), "--sync", "--out", str(out),
                     "--threshold", "0.05"]) == 0
    text = capsys.readouterr().out
    assert max(len(line) for line in text.splitlines()) <= 80
    for name in ("ICSD_collection_code_123456_MgCr2O4.cif", "ICSD_collection_code_123456_MgTi2S4.cif",
                 "POSCAR_relaxed_1"):
        assert name in text  # shown whole, though nothing is shortlisted at 0.05 eV
    assert "0 shortlisted" in text
    # pymatgen's per-file reader warning comes once for the run, with the number of files
    selective = [r.getMessage() for r in caplog.records if "selective dynamics" in r.getMessage().lower()]
    assert len(selective) == 1 and "2 file(s)" in selective[0]
    import json

    warnings = json.loads((out / "run.json").read_text())["reader_warnings"]
    assert any("selective dynamics" in k.lower() and v == 2 for k, v in warnings.items())


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_a_table_never_cuts_a_number_and_folds_an_id_only_when_it_must(monkeypatch, capsys, columns):
    from screener.cli.tables import print_table

    monkeypatch.setenv("COLUMNS", str(columns))
    long_id = "ICSD_collection_code_123456_MgTi2S4.cif"
    rows = [["1", long_id, "Mg(TiS2)2", "Mg", "0.56", "0.20", "0.56", "yes"],
            ["2", "POSCAR_relaxed_1", "MgCr2O4", "Mg", "0.70", "0.18", "∞", ""]]
    print_table("t", ["#", "material", "formula", "ion", "1D eV", "± eV", "3D eV", "short"], rows,
                keep=("material", "formula"))
    out = capsys.readouterr().out
    assert "…" not in out and max(map(len, out.splitlines())) <= columns
    first = next(line for line in out.splitlines() if line.lstrip().startswith("1 "))
    assert first.split()[-4:] == ["0.56", "0.20", "0.56", "yes"]  # every number whole, on the id's line
    assert (long_id in out) == (columns >= 85)  # on one line where it fits, else folded
