"""Training smoke test (2 epochs, ~20 entries) and the evaluate command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from screener.cli.main import main
from screener.core.errors import ModelLoadError
from screener.model.predictor import BandPredictor
from tests.helpers_dataset import dataset_records


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained for 2 epochs on 20 entries with 2 folds through the CLI."""
    d = tmp_path_factory.mktemp("train")
    data = d / "small.json"
    data.write_text(json.dumps(dataset_records(20)))
    out = d / "model"
    rc = main(["train", "--data", str(data), "--out", str(out), "--folds", "2", "--epochs", "2",
               "--threads", "1", "--name", "smoke"])
    assert rc == 0
    return data, out


def test_training_writes_a_loadable_model(trained):
    data, out = trained
    for name in ["model.json", "weights.pt", "MODEL_CARD.md", "cv_metrics.json", "oof_predictions.csv",
                 "trees_0.npz", "trees_1.npz"]:
        assert (out / name).exists(), name
    meta = json.loads((out / "model.json").read_text())
    assert meta["n_members"] == 2 and meta["n_tree_models"] == 2  # 2 folds x extra-trees
    assert 0.0 <= meta["graph_weight"] <= 1.0
    # the reported blend uses, on each fold, the weight chosen on the other fold
    cv = meta["cv"]
    assert len(cv["graph_weight_per_fold"]) == 2
    assert "trees_only" in cv and "graph_only" in cv
    history = json.loads((out / "folds" / "fold0_history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    oof = pd.read_csv(out / "oof_predictions.csv")
    assert len(oof) == 20 and oof["pred"].notna().all()
    p = BandPredictor.load(out)
    from screener.training.dataset import read_entries

    bands = [e.band for e in read_entries(data)[:3]]
    pred = p.predict(bands)
    assert np.all(np.isfinite(pred.em)) and np.all(pred.em >= 0)
    assert np.all(np.isfinite(pred.uncertainty)) and np.all(pred.uncertainty >= 0)


def test_training_is_seeded(trained, tmp_path):
    data, out = trained
    rc = main(["train", "--data", str(data), "--out", str(tmp_path / "again"), "--folds", "2",
               "--epochs", "2", "--threads", "1", "--no-trees"])
    assert rc == 0
    a = pd.read_csv(out / "oof_predictions.csv")["pred_graph"].to_numpy()
    b = pd.read_csv(tmp_path / "again" / "oof_predictions.csv")["pred_graph"].to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_tampered_weights_are_refused(trained, tmp_path):
    _, out = trained
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with open(copy / "weights.pt", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelLoadError, match="checksum"):
        BandPredictor.load(copy)


def test_evaluate_writes_rows_and_error_rows(trained, tmp_path, capsys):
    data, out = trained
    recs = json.loads(data.read_text())[:4]
    recs.append({"jid": "broken", "atoms": {"lattice_mat": "nope"}})
    recs.append({"jid": "nothing"})
    f = tmp_path / "eval.json"
    f.write_text(json.dumps(recs))
    csv = tmp_path / "pred.csv"
    rc = main(["evaluate", "--data", str(f), "--model", str(out), "--out", str(csv)])
    assert rc == 3  # finished, some entries failed
    df = pd.read_csv(csv, keep_default_na=False)
    assert list(df.columns) == ["jid", "predicted_em_eV", "uncertainty_eV", "target_em_eV", "error"]
    assert len(df) == 6
    ok = df[df["error"] == ""]
    assert len(ok) == 4
    assert np.isfinite(ok["predicted_em_eV"].astype(float)).all()
    bad = df[df["error"] != ""]
    assert set(bad["jid"].astype(str)) == {"broken", "nothing"}
    printed = capsys.readouterr().out
    assert '"mae"' in printed


def test_evaluate_without_targets_has_no_target_column(trained, tmp_path):
    data, out = trained
    recs = json.loads(data.read_text())[:2]
    for r in recs:
        r.pop("target")
    f = tmp_path / "notarget.json"
    f.write_text(json.dumps(recs))
    csv = tmp_path / "pred.csv"
    assert main(["evaluate", "--data", str(f), "--model", str(out), "--out", str(csv)]) == 0
    df = pd.read_csv(csv)
    assert "target_em_eV" not in df.columns
    assert {"jid", "predicted_em_eV", "uncertainty_eV"} <= set(df.columns)
