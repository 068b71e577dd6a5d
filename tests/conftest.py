"""Shared fixtures: caches redirected to temporary folders, no network, and the real crowd table
of ``../shared/data/alpaca_zoo`` (read in place, never copied into the project)."""

import os
import tempfile
from pathlib import Path

# Before datasets/huggingface_hub are imported anywhere: no network, caches in a temp folder.
_CACHE_ROOT = tempfile.mkdtemp(prefix="crowdselect-test-cache-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ["HF_HOME"] = os.path.join(_CACHE_ROOT, "hf")
os.environ["HF_DATASETS_CACHE"] = os.path.join(_CACHE_ROOT, "datasets")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CROWDSELECT_SHARED", ROOT.parent / "shared"))
ZOO_DIR = SHARED / "data" / "alpaca_zoo"
ZOO_REWARD = "weighted_alpaca_eval_gpt4_turbo"


@pytest.fixture(autouse=True)
def _test_cache(tmp_path_factory, monkeypatch):
    """Every test writes datasets' cache under its own temporary folder."""
    import datasets.config

    cache = tmp_path_factory.mktemp("datasets-cache")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)


@pytest.fixture(scope="session")
def zoo_dir() -> Path:
    if not (ZOO_DIR / "zoo.parquet").exists():
        # Non-commercial data, never copied into the repository: its tests are extra coverage
        # where the workspace (or CROWDSELECT_SHARED) provides it, as CI does.
        pytest.skip(f"the AlpacaEval crowd table is not here ({ZOO_DIR}; set CROWDSELECT_SHARED to run these tests)")
    return ZOO_DIR


@pytest.fixture(scope="session")
def zoo_crowd(zoo_dir):
    from crowdselect_hf import Crowd

    return Crowd.from_file(zoo_dir / "models.json", reward=ZOO_REWARD)


@pytest.fixture(scope="session")
def zoo_ds(zoo_dir, tmp_path_factory):
    """The 805 × 15 AlpacaEval crowd table as a cache-file-backed ``Dataset``."""
    import datasets

    cache = tmp_path_factory.mktemp("zoo-load")
    return datasets.load_dataset("parquet", data_files=str(zoo_dir / "zoo.parquet"), split="train", cache_dir=str(cache))


@pytest.fixture(scope="session")
def zoo_scored(zoo_ds, zoo_crowd):
    """``zoo_ds`` with the ``crowd_*`` columns (fast path)."""
    from crowdselect_hf import score

    return score(zoo_ds, crowd=zoo_crowd)
