"""One pipeline from a crowd table to a curated set: score → select → format → save → report → push.

``crowdselect select``, ``crowdselect demo``, ``crowdselect build`` (recipes) and the Ray engine
all run :func:`curate` (or, when the rows were selected elsewhere, its second half
:func:`publish_selection`), so every path scores, selects, records and publishes the same way.

Metrics are reused only when they are known to match the request: :func:`ensure_scored` reads
the provenance ``score()`` recorded and re-scores (cheap: the reward fields only) whenever the
request differs or the metrics carry none, or fails, naming the difference, when the table no
longer holds the answers to re-score from.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .crowd import Crowd, CrowdError
from .disk_cache import DEFAULT_MAX_GB

logger = logging.getLogger(__name__)

METRIC_COLUMNS = ("crowd_id", "crowd_difficulty", "crowd_separability", "crowd_stability", "crowd_best_model",
                  "crowd_best_reward")


@dataclass(frozen=True)
class SelectionConfig:
    """How to select: the arguments of :func:`~crowdselect_hf.crowd_select` that a user sets.

    The CLI's selection options are generated from these fields (their ``help`` metadata).
    """

    k: int = field(metadata={"help": "rows to select (exactly this many come out)"})
    strategy: str = field(default="crowdselect", metadata={"help": "crowdselect (the paper's) or a baseline"})
    n_clusters: int = field(default=10, metadata={"help": "KMeans clusters for clustered strategies (paper: 10)"})
    weights: tuple[float, float, float] = field(
        default=(1.0, 1.0, 2.0),
        metadata={"help": "difficulty,separability,stability weights for combining strategies (paper: 1,1,2)"})
    embedder: str = field(default="tfidf", metadata={
        "help": "instruction embedder for clustered strategies: tfidf (no weights), minilm, a model folder or Hub id, "
                "or column:NAME"})
    seed: int = field(default=42, metadata={"help": "random seed of KMeans and the random strategies"})
    n_init: int = field(default=20, metadata={"help": "KMeans initialisations (paper: 20)"})
    no_cache: bool = field(default=False, metadata={
        "help": "do not read or write the on-disk cache of embeddings and clusters, which lets a re-selection skip "
                "the embedder and KMeans (kept beside the dataset's cache files, or under $CROWDSELECT_HOME/cache)"})
    cache_max_gb: float = field(default=DEFAULT_MAX_GB, metadata={
        "help": "size cap of a cache folder in GiB; the least recently used entries are removed beyond it"})

    def __post_init__(self):
        if not self.cache_max_gb >= 0:
            raise ValueError(f"cache_max_gb (--cache-max-gb) must be a size in GiB, 0 or more; got {self.cache_max_gb!r}")

    def selector_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``crowd_select``: the fields, with ``no_cache`` and
        ``cache_max_gb`` turned into its ``cache=``."""
        kwargs = asdict(self)
        no_cache, max_gb = kwargs.pop("no_cache"), kwargs.pop("cache_max_gb")
        if no_cache:
            kwargs["cache"] = False
        elif max_gb != DEFAULT_MAX_GB:
            from .embeddings import EmbeddingCache

            kwargs["cache"] = EmbeddingCache(on_disk=True, max_gb=max_gb)
        return kwargs


@dataclass(frozen=True)
class OutputConfig:
    """Where and how a curated config is written."""

    out: str = field(default="curated", metadata={"help": "the Hub-shaped output folder"})
    config_name: str | None = field(default=None, metadata={"help": "the curated config's name (default: <strategy>-<k>)"})
    format: str = field(default="messages", metadata={"help": "TRL dataset format: messages or prompt-completion"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing config of that name"})
    report: bool = field(default=True, metadata={"help": "write report.html beside the rows"})
    push: str | None = field(default=None, metadata={"help": "also publish to this Hub dataset repo"})
    private: bool | None = field(default=None, metadata={"help": "create the Hub repo as private"})
    license: str | None = None
    repo_ref: str | None = None

    def named(self, selection: SelectionConfig) -> str:
        return self.config_name or f"{selection.strategy}-{selection.k}"


@dataclass
class Curated:
    """What :func:`curate` produced."""

    folder: Path
    config_name: str
    selection: Any
    rows: int
    dropped: int
    report: Path | None = None
    url: str | None = None

    @property
    def config_dir(self) -> Path:
        return self.folder / self.config_name


def _has_metrics(ds) -> bool:
    return all(c in ds.column_names for c in METRIC_COLUMNS)


def ensure_scored(ds, crowd: Crowd | None = None, reward: str | None = None):
    """``ds`` with ``crowd_*`` metrics that match the request.

    * metrics recorded by ``score()`` that match ``crowd``/``reward`` (or no request) are reused;
    * otherwise, while the answers are in the table, it is re-scored (``score`` reads only the
      reward fields; a cache-backed table reuses an earlier identical scoring);
    * otherwise (metrics without the answers) a mismatch is an error naming it.

    Example:
        >>> import crowdselect_hf as cs
        >>> scored = cs.score(cs.demo_pool(), crowd=cs.demo_crowd())
        >>> ensure_scored(scored) is scored
        True
    """
    from .metrics import ALGORITHM_VERSION
    from .provenance import MetricsProvenance, read_provenance
    from .scoring import score

    asked = crowd.with_reward(reward or crowd.reward) if crowd is not None else None
    provenance = read_provenance(ds) if _has_metrics(ds) else None
    if provenance is not None:
        # No request: the recorded crowd and reward, computed by this package's method version.
        wanted = (MetricsProvenance.of(asked) if asked is not None
                  else replace(provenance, reward=reward or provenance.reward, method=ALGORITHM_VERSION))
        differs = provenance.differences(wanted)
        if not differs:
            return ds
        if crowd is None:
            crowd = provenance.crowd(ds.column_names)
    else:
        differs = ["no recorded provenance"] if _has_metrics(ds) else []
    try:
        rescored = score(ds, crowd=crowd, reward=reward)
    except CrowdError as e:
        if not _has_metrics(ds):
            raise
        if provenance is None and asked is None and reward is None:
            logger.info("using the table's crowd_* metrics as they are (no recorded provenance, no answers to re-score)")
            return ds
        raise CrowdError(f"the crowd_* metrics of this table differ from the request ({'; '.join(differs)}) and it "
                         f"cannot be re-scored: {e}") from None
    if differs:
        logger.info("re-scored the table: its crowd_* metrics had %s", "; ".join(differs))
    return rescored


def curate(pool, selection: SelectionConfig, output: OutputConfig, *, crowd: Crowd | None = None,
           reward: str | None = None, source: Mapping[str, Any] | None = None, embeddings: Any = None) -> Curated:
    """Score (if needed), select, format for TRL, save as a config, write the report, push.

    Args:
        pool: a ``datasets.Dataset`` crowd table (scored or not).
        selection: how to select.
        output: where to write, and whether to report and push.
        crowd, reward: the crowd and reward field (inferred when ``None``).
        source: where the pool came from, recorded in the card.
        embeddings: precomputed instruction embeddings (replace the embedder).

    Returns:
        A :class:`Curated`.

    Example:
        >>> import tempfile, crowdselect_hf as cs
        >>> out = OutputConfig(out=tempfile.mkdtemp(), report=False)
        >>> done = curate(cs.demo_pool(), SelectionConfig(k=20, n_clusters=4, n_init=2), out, crowd=cs.demo_crowd())
        >>> done.config_name, done.rows
        ('crowdselect-20', 20)
    """
    from .selection import crowd_select

    scored = ensure_scored(pool, crowd, reward)
    resolved = _crowd_of(scored, crowd, reward)
    sel = crowd_select(scored, crowd=resolved, embeddings=embeddings, **selection.selector_kwargs())
    return publish_selection(scored.select(sel.indices), sel, output.named(selection), output, crowd=resolved,
                             source=source)


def publish_selection(picked, sel, config_name: str, output: OutputConfig, *, crowd: Crowd | None = None,
                      source: Mapping[str, Any] | None = None) -> Curated:
    """The second half of :func:`curate` for rows already selected (``picked`` = the selected
    rows with their answers and ``crowd_*`` columns, in selection order)."""
    from .hub import publish_folder, save_local
    from .sft import to_sft

    sft, dropped = to_sft(picked, format=output.format, crowd=crowd, return_dropped=True)
    folder = save_local(sft, output.out, config_name, selection=sel, overwrite=output.overwrite, crowd=crowd,
                        source=source, license=output.license, repo_ref=output.repo_ref)
    done = Curated(Path(folder), config_name, sel, len(sft), len(dropped))
    if output.report:
        done.report = _report(folder, config_name)
    if output.push:
        done.url = publish_folder(folder, output.push, config_name, private=output.private)
    return done


def _crowd_of(scored, crowd: Crowd | None, reward: str | None) -> Crowd | None:
    """The crowd bound to the table (``None`` when the answers are no longer there)."""
    from .binding import CrowdBinding
    from .provenance import read_provenance

    provenance = read_provenance(scored)
    if reward is None and (crowd is None or crowd.reward is None) and provenance is not None:
        reward = provenance.reward
    if crowd is None and provenance is not None:
        # The families and sizes the metrics were computed with (say, from a crowd file) define the
        # crowd; inferring them again from the column names could contradict the record.
        crowd = provenance.crowd(scored.column_names)
    try:
        return CrowdBinding.resolve(scored, crowd, reward, need_reward=False).crowd
    except CrowdError:
        return crowd


def _report(folder, config_name: str) -> Path:
    from .report import write_report

    return write_report(folder, config=config_name)
