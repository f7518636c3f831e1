"""A plain (non-editable) install is a working screener: package data, version, the main job."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pandas as pd
import pytest
import tomllib

import screener
from screener.sources.bundled import load_catalogue

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_in_pyproject():
    setuptools = PYPROJECT["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for pkg in ("screener", "pipelines")
             for p in (REPO / pkg).rglob("__init__.py")}
    assert found | {"screener.assets"} == listed
    assert setuptools["package-dir"]["screener.assets"] == "data"


def test_version_comes_from_the_installed_metadata():
    assert screener.__version__ == importlib.metadata.version("screener") == PYPROJECT["project"]["version"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A wheel of this checkout installed into a fresh virtual environment (dependencies shared)."""
    tmp = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(REPO)]
    if importlib.util.find_spec("setuptools") is not None:
        build.insert(4, "--no-build-isolation")
    subprocess.run(build, check=True, capture_output=True, text=True)
    wheel = next((tmp / "dist").glob("screener-*.whl"))
    env_dir = tmp / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, text=True)
    return python


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SCREENER_MODEL_DIR")}


def test_the_wheel_carries_hosts_and_model_as_package_data(installed, tmp_path):
    code = ("import json, screener; from screener.core.assets import assets_dir; "
            "from screener.model.registry import default_model_dir; "
            "print(json.dumps([screener.__file__, str(assets_dir()), str(default_model_dir())]))")
    out = subprocess.run([str(installed), "-c", code], cwd=tmp_path, env=_clean_env(), check=True,
                         capture_output=True, text=True).stdout
    module, assets, model = (Path(p) for p in json.loads(out))
    venv_root = installed.parent.parent
    assert venv_root in module.parents and venv_root in assets.parents  # not the checkout
    assert (assets / "hosts" / "catalogue.json").is_file()
    assert (model / "model.json").is_file() and model.parent == assets / "models"


def test_the_installed_package_runs_the_main_job_from_another_folder(installed, tmp_path):
    proc = subprocess.run([str(installed), "-m", "screener", "run", "--chemistry", "Mg", "--sync", "--quiet",
                           "--out", "out"], cwd=tmp_path, env={**_clean_env(), "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    structures = pd.read_parquet(tmp_path / "out" / "structures.parquet")
    hops = pd.read_parquet(tmp_path / "out" / "hops.parquet")
    assert sorted(structures["material_id"]) == sorted(r.material_id for r in load_catalogue("Mg"))
    assert hops["predicted_em_eV"].notna().all() and len(hops) > len(structures)
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert info["screener_version"] == screener.__version__ and info["model_version"].startswith("em-band@")


def test_importing_screener_loads_neither_torch_nor_pymatgen_until_a_name_is_used():
    code = ("import sys, screener; light = not {'torch', 'pymatgen.core'} & set(sys.modules); "
            "screener.PathwayConfig; print(light, 'pymatgen.core' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]
