"""Secrets stay out of outputs, model files cannot run code, ids cannot escape their folder."""

from __future__ import annotations

import builtins
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from screener.cli.main import main
from screener.core.errors import ModelLoadError
from screener.core.files import safe_filename
from screener.model.predictor import BandPredictor, sha256_file
from screener.model.registry import default_model_dir
from screener.sources.bundled import catalogue_dir

SECRET = "sk-test-SECRET-XYZ"

needs_model = pytest.mark.skipif(not (default_model_dir() / "model.json").exists(),
                                 reason="no model: set SCREENER_MODEL_DIR")


# ----------------------------------------------------------------------------- API key
@needs_model
def test_the_api_key_never_reaches_logs_outputs_or_parquet_metadata(tmp_path, monkeypatch, caplog, capfd,
                                                                    one_torch_thread):
    monkeypatch.setenv("MP_API_KEY", SECRET)
    hosts = tmp_path / "hosts"
    (hosts / "nested dir").mkdir(parents=True)
    shutil.copy(catalogue_dir() / "MgCr2O4.cif", hosts / "MgCr2O4.cif")
    shutil.copy(catalogue_dir() / "MgTi2S4.cif", hosts / "nested dir" / "MgTi2S4 (copy).cif")
    out = tmp_path / "out"
    caplog.set_level(logging.DEBUG)
    rc = main(["-v", "run", "--chemistry", "Mg", "--source", str(hosts), "--sync", "--out", str(out)])
    assert rc == 0
    captured = capfd.readouterr()
    assert "shortlisted" in captured.out and "tables in" in captured.out  # the summary was printed
    assert caplog.records, "DEBUG logging was captured"
    for text in (caplog.text, captured.out, captured.err):
        assert SECRET not in text
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"run.json", "hops.parquet", "structures.parquet",
                                       "shortlist.parquet", "failures.parquet", "manifest.jsonl"}
    for p in files:
        assert SECRET.encode() not in p.read_bytes(), p
    # Only pandas' schema goes into Parquet metadata.
    import pyarrow.parquet as pq

    for p in out.rglob("*.parquet"):
        assert set(pq.read_schema(p).metadata or {}) <= {b"pandas"}
    # Part files named from ids stay inside their folder, with safe names.
    for p in (out / "_parts" / "hosts").iterdir():
        assert p.parent == out / "_parts" / "hosts" and " " not in p.name and "(" not in p.name
    info = json.loads((out / "run.json").read_text())
    assert "MP_API_KEY" not in json.dumps(info)


# ----------------------------------------------------------------------------- model files
class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


def _model_with_pickled_object(tmp_path: Path) -> tuple[Path, Path]:
    src = default_model_dir()
    d = tmp_path / "evil-model"
    shutil.copytree(src, d)
    meta = json.loads((d / "model.json").read_text())
    if not meta.get("n_members"):
        pytest.skip("the model has no graph weights to replace")
    marker = tmp_path / "code-ran"
    state = torch.load(d / "weights.pt", map_location="cpu", weights_only=True)
    state["member0"]["extra"] = _Payload(marker)
    torch.save(state, d / "weights.pt")
    # An attacker who can replace the weights can also fix up the checksums.
    meta["files"]["weights.pt"] = sha256_file(d / "weights.pt")
    (d / "model.json").write_text(json.dumps(meta))
    return d, marker


@needs_model
def test_model_weights_holding_a_pickled_object_are_refused(tmp_path):
    d, marker = _model_with_pickled_object(tmp_path)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        BandPredictor.load(d)
    assert not marker.exists()


@needs_model
def test_a_run_with_such_a_model_stops_before_any_work(tmp_path, caplog):
    d, marker = _model_with_pickled_object(tmp_path)
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    shutil.copy(catalogue_dir() / "MgCr2O4.cif", hosts / "MgCr2O4.cif")
    out = tmp_path / "out"
    rc = main(["run", "--chemistry", "Mg", "--source", str(hosts), "--sync", "--model", str(d),
               "--out", str(out), "--quiet"])
    assert rc == 2
    assert not marker.exists()
    assert "cannot load the model" in caplog.text
    assert not out.exists()


def test_check_model_wraps_load_errors(tmp_path, monkeypatch):
    from screener.model import predictor

    def boom(*a, **k):
        raise RuntimeError("Weights only load failed.\n\nlong explanation")

    monkeypatch.setattr(predictor, "load_predictor", boom)
    with pytest.raises(ModelLoadError, match="cannot load the model .*Weights only load failed"):
        predictor.check_model(str(tmp_path))


# ----------------------------------------------------------------------------- file names
@pytest.mark.parametrize("name", [
    "../../etc/passwd", "mp-123/../x", "a\x00b", "with space.cif", "", ".", "..", "...",
    "/abs/path", "C:\\windows\\system32", "CON", "nul.txt", "-rf", ".hidden", "x" * 500,
    "Mg₂SiO₄ (olivine).cif", "sub/dir/MgCr2O4.cif",
])
def test_safe_filename_cannot_leave_its_folder(name, tmp_path):
    safe = safe_filename(name)
    assert safe and safe not in {".", ".."}
    assert not safe.startswith((".", "-"))
    assert all(c.isascii() and (c.isalnum() or c in "._+-") for c in safe), safe
    assert len(safe) <= 80
    assert (tmp_path / safe).resolve().parent == tmp_path.resolve()
    (tmp_path / safe).write_text("ok")  # a real, creatable file name


def test_safe_filename_keeps_safe_ids_and_never_merges_two_ids():
    assert safe_filename("mp-1234") == "mp-1234"
    assert safe_filename("MgCr2O4.cif") == "MgCr2O4.cif"
    names = ["a/b", "a_b", "a b", "a\x00b", "a..b", "a_.b", "x" * 200, "x" * 201]
    assert len({safe_filename(n) for n in names}) == len(names)
    assert safe_filename("a/b") == safe_filename("a/b")  # deterministic
