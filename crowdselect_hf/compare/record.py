"""What a comparison found and how: :class:`ComparisonRecord`, written as ``compare.json``.

It holds every setting needed to re-run the comparison (and the command line that does), the
judge prompt, the statistics' method and seed, one :class:`~.stats.PairedResult` per config and
judge, the per-cluster breakdown and a few side-by-side answers. The report's "Downstream
comparison" section and the card's comparison block are rendered from it alone.

On disk: ``<work folder>/compare.json``, and a copy at ``<curated folder>/_compare/compare.json``
where the report looks for it.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..jsonable import json_ready
from ..version import __version__
from .cache import write_json
from .config import SECTIONS, CompareSettings
from .stats import PairedResult

SCHEMA_VERSION = 1
COMPARE_DIR = "_compare"
COMPARE_FILE = "compare.json"


class ComparisonRecordError(ValueError):
    """A ``compare.json`` that cannot be read."""


@dataclass(frozen=True)
class StudentSummary:
    """One config's student: its selection, its training and its answers."""

    config: str
    strategy: str | None
    rows: int
    global_step: int
    train_loss: float | None
    runtime_s: float
    resumed_from: str | None
    answered: int
    mean_reward: float | None = None
    mean_reward_ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class ClusterResult:
    """One config against the baseline on the evaluation prompts of one cluster."""

    cluster: int
    config: str
    judge: str
    n: int
    win_rate: float | None


@dataclass(frozen=True)
class SideBySide:
    """One evaluation prompt with every student's answer, and what the judges said of it."""

    prompt_id: str
    instruction: str
    cluster: int
    answers: Mapping[str, str | None]
    rewards: Mapping[str, float | None] = field(default_factory=dict)
    verdicts: Mapping[str, Sequence[str | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class ComparisonRecord:
    """A finished comparison.

    Attributes:
        folder: the curated folder; ``configs``: compared (baseline included); ``baseline``.
        settings: :meth:`CompareSettings.to_dict` — every setting; ``command``: the command line
            that re-runs it.
        evaluation: where the prompts came from, how many, and ``underpowered`` (fewer than
            the stated minimum, run anyway with ``allow_small_eval``).
        students: per config, a :class:`StudentSummary`.
        results: per judge and config (baseline excluded), a :class:`~.stats.PairedResult`.
        position: per config, how the pairwise judge's two orders agreed (:func:`~.verdicts.position_stats`).
        clusters: the per-cluster breakdown; ``clusters_from``: whose clusters.
        side_by_side: a few prompts with all answers.
        judges: per judge, its model and (pairwise) endpoint, system prompt and template.
        statistics: interval method, resamples, seed, test, alpha.
        warnings: said loudly when it ran, kept here.
    """

    folder: str
    baseline: str
    configs: tuple[str, ...]
    settings: Mapping[str, Any]
    command: str
    evaluation: Mapping[str, Any]
    students: tuple[StudentSummary, ...]
    results: tuple[PairedResult, ...]
    position: Mapping[str, Mapping[str, Any]]
    clusters: tuple[ClusterResult, ...]
    side_by_side: tuple[SideBySide, ...]
    judges: Mapping[str, Mapping[str, Any]]
    statistics: Mapping[str, Any]
    warnings: tuple[str, ...] = ()
    package_version: str = __version__
    schema_version: int = SCHEMA_VERSION

    @property
    def underpowered(self) -> bool:
        return bool(self.evaluation.get("underpowered"))

    @property
    def student(self) -> str:
        return str(self.settings.get("run", {}).get("student"))

    def result(self, config: str, judge: str) -> PairedResult | None:
        return next((r for r in self.results if r.config == config and r.judge == judge), None)

    def judges_run(self) -> list[str]:
        return [j for j in ("pairwise", "reward") if any(r.judge == j for r in self.results)]

    def to_dict(self) -> dict[str, Any]:
        return json_ready(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ComparisonRecord":
        """Read a record.

        Raises:
            ComparisonRecordError: naming what is missing or which schema version is unknown.
        """
        if not isinstance(data, Mapping):
            raise ComparisonRecordError(f"a comparison record is a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ComparisonRecordError(f"compare.json schema version {version!r} is not known to crowdselect-hf "
                                        f"{__version__} (it reads {SCHEMA_VERSION})")
        try:
            return cls(
                **{k: data[k] for k in ("folder", "baseline", "settings", "command", "evaluation", "position", "judges",
                                        "statistics", "package_version", "schema_version")},
                configs=tuple(data["configs"]), warnings=tuple(data.get("warnings") or ()),
                students=tuple(StudentSummary(**_tuples(s, "mean_reward_ci")) for s in data["students"]),
                results=tuple(PairedResult(**_tuples(r, "win_rate_ci", "mean_difference_ci")) for r in data["results"]),
                clusters=tuple(ClusterResult(**c) for c in data["clusters"]),
                side_by_side=tuple(SideBySide(**s) for s in data["side_by_side"]))
        except (KeyError, TypeError) as e:
            raise ComparisonRecordError(f"not a comparison record: {e}") from None


def _tuples(d: Mapping[str, Any], *names: str) -> dict[str, Any]:
    out = dict(d)
    for n in names:
        if out.get(n) is not None:
            out[n] = tuple(math.nan if v is None else v for v in out[n])
    for k, v in out.items():  # JSON has no NaN: the record wrote None for it
        if v is None and k in ("win_rate", "p_value", "p_adjusted"):
            out[k] = math.nan
    return out


def write_comparison(record: ComparisonRecord, *paths: Path) -> list[Path]:
    """Write ``compare.json`` to each path (atomically)."""
    data = record.to_dict()
    for p in paths:
        write_json(Path(p), data)
    return [Path(p) for p in paths]


def read_comparison(path: str | Path) -> ComparisonRecord:
    """The record in ``path`` (a ``compare.json``).

    Raises:
        ComparisonRecordError: the file is missing, not JSON, or not a record.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ComparisonRecordError(f"cannot read {str(path)!r}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ComparisonRecordError(f"{str(path)!r} is not valid JSON: {e.msg} at line {e.lineno}") from None
    return ComparisonRecord.from_dict(data)


def comparison_path(curated_folder: str | Path) -> Path:
    """Where the report and the card look for a folder's comparison."""
    return Path(curated_folder) / COMPARE_DIR / COMPARE_FILE


def find_comparison(config_dir: str | Path) -> ComparisonRecord | None:
    """The comparison that a config of a curated folder took part in, or ``None``.

    Raises:
        ComparisonRecordError: a ``compare.json`` is there but cannot be read.
    """
    config_dir = Path(config_dir)
    path = comparison_path(config_dir.parent)
    if not path.is_file():
        return None
    record = read_comparison(path)
    return record if config_dir.name in record.configs else None


def command_line(folder: str, settings: CompareSettings) -> str:
    """The ``crowdselect compare`` command that re-runs ``settings`` (non-default options only).

    Example:
        >>> from crowdselect_hf.compare.config import settings_of
        >>> command_line("cur", settings_of(student="m", configs=("a", "b"), lora=True, learning_rate=2e-5))
        'crowdselect compare cur --student m --configs a,b --learning-rate 2e-05 --lora'
    """
    parts = ["crowdselect", "compare", folder]
    values = settings.non_defaults()
    for kind in SECTIONS.values():
        for name in kind.__dataclass_fields__:
            if name not in values:
                continue
            value, flag = values[name], "--" + name.replace("_", "-")
            if isinstance(value, bool):
                parts += [flag] if value else []
            elif value is not None:
                parts += [flag, ",".join(value) if isinstance(value, (tuple, list)) else str(value)]
    return " ".join(shlex.quote(p) for p in parts)
