"""The demo pool shipped with the package: a small synthetic crowd table for offline demos.

``data/demo_pool.parquet`` holds 903 instructions answered by 12 fictional models of four
families and scored by a made-up reward (``demo-reward``); ``data/demo_pool.md`` says how it was
generated (``dataset_scripts/make_demo_pool.py``) and which policy cases it contains on purpose.
It holds no third-party data (Apache-2.0, like the project).
"""

from __future__ import annotations

from importlib import resources

import datasets
import pyarrow.parquet as pq

from .crowd import Crowd, Member, parse_model_name

DEMO_REWARD = "demo-reward"
_RESOURCE = "data/demo_pool.parquet"


def _read(reader):
    ref = resources.files(__package__).joinpath(_RESOURCE)
    if not ref.is_file():
        raise FileNotFoundError(
            f"the packaged demo pool {_RESOURCE!r} is missing from crowdselect_hf; reinstall the package, or rebuild it "
            "with `python dataset_scripts/make_demo_pool.py --out crowdselect_hf/data/demo_pool.parquet`"
        )
    with resources.as_file(ref) as path:
        return reader(path)


def demo_pool() -> datasets.Dataset:
    """The demo crowd table as an in-memory ``datasets.Dataset`` (split ``train``).

    Columns ``uuid``, ``instruction`` and one struct ``{"content", "demo-reward"}`` per model.

    Example:
        >>> ds = demo_pool()
        >>> ds.num_rows, ds.column_names[:3]
        (903, ['uuid', 'instruction', 'Acme-1B-Chat'])
        >>> sorted(ds.features["Acme-7B-Chat"])
        ['content', 'demo-reward']
    """
    table = _read(pq.read_table)
    info = datasets.DatasetInfo(
        description="CrowdSelect demo pool: synthetic instructions, responses of 12 fictional models, a made-up reward.",
        license="apache-2.0",
        features=datasets.Features.from_arrow_schema(table.schema),
    )
    return datasets.Dataset(table, info=info, split=datasets.Split.TRAIN)


def demo_crowd() -> Crowd:
    """The crowd of the demo pool: its 12 models (family and size read from their names) and
    the reward ``demo-reward``.

    Example:
        >>> crowd = demo_crowd()
        >>> len(crowd), crowd.reward
        (12, 'demo-reward')
        >>> crowd.families["dune-it"]
        ['Dune-8B-It', 'Dune-70B-It']
    """
    schema = _read(pq.read_schema)
    members = []
    for name in schema.names:
        if name in ("uuid", "instruction"):
            continue
        family, size = parse_model_name(name)
        members.append(Member(name, family, size))
    return Crowd(members=tuple(members), reward=DEMO_REWARD)
