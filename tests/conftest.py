"""Shared fixtures: caches redirected to temporary folders, no network, and two real crowd tables.

- ``gsm_*``: the ZeroEval GSM8K subset shipped in ``tests/data/zeroeval_gsm`` (Apache-2.0; 360
  questions × 16 open-weight models, 0/1 scores). Always present.
- ``zoo_*``: the AlpacaEval table of ``../shared/data/alpaca_zoo`` (non-commercial: read in place,
  never copied into the project). Its tests skip, with the reason, where it is absent.
- ``real_table``: both, for tests that hold on any real crowd table.

Every test that uses one of these fixtures is marked ``real_data``; those that read the AlpacaEval
table (a ``zoo_*`` fixture, or ``real_table`` on it) are also marked ``shared_data``: exactly the
tests whose outcome can depend on where ``../shared`` is, since only these fixtures locate it
(tests/test_repository.py checks both facts). ``.ci/run`` runs ``-m shared_data`` again with
``CROWDSELECT_SHARED`` pointing at an empty folder, as on a plain clone: each must skip, with its
reason, and none may error.
"""

import os
import tempfile
from dataclasses import dataclass
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
GSM_DIR = ROOT / "tests" / "data" / "zeroeval_gsm"
GSM_REWARD = "correct"


def reads_real_data(fixturenames) -> bool:
    """Whether a test with these fixtures reads a real crowd table."""
    return any(n == "real_table" or n.startswith(("gsm_", "zoo_")) for n in fixturenames)


def reads_shared_data(fixturenames, params) -> bool:
    """Whether a test with these fixtures (and parameters) reads the AlpacaEval table of ../shared."""
    return any(n.startswith("zoo_") for n in fixturenames) or (
        "real_table" in fixturenames and params.get("real_table") == "alpaca_zoo")


def pytest_configure(config):
    config.addinivalue_line("markers", "real_data: reads a real crowd table (gsm_*, zoo_*, real_table; set by tests/conftest.py)")
    config.addinivalue_line("markers", "shared_data: reads the AlpacaEval table of ../shared (zoo_*, real_table[alpaca_zoo])")


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if reads_real_data(fixtures):
            item.add_marker(pytest.mark.real_data)
        if reads_shared_data(fixtures, getattr(getattr(item, "callspec", None), "params", {})):
            item.add_marker(pytest.mark.shared_data)


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


@pytest.fixture(scope="session")
def gsm_dir() -> Path:
    return GSM_DIR


@pytest.fixture(scope="session")
def gsm_crowd():
    from crowdselect_hf import Crowd

    return Crowd.from_file(GSM_DIR / "models.json", reward=GSM_REWARD)


@pytest.fixture(scope="session")
def gsm_ds(tmp_path_factory):
    """The shipped 360 × 16 GSM8K crowd table as a cache-file-backed ``Dataset``."""
    import datasets

    cache = tmp_path_factory.mktemp("gsm-load")
    return datasets.load_dataset("parquet", data_files=str(GSM_DIR / "zoo.parquet"), split="train", cache_dir=str(cache))


@pytest.fixture(scope="session")
def gsm_scored(gsm_ds, gsm_crowd):
    """``gsm_ds`` with the ``crowd_*`` columns (fast path)."""
    from crowdselect_hf import score

    return score(gsm_ds, crowd=gsm_crowd)


@dataclass(frozen=True)
class RealTable:
    """One real crowd table with what tests need to know about it."""

    name: str
    dir: Path
    reward: str
    ds: object
    crowd: object
    scored: object


@pytest.fixture(scope="session", params=["zeroeval_gsm", "alpaca_zoo"])
def real_table(request) -> RealTable:
    """Each real crowd table in turn: the shipped GSM8K subset, then AlpacaEval where present."""
    prefix, reward = ("gsm", GSM_REWARD) if request.param == "zeroeval_gsm" else ("zoo", ZOO_REWARD)
    get = request.getfixturevalue
    return RealTable(request.param, get(f"{prefix}_dir"), reward, get(f"{prefix}_ds"), get(f"{prefix}_crowd"), get(f"{prefix}_scored"))
