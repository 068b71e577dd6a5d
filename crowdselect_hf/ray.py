"""Scale out on a Ray cluster: the heavy stages as Ray Data ``map_batches`` stages, the global
selection on one node from the scored Parquet (``pip install 'crowdselect-hf[ray]'``).

The stages run the very callables of the ``datasets`` path — :class:`~crowdselect_hf.CrowdGenerator`,
:class:`~crowdselect_hf.RewardScorer`, an embedder and :class:`~crowdselect_hf.CrowdScore` — wrapped in
:class:`RayStage`, which only converts Ray's Arrow batches to what the callable takes and types its
output; no metric is implemented twice. Model stages run on actor pools
(``compute=ray.data.ActorPoolStrategy(...)``, ``num_gpus`` per actor; a crashed actor is restarted and
its batch retried); the per-row metrics run as plain tasks.

Ray may run blocks in any order, so :func:`read_parquet` numbers the input rows in a ``crowd_row``
column (file order, then row order, as ``load_dataset("parquet", ...)`` reads them) that every stage
carries through. :func:`read_scored` restores that order on one node, checks that no row was lost or
duplicated, and :func:`select` then makes the same :class:`~crowdselect_hf.Selection` as
``crowd_select(score(ds), ...)`` on one machine::

    from crowdselect_hf import RewardScorer
    from crowdselect_hf import ray as csray

    csray.init("ray://head:10001")                      # or None: a local instance / $RAY_ADDRESS
    ds = csray.read_parquet("hf://datasets/Magpie-Align/Magpie-100K-Generator-Zoo/data/*.parquet")
    ds = csray.reward_stage(ds, RewardScorer("Skywork/Skywork-Reward-Llama-3.1-8B"), num_gpus=1, actors=8)
    ds = csray.score_stage(ds)
    csray.write_parquet(ds, "s3://bucket/scored")      # or a local/shared folder
    sel = csray.select("s3://bucket/scored", k=1000)   # one node: ids, crowd_* and texts only
    rows = csray.selected_rows("s3://bucket/scored", sel)
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa

from .combine import SelectionError
from .scoring import ARROW_SCHEMA as _SCORE_SCHEMA
from .scoring import COLUMNS as SCORE_COLUMNS

logger = logging.getLogger(__name__)

ROW_COLUMN = "crowd_row"
"""The input position of every row (int64), carried through all stages."""
EMBEDDING_COLUMN = "crowd_embedding"
"""Where :func:`embed_stage` writes the instruction embeddings (fixed-size list of float32)."""
EXTRA = "ray"
INSTALL = "pip install 'crowdselect-hf[ray]'"


# -- Ray itself -------------------------------------------------------------------------------------

def require_ray():
    """The ``ray`` module with Ray Data, or an ``ImportError`` naming the extra to install.

    Example:
        >>> require_ray().__name__  # doctest: +SKIP
        'ray'
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"the Ray engine needs Ray Data ({getattr(e, 'name', None) or e} is missing): {INSTALL}"
        ) from None
    return ray


def init(address: str | None = None, **kwargs: Any):
    """Connect to a Ray cluster (``address``: ``"auto"``, ``"ray://host:10001"``, ``"host:6379"``),
    or start a local instance when ``address`` is ``None`` and ``$RAY_ADDRESS`` is unset. A no-op
    when Ray is already initialised.

    Args:
        address: the cluster address.
        **kwargs: passed to ``ray.init`` (``num_cpus``, ``runtime_env``, ...).

    Example:
        >>> init("auto")  # doctest: +SKIP
    """
    ray = require_ray()
    if not ray.is_initialized():
        kwargs.setdefault("include_dashboard", False)
        kwargs.setdefault("log_to_driver", False)
        ray.init(address=address, **kwargs)
    return ray


# -- reading Parquet with stable row numbers ------------------------------------------------------------

def get_filesystem(path: str):
    """The fsspec filesystem of ``path``: ``huggingface_hub.HfFileSystem`` for ``hf://`` paths,
    otherwise what fsspec resolves (local, ``s3://``, ``gs://`` ...).

    Example:
        >>> type(get_filesystem("/tmp")).__name__
        'LocalFileSystem'
    """
    if str(path).startswith("hf://"):
        from huggingface_hub import HfFileSystem

        return HfFileSystem()
    import fsspec

    return fsspec.core.url_to_fs(str(path))[0]


def _strip(fs, path: str) -> str:
    return fs._strip_protocol(path) if hasattr(fs, "_strip_protocol") else path


def expand_paths(paths: str | Sequence[str], filesystem=None) -> tuple[Any, list[str]]:
    """Files behind ``paths`` (files, folders searched recursively for ``*.parquet``, globs), in
    sorted order within each entry, and their filesystem.

    Example:
        >>> import tempfile, pyarrow.parquet as pq
        >>> d = tempfile.mkdtemp(); pq.write_table(pa.table({"x": [1]}), f"{d}/b.parquet")
        >>> pq.write_table(pa.table({"x": [2]}), f"{d}/a.parquet")
        >>> [os.path.basename(p) for p in expand_paths(d)[1]]
        ['a.parquet', 'b.parquet']
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("no input paths given")
    fs = filesystem or get_filesystem(str(paths[0]))
    files: list[str] = []
    for p in map(str, paths):
        sp = _strip(fs, p)
        if any(c in sp for c in "*?["):
            found = sorted(fs.glob(sp))
        elif fs.isdir(sp):
            found = sorted(f for f in fs.find(sp) if f.endswith(".parquet") and "/." not in f[len(sp):]
                           and "/_" not in f[len(sp):])
        elif fs.exists(sp):
            found = [sp]
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
        if not found:
            raise FileNotFoundError(f"{p}: no Parquet files there")
        files.extend(found)
    return fs, files


def parquet_pieces(paths: str | Sequence[str], filesystem=None) -> tuple[Any, list[dict[str, Any]]]:
    """One piece per Parquet row group — ``{path, row_group, offset, num_rows}`` — with the global
    offset of its first row. Reads only the file footers.

    Example:
        >>> import tempfile, pyarrow.parquet as pq
        >>> d = tempfile.mkdtemp(); pq.write_table(pa.table({"x": list(range(5))}), f"{d}/a.parquet", row_group_size=2)
        >>> [(p["row_group"], p["offset"], p["num_rows"]) for p in parquet_pieces(d)[1]]
        [(0, 0, 2), (1, 2, 2), (2, 4, 1)]
    """
    import pyarrow.parquet as pq

    fs, files = expand_paths(paths, filesystem)
    pieces, offset = [], 0
    for f in files:
        with fs.open(f, "rb") as handle:
            meta = pq.ParquetFile(handle).metadata
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if n:
                pieces.append({"path": f, "row_group": g, "offset": offset, "num_rows": n})
            offset += n
    if offset == 0:
        raise ValueError(f"{paths}: the Parquet files hold no rows")
    return fs, pieces


class ReadPieces:
    """Reads row groups listed by :func:`parquet_pieces` and numbers their rows (``crowd_row``).

    Files that already hold ``crowd_row`` (the output of an earlier Ray run, whose file order
    says nothing) keep it, so ``reward`` → ``score`` → ``select`` across runs stays in the
    order of the very first input.

    Args:
        filesystem: the fsspec filesystem (pickled to the workers).
        columns: the columns to read (default all).
    """

    def __init__(self, filesystem, columns: Sequence[str] | None = None):
        self.filesystem = filesystem
        self.columns = list(columns) if columns is not None else None

    def __call__(self, pieces: pa.Table) -> Iterable[pa.Table]:
        import pyarrow.parquet as pq

        for p in pieces.to_pylist():
            with self.filesystem.open(p["path"], "rb") as handle:
                table = pq.ParquetFile(handle).read_row_group(p["row_group"], columns=self.columns)
            if table.num_rows != p["num_rows"]:
                raise OSError(f"{p['path']} row group {p['row_group']}: read {table.num_rows} rows, "
                              f"the footer says {p['num_rows']}")
            if ROW_COLUMN in table.column_names:  # our own output, read again: keep the first numbering
                yield table
                continue
            rows = pa.array(np.arange(p["offset"], p["offset"] + table.num_rows, dtype=np.int64))
            yield table.append_column(ROW_COLUMN, rows)


def read_parquet(paths: str | Sequence[str], *, filesystem=None, columns: Sequence[str] | None = None):
    """A Ray ``Dataset`` of Parquet rows with their input position in ``crowd_row``.

    Args:
        paths: files, folders or globs: local, ``hf://datasets/<org>/<name>/...`` (read through
            ``huggingface_hub.HfFileSystem``, which honours ``HF_TOKEN``), or any fsspec URL.
        filesystem: an fsspec filesystem to use instead.
        columns: the columns to read (default all).

    Example:
        >>> ds = read_parquet("hf://datasets/Magpie-Align/Magpie-100K-Generator-Zoo/data/*.parquet")  # doctest: +SKIP
    """
    ray = require_ray()
    fs, pieces = parquet_pieces(paths, filesystem)
    items = ray.data.from_items(pieces, override_num_blocks=len(pieces))
    return items.map_batches(ReadPieces(fs, columns), batch_size=1, batch_format="pyarrow")


# -- adapters: Ray's Arrow batches ↔ the callables ---------------------------------------------------------

def _replace_columns(table: pa.Table, new: pa.Table, drop: Iterable[str] = ()) -> pa.Table:
    """``table`` with ``new``'s columns replacing same-named ones (in place) or appended."""
    stale = [c for c in drop if c in table.column_names and c not in new.column_names]
    if stale:
        table = table.drop(stale)
    for name in new.column_names:
        column, field = new.column(name), new.schema.field(name)
        i = table.schema.get_field_index(name)
        table = table.set_column(i, field, column) if i >= 0 else table.append_column(field, column)
    return table


def score_batch(fn: Callable, table: pa.Table) -> pa.Table:
    """Adapter for :class:`~crowdselect_hf.CrowdScore`: the Arrow batch in, the ``crowd_*``
    columns (typed as ``score()`` types them) attached, stale ones replaced."""
    out = fn(table)
    new = pa.Table.from_pydict({c: out[c] for c in SCORE_COLUMNS}, schema=_SCORE_SCHEMA)
    return _replace_columns(table, new, drop=SCORE_COLUMNS)


def python_batch(fn: Callable, table: pa.Table) -> pa.Table:
    """Adapter for ``ds.map(fn, batched=True)`` callables with ``output_features`` —
    :class:`~crowdselect_hf.RewardScorer`, :class:`~crowdselect_hf.CrowdGenerator`: the batch as a
    dict of Python lists (what ``datasets`` passes), the returned columns typed with
    ``fn.output_features`` (what ``reward_dataset``/``generate_dataset`` pass as ``features=``)."""
    import datasets

    out = fn(table.to_pydict())
    features = fn.output_features(datasets.Features.from_arrow_schema(table.schema))
    schema = features.arrow_schema
    new = pa.Table.from_pydict({c: out[c] for c in out}, schema=pa.schema([schema.field(c) for c in out]))
    return _replace_columns(table, new)


class EmbedBatch:
    """Adapter for an embedder: ``embedder.embed(texts)`` of ``text_column`` into ``column``.

    Args:
        text_column: the instruction column.
        column: the output column (a fixed-size list of float32).
    """

    def __init__(self, text_column: str = "instruction", column: str = EMBEDDING_COLUMN):
        self.text_column = text_column
        self.column = column

    def __call__(self, embedder: Any, table: pa.Table) -> pa.Table:
        from .embeddings import l2_normalise

        if self.text_column not in table.column_names:
            raise SelectionError(f"no text column {self.text_column!r} to embed; columns are: {table.column_names}")
        texts = table.column(self.text_column).to_pylist()
        X = l2_normalise(embedder.embed(texts), f"embeddings of {embedder.name}")
        if X.shape[0] != len(texts):
            raise SelectionError(f"embedder {embedder.name!r} returned {X.shape[0]} rows for {len(texts)} texts")
        flat = pa.array(np.ascontiguousarray(X, dtype=np.float32).reshape(-1))
        vectors = pa.FixedSizeListArray.from_arrays(flat, X.shape[1])
        return _replace_columns(table, pa.table({self.column: vectors}))


class RayStage:
    """The callable Ray runs: ``adapter(fn, batch)``, with ``fn`` one of the package's map
    callables (its pickled state is its configuration; models load lazily, once per actor).

    Args:
        fn: the callable (``CrowdScore``, ``RewardScorer``, ``CrowdGenerator``, an embedder).
        adapter: ``(fn, pyarrow.Table) -> pyarrow.Table`` (:func:`score_batch`,
            :func:`python_batch`, :class:`EmbedBatch`).

    Example:
        >>> from crowdselect_hf import CrowdScore
        >>> t = pa.table({"instruction": ["Say hi."], "m-1b": [{"content": "hi", "r": 0.1}],
        ...               "m-7b": [{"content": "Hi!", "r": 0.9}]})
        >>> RayStage(CrowdScore(), score_batch)(t).column("crowd_best_model").to_pylist()
        ['m-7b']
    """

    def __init__(self, fn: Callable, adapter: Callable[[Callable, pa.Table], pa.Table]):
        self.fn = fn
        self.adapter = adapter

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.adapter(self.fn, batch)


# -- stages ---------------------------------------------------------------------------------------------

def _cluster_gpus() -> int:
    ray = require_ray()
    return int(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0


def map_stage(ds, fn: Callable, adapter: Callable, *, batch_size: int = 256, actors: int | tuple[int, int] | None = None,
              num_gpus: float | None = None, num_cpus: float | None = None, max_restarts: int = 3,
              max_task_retries: int = 3, **ray_remote_args: Any):
    """Add a ``map_batches`` stage running ``adapter(fn, batch)`` on Arrow batches.

    Args:
        ds: a Ray ``Dataset`` (from :func:`read_parquet`).
        fn, adapter: see :class:`RayStage`.
        batch_size: rows per call.
        actors: ``None`` runs Ray tasks (stateless, cheap stages); an int (fixed pool) or
            ``(min, max)`` (autoscaling pool) runs ``compute=ray.data.ActorPoolStrategy(...)``
            actors that keep their model loaded between batches.
        num_gpus, num_cpus: per task or actor.
        max_restarts, max_task_retries: actor fault tolerance: a crashed actor (a lost node, an
            OOM-killed process) is restarted up to ``max_restarts`` times and its in-flight batch
            retried up to ``max_task_retries`` times, so no row is lost and none duplicated
            (``-1``: without limit, Ray Data's own default). Tasks (``actors=None``) are retried
            by Ray Data's defaults.
        **ray_remote_args: other ``map_batches`` remote options (``memory``, ``resources``,
            ``accelerator_type``, ``runtime_env`` ...).

    Example:
        >>> ds = map_stage(ds, scorer, python_batch, actors=4, num_gpus=1)  # doctest: +SKIP
    """
    ray = require_ray()
    stage = RayStage(fn, adapter)
    kwargs: dict[str, Any] = dict(batch_size=batch_size, batch_format="pyarrow", zero_copy_batch=True, **ray_remote_args)
    if num_gpus:
        kwargs["num_gpus"] = num_gpus
    if num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    if actors is None:
        return ds.map_batches(stage, **kwargs)
    lo, hi = (actors, actors) if isinstance(actors, int) else actors
    if not (1 <= lo <= hi):
        raise ValueError(f"actors must be a positive int or (min, max) with 1 <= min <= max, got {actors!r}")
    with warnings.catch_warnings():
        # Ray 2.60 deprecates free-form remote args but has no named parameter for these two yet.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return ds.map_batches(RayStage, fn_constructor_kwargs={"fn": fn, "adapter": adapter},
                              compute=ray.data.ActorPoolStrategy(min_size=lo, max_size=hi),
                              max_restarts=max_restarts, max_task_retries=max_task_retries, **kwargs)


def _model_pool(actors, num_gpus) -> tuple[Any, float | None]:
    """Default pool for a model stage: one actor per GPU of the cluster, else one CPU actor."""
    if num_gpus is None:
        num_gpus = 1 if _cluster_gpus() else None
    if actors is None:
        actors = (1, max(1, int(_cluster_gpus() // num_gpus))) if num_gpus else 1
    return actors, num_gpus


def score_stage(ds, scorer: Any = None, *, batch_size: int = 4096, actors: int | tuple[int, int] | None = None, **kwargs: Any):
    """Add the ``crowd_*`` columns with :class:`~crowdselect_hf.CrowdScore` (Ray tasks by default).

    Args:
        ds: a Ray ``Dataset``.
        scorer: a ``CrowdScore`` (default: ``CrowdScore()``, which infers the crowd).
        batch_size, actors, kwargs: see :func:`map_stage`.

    Example:
        >>> ds = score_stage(ds, CrowdScore(crowd=Crowd.preset("magpie-100k-generator-zoo")))  # doctest: +SKIP
    """
    from .scoring import CrowdScore

    return map_stage(ds, scorer if scorer is not None else CrowdScore(), score_batch, batch_size=batch_size,
                     actors=actors, **kwargs)


def reward_stage(ds, scorer: Any, *, batch_size: int = 256, actors: int | tuple[int, int] | None = None,
                 num_gpus: float | None = None, **kwargs: Any):
    """Write a reward model's score into every member with :class:`~crowdselect_hf.RewardScorer`
    on an actor pool (default: one actor per cluster GPU, ``num_gpus=1`` each; one CPU actor on a
    cluster without GPUs).

    Example:
        >>> ds = reward_stage(ds, RewardScorer("Skywork/Skywork-Reward-Llama-3.1-8B", batch_size=16), actors=8)  # doctest: +SKIP
    """
    actors, num_gpus = _model_pool(actors, num_gpus)
    return map_stage(ds, scorer, python_batch, batch_size=batch_size, actors=actors, num_gpus=num_gpus, **kwargs)


def split_generator(generator: Any) -> list[Any]:
    """One :class:`~crowdselect_hf.CrowdGenerator` per model (same configuration), so each model
    gets its own actor pool and only one model sits in an actor's memory.

    Example:
        >>> from crowdselect_hf import CrowdGenerator
        >>> gen = CrowdGenerator(["a-1b", "a-7b"], base_url="http://localhost:8000/v1")  # doctest: +SKIP
        >>> [g.models[0].name for g in split_generator(gen)]  # doctest: +SKIP
        ['a-1b', 'a-7b']
    """
    state = generator.__getstate__()
    out = []
    for i, m in enumerate(state["models"]):
        g = type(generator).__new__(type(generator))
        g.__setstate__({**state, "models": [m], "identity": [state["identity"][i]]})
        out.append(g)
    return out


def generate_stage(ds, generator: Any, *, batch_size: int = 64, actors: int | tuple[int, int] | None = None,
                   num_gpus: float | None = None, **kwargs: Any):
    """Answer every instruction with each model of a :class:`~crowdselect_hf.CrowdGenerator`,
    one actor-pool stage per model (pipelined). With ``base_url`` (a served model) the actors
    need no GPU: pass ``num_gpus=0``.

    Example:
        >>> ds = generate_stage(ds, CrowdGenerator(["Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-7B-Instruct"]))  # doctest: +SKIP
    """
    if generator.config.backend == "openai" and num_gpus is None:
        num_gpus = 0
    actors, num_gpus = _model_pool(actors, num_gpus)
    for g in split_generator(generator):
        ds = map_stage(ds, g, python_batch, batch_size=batch_size, actors=actors, num_gpus=num_gpus or None, **kwargs)
    return ds


def embed_stage(ds, embedder: Any, *, text_column: str = "instruction", column: str = EMBEDDING_COLUMN,
                batch_size: int = 1024, actors: int | tuple[int, int] | None = None, num_gpus: float | None = None,
                **kwargs: Any):
    """Embed the instructions into ``crowd_embedding`` with a per-text embedder (a transformer;
    ``"minilm"``, a folder or Hub id, or an object with ``name`` and ``embed``).

    ``"tfidf"`` is fitted on the whole pool, so it cannot run per batch: leave this stage out and
    :func:`select` embeds on one node (instruction texts only).

    Example:
        >>> ds = embed_stage(ds, "minilm", actors=2)  # doctest: +SKIP
    """
    from .embeddings import ColumnEmbedder, TfidfEmbedder, get_embedder

    emb = get_embedder(embedder)
    if isinstance(emb, (TfidfEmbedder, ColumnEmbedder)) or not hasattr(emb, "embed"):
        raise ValueError(f"embedder {emb.name!r} is fitted on (or read from) the whole pool and cannot run per batch; "
                         "skip embed_stage and let select() embed on one node")
    if hasattr(emb, "progress"):
        emb.progress = False
    actors, num_gpus = _model_pool(actors, num_gpus)
    return map_stage(ds, emb, EmbedBatch(text_column, column), batch_size=batch_size, actors=actors, num_gpus=num_gpus,
                     **kwargs)


# -- writing and reading back -------------------------------------------------------------------------

def write_parquet(ds, path: str, *, filesystem=None, overwrite: bool = False, **kwargs: Any) -> str:
    """Run the pipeline and write its rows as Parquet files under the folder ``path`` (every row
    keyed by ``crowd_id`` and numbered by ``crowd_row``). Refuses a non-empty folder unless
    ``overwrite`` (files of two runs would mix).

    Example:
        >>> write_parquet(ds, "/shared/scored")  # doctest: +SKIP
    """
    fs = filesystem or get_filesystem(path)
    sp = _strip(fs, path)
    if fs.exists(sp) and (not fs.isdir(sp) or fs.ls(sp)):
        if not overwrite:
            raise FileExistsError(f"{path} exists and is not empty; pass --overwrite (the overwrite argument in Python) or choose another folder")
        fs.rm(sp, recursive=True)
    from fsspec.implementations.local import LocalFileSystem
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    if isinstance(fs, LocalFileSystem):
        ds.write_parquet(os.path.abspath(sp), **kwargs)
    else:
        ds.write_parquet(sp, filesystem=PyFileSystem(FSSpecHandler(fs)), **kwargs)
    return path


def read_scored(path: str | Sequence[str], *, filesystem=None, columns: Sequence[str] = (),
                embedding_column: str | None = EMBEDDING_COLUMN):
    """Read back, on one node, what the selection needs from scored Parquet: ``crowd_row``, the
    ``crowd_*`` columns, the requested ``columns`` (e.g. the instruction, for ``"tfidf"``) and the
    embeddings when present — sorted into input order and checked (each row exactly once).

    Returns:
        ``(dataset, embeddings)``: a compact ``datasets.Dataset`` in input order, and a float32
        ``[n, d]`` matrix (``None`` without an embedding column).

    Example:
        >>> ds, X = read_scored("/shared/scored", columns=["instruction"])  # doctest: +SKIP
    """
    import datasets
    import pyarrow.dataset as pads
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, files = expand_paths(path, filesystem)
    source = pads.dataset(files, format="parquet", filesystem=PyFileSystem(FSSpecHandler(fs)))
    names = source.schema.names
    missing = [c for c in (ROW_COLUMN, *SCORE_COLUMNS, *columns) if c not in names]
    if missing:
        raise SelectionError(f"{path}: the scored Parquet lacks {missing}; run the Ray pipeline with score_stage "
                             "(after read_parquet, which numbers the rows) first")
    wanted = [ROW_COLUMN, *SCORE_COLUMNS, *[c for c in columns if c not in SCORE_COLUMNS]]
    has_emb = embedding_column is not None and embedding_column in names
    table = source.to_table(columns=wanted + ([embedding_column] if has_emb else []))
    table = table.sort_by(ROW_COLUMN)
    rows = table.column(ROW_COLUMN).to_numpy()
    if len(rows) == 0:
        raise SelectionError(f"{path}: the scored Parquet holds no rows")
    if rows[0] != 0 or rows[-1] != len(rows) - 1 or (len(rows) > 1 and (np.diff(rows) != 1).any()):
        dup = int(rows[np.flatnonzero(np.diff(rows) == 0)[0]]) if (np.diff(rows) == 0).any() else None
        raise SelectionError(f"{path}: crowd_row is not 0..n-1 exactly once each ({len(rows)} rows, last {int(rows[-1])}"
                             + (f", row {dup} twice" if dup is not None else ", rows missing") + "); mixed or partial outputs?")
    X = None
    if has_emb:
        col = table.column(embedding_column).combine_chunks()
        X = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(col), -1)
        table = table.drop([embedding_column])
    return datasets.Dataset(datasets.table.InMemoryTable(table)), X


def select(path: str | Sequence[str], k: int, *, filesystem=None, text_column: str = "instruction",
           embedder: Any = "tfidf", **options: Any):
    """The global selection on one node from scored Parquet: the same
    :class:`~crowdselect_hf.Selection` as ``crowd_select(score(ds), k, ...)`` over the input
    rows (``sel.indices`` are input positions, ``crowd_row``).

    Embeddings written by :func:`embed_stage` are used when present; otherwise ``embedder`` runs
    here over the instruction texts (the only text read).

    Args:
        path: the folder written by :func:`write_parquet`.
        k, embedder, options: as :func:`~crowdselect_hf.crowd_select` (``n_clusters``, ``weights``,
            ``seed``, ``strategy``, ...).
        text_column: the instruction column.

    Example:
        >>> sel = select("/shared/scored", k=1000)  # doctest: +SKIP
    """
    from .selection import crowd_select

    ds, X = read_scored(path, filesystem=filesystem, columns=[text_column])
    return crowd_select(ds, k, embedder=embedder, embeddings=X, text_column=text_column, **options)


def selected_rows(path: str | Sequence[str], selection: Any, *, filesystem=None, columns: Sequence[str] | None = None):
    """The full rows of a selection, read from the scored Parquet in input order (a
    ``datasets.Dataset`` ready for :func:`~crowdselect_hf.to_sft`).

    Example:
        >>> curated = to_sft(selected_rows("/shared/scored", sel))  # doctest: +SKIP
    """
    import datasets
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, files = expand_paths(path, filesystem)
    source = pads.dataset(files, format="parquet", filesystem=PyFileSystem(FSSpecHandler(fs)))
    wanted = pa.array(np.asarray(selection.indices, dtype=np.int64))
    table = source.to_table(columns=list(columns) if columns is not None else None,
                            filter=pc.is_in(pc.field(ROW_COLUMN), value_set=wanted))
    table = table.sort_by(ROW_COLUMN)
    if table.num_rows != len(wanted):
        raise SelectionError(f"{path}: found {table.num_rows} of the {len(wanted)} selected rows")
    drop = [c for c in (ROW_COLUMN, EMBEDDING_COLUMN) if c in table.column_names]
    return datasets.Dataset(datasets.table.InMemoryTable(table.drop(drop)))


def run(inputs: str | Sequence[str], out: str, *, generator: Any = None, reward_scorer: Any = None,
        scorer: Any = None, embedder: Any = None, overwrite: bool = False, **stage_options: Any) -> str:
    """Read → (generate) → (reward) → score → (embed) → write: the whole distributed part.

    Args:
        inputs: Parquet paths for :func:`read_parquet`.
        out: the output folder.
        generator, reward_scorer, scorer, embedder: the callables of the optional stages.
        overwrite: replace a non-empty ``out``.
        stage_options: per stage, e.g. ``reward={"actors": 8}``, ``generate={...}``, ``embed={...}``, ``score={...}``.

    Example:
        >>> run("hf://datasets/me/pool/*.parquet", "/shared/scored", reward_scorer=RewardScorer("me/rm"))  # doctest: +SKIP
    """
    unknown = set(stage_options) - {"generate", "reward", "score", "embed", "read"}
    if unknown:
        raise TypeError(f"unknown stage option(s) {sorted(unknown)}; use generate=, reward=, score=, embed=, read=")
    ds = read_parquet(inputs, **stage_options.get("read", {}))
    if generator is not None:
        ds = generate_stage(ds, generator, **stage_options.get("generate", {}))
    if reward_scorer is not None:
        ds = reward_stage(ds, reward_scorer, **stage_options.get("reward", {}))
    ds = score_stage(ds, scorer, **stage_options.get("score", {}))
    if embedder is not None:
        ds = embed_stage(ds, embedder, **stage_options.get("embed", {}))
    return write_parquet(ds, out, overwrite=overwrite)
