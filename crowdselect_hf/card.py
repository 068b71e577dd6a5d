"""Dataset cards for curated sets: YAML metadata the Hub and ``datasets`` read, and a body a
person can read.

One repository (or local folder) may hold several configs (``crowdselect-1k``, ``random-1k``,
...). They share one card: its ``configs:`` entries are maintained the way ``datasets``
maintains them (entries this package did not write are kept as they are), and the
``crowdselect:`` block holds one entry per config with the exact parameters that built it. The
body is rendered from that block, so adding a config re-renders every section; text outside
the ``<!-- crowdselect:begin -->`` / ``<!-- crowdselect:end -->`` markers is kept.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Sequence

from huggingface_hub import DatasetCard, DatasetCardData

CARD_FIELD = "crowdselect"
TAGS = ("crowdselect", "sft", "synthetic")
BEGIN, END = "<!-- crowdselect:begin -->", "<!-- crowdselect:end -->"
SPLIT = "train"
PAPER = "https://arxiv.org/abs/2503.01836"
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def size_category(n: int) -> str:
    """The Hub's size category for ``n`` rows.

    Example:
        >>> size_category(999), size_category(1000), size_category(100_000)
        ('n<1K', '1K<n<10K', '100K<n<1M')
    """
    for bound, name in _SIZES:
        if n < bound:
            return name
    return "n>1T"


def json_ready(value: Any) -> Any:
    """A copy of ``value`` that JSON and YAML write safely: NaN/inf → ``None``, numpy scalars
    and arrays → Python numbers and lists, tuples → lists, keys → strings.

    Example:
        >>> json_ready({"w": (1, 1, 2), "m": float("nan")})
        {'w': [1, 1, 2], 'm': None}
    """
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_ready(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f if math.isfinite(f) else None


def config_entry(config_name: str, *, rows: int, format: str | None, selection: Any = None, crowd: Any = None,
                 source: Mapping[str, Any] | None = None, fingerprint: str | None = None) -> dict[str, Any]:
    """The ``crowdselect:`` entry of one config: everything needed to rebuild it.

    Args:
        config_name: the config.
        rows: rows in its ``train`` split.
        format: ``"messages"``, ``"prompt-completion"`` or ``None`` (not SFT rows).
        selection: the ``Selection`` that chose the rows (its ``params`` and ``summary()``).
        crowd: the ``Crowd`` that answered (members with families and sizes, reward field).
        source: the source pool, e.g. ``{"dataset": ..., "split": ..., "revision": ...}``.
        fingerprint: the ``datasets`` fingerprint of the saved rows.
    """
    from . import __version__

    entry: dict[str, Any] = {"rows": int(rows), "format": format}
    if selection is not None:
        entry.update(json_ready(dict(selection.params)))
    entry["source"] = {**json_ready(dict(source or {})), **({"fingerprint": fingerprint} if fingerprint else {})}
    if crowd is not None:
        described = crowd.to_dict()
        entry["reward"] = described.get("reward")
        entry["crowd"] = json_ready(described)
    if selection is not None:
        summary = json_ready(selection.summary())
        entry["summary"] = {k: v for k, v in summary.items() if k not in entry or v != entry[k]}
    entry["package_version"] = __version__
    return entry


def merge_card(existing: DatasetCard | str | None, config_name: str, entry: Mapping[str, Any], *,
               data_files: Sequence[Mapping[str, Any]] | None = None, dataset_info: Any = None,
               license: str | None = None, repo_ref: str | None = None, pretty_name: str | None = None) -> DatasetCard:
    """A card with ``config_name`` added to (or replaced in) ``existing``.

    ``configs:`` and ``dataset_info:`` are merged with ``datasets``' own ``MetadataConfigs`` and
    ``DatasetInfosDict``, so entries for other configs survive untouched; so do tags and any
    other YAML key a person added.

    Args:
        existing: the current card (its text or a ``DatasetCard``), or ``None``.
        config_name: the config being written.
        entry: its ``crowdselect:`` entry (:func:`config_entry`).
        data_files: its ``data_files``; default ``[{"split": "train", "path": "<config>/train-*"}]``.
        dataset_info: a ``datasets.DatasetInfo`` (features, splits, sizes) to record.
        license: the licence; default: keep the card's, else ``"other"``.
        repo_ref: how readers load it (a repo id or a folder) for the body's examples.
        pretty_name: the card's title; default: keep the card's.

    Returns:
        The new ``DatasetCard``.

    Example:
        >>> card = merge_card(None, "random-1k", {"rows": 3, "format": "messages", "strategy": "random", "k": 3},
        ...                   license="apache-2.0", repo_ref="me/sets")
        >>> card.data.configs
        [{'config_name': 'random-1k', 'data_files': [{'split': 'train', 'path': 'random-1k/train-*'}]}]
        >>> card = merge_card(card, "top-1k", {"rows": 2, "format": "messages", "strategy": "reward-top", "k": 2})
        >>> [c["config_name"] for c in card.data.configs], card.data.license, sorted(card.data.crowdselect)
        (['random-1k', 'top-1k'], 'apache-2.0', ['random-1k', 'top-1k'])
    """
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    if isinstance(existing, str):
        existing = DatasetCard(existing)
    data = copy.deepcopy(existing.data) if existing is not None else DatasetCardData()
    body = existing.text if existing is not None else ""

    config = {"data_files": [dict(d) for d in (data_files or [{"split": SPLIT, "path": f"{config_name}/{SPLIT}-*"}])]}
    current = MetadataConfigs.from_dataset_card_data(data)
    if config_name in current and current[config_name].get("default"):
        config["default"] = True
    MetadataConfigs({config_name: config}).to_dataset_card_data(data)
    if dataset_info is not None:
        DatasetInfosDict({config_name: dataset_info}).to_dataset_card_data(data)

    block = dict(data.get(CARD_FIELD) or {})
    block[config_name] = json_ready(dict(entry))
    data[CARD_FIELD] = dict(sorted(block.items()))

    data.license = license or data.get("license") or "other"
    data["tags"] = _union(data.get("tags"), TAGS)
    data.task_categories = _union(data.get("task_categories"), ("text-generation",))
    sizes = [int(e.get("rows") or 0) for e in block.values()]
    if sizes:
        data.size_categories = [size_category(max(sizes))]
    sources = [e.get("source", {}).get("dataset") for e in block.values()]
    sources = [s for s in sources if s and "/" in s and not s.startswith((".", "/"))]
    if sources:
        data.source_datasets = _union(data.get("source_datasets"), sources)
    if pretty_name:
        data.pretty_name = pretty_name
    text = render_body(data, repo_ref=repo_ref)
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n{_splice(body, text)}")


def _union(current: Any, extra: Sequence[str]) -> list[str]:
    items = [current] if isinstance(current, str) else list(current or [])
    return items + [t for t in extra if t not in items]


def _splice(body: str, generated: str) -> str:
    if BEGIN in body and END in body and body.index(BEGIN) < body.index(END):
        head, rest = body.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        return f"{head}{generated}{tail}"
    return f"\n{generated}\n{body.lstrip()}" if body.strip() else f"\n{generated}\n"


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    if isinstance(x, (list, tuple)):
        return "(" + ", ".join(_fmt(v, digits) for v in x) + ")"
    return str(x)


def render_body(data: DatasetCardData | Mapping[str, Any], repo_ref: str | None = None) -> str:
    """The readable part of the card, rendered from its YAML (between the crowdselect markers)."""
    get = data.get
    block: Mapping[str, Mapping[str, Any]] = get(CARD_FIELD) or {}
    configs = [c.get("config_name") for c in (get("configs") or [])]
    ref = repo_ref or "<repo_id or folder>"
    title = get("pretty_name") or (repo_ref.rstrip("/").rsplit("/", 1)[-1] if repo_ref else "CrowdSelect curated instruction data")
    lines = [BEGIN, f"# {title}", "",
             f"Instruction-tuning data selected with [CrowdSelect]({PAPER}) by "
             "[crowdselect-hf](https://pypi.org/project/crowdselect-hf/): every instruction was answered by a crowd "
             "of LLMs whose answers were scored by a reward model; the rows were chosen from the crowd's scores "
             "(difficulty, separability, stability), and each row's assistant turn is the best-scored answer.", "",
             "## Configs", "",
             "| config | rows | strategy | k | clusters | weights | format | source |",
             "|---|---|---|---|---|---|---|---|"]
    for name in configs:
        e = block.get(name)
        if e is None:
            lines.append(f"| `{name}` | – | (not written by crowdselect-hf) | | | | | |")
            continue
        src = e.get("source") or {}
        lines.append(f"| `{name}` | {_fmt(e.get('rows'))} | {_fmt(e.get('strategy'))} | {_fmt(e.get('k'))} | "
                     f"{_fmt(e.get('n_clusters'))} | {_fmt(e.get('weights'))} | {_fmt(e.get('format'))} | "
                     f"{_fmt(src.get('dataset'))} |")
    for name in configs:
        e = block.get(name)
        if e is not None:
            lines += ["", *_config_section(name, e)]
    first = next((c for c in configs if c in block), configs[0] if configs else "<config>")
    lines += ["", "## How to load and train", "", "```python", "from datasets import load_dataset", "",
              f'ds = load_dataset("{ref}", "{first}", split="train")', "```", "",
              "or, with this package: `crowdselect_hf.load_selected(" + f'"{ref}", "{first}")`.', "",
              "The rows are in TRL's conversational format (`messages`, or `prompt` + `completion`); the `crowd_*` "
              "columns are kept for audit and ignored by TRL:", "", "```bash",
              f"trl sft --model_name_or_path Qwen/Qwen2.5-0.5B --dataset_name {ref} --dataset_config {first} "
              "--output_dir out", "```", "",
              "## Licence and provenance", "",
              f"Licence: `{get('license') or 'other'}`, carried from the source pool: the responses were written by the "
              "crowd's models and remain subject to their terms of use. Each config's `crowdselect:` entry in this "
              "card's YAML records the source (dataset, revision, fingerprint), the crowd, the reward field, the "
              "selection parameters and the package version that built it.", "", END]
    return "\n".join(lines)


def _config_section(name: str, e: Mapping[str, Any]) -> list[str]:
    src = e.get("source") or {}
    crowd = e.get("crowd") or {}
    members = crowd.get("members") or []
    how = f"`{e.get('strategy', 'unknown')}` selection of k = {_fmt(e.get('k'))} rows"
    if e.get("n_clusters"):
        how += f" over {e['n_clusters']} clusters of `{_fmt(e.get('embedder'))}` instruction embeddings"
    if e.get("weights") is not None:
        how += f", weights (difficulty, separability, stability) = {_fmt(e.get('weights'))}"
    if e.get("seed") is not None:
        how += f", seed {e['seed']}"
    where = f"from `{_fmt(src.get('dataset'))}`"
    if src.get("split"):
        where += f" (split `{src['split']}`"
        where += f", revision `{src['revision']}`)" if src.get("revision") else ")"
    lines = [f"### `{name}`", "", f"{_fmt(e.get('rows'))} rows: {how}, {where}."]
    if members:
        families: dict[str, list[str]] = {}
        for m in members:
            size = m.get("params_b")
            families.setdefault(m.get("family") or "?", []).append(m["name"] + (f" ({_fmt(size)}B)" if size else ""))
        lines += ["", f"Crowd: {len(members)} models in {len(families)} families, reward field "
                      f"`{_fmt(e.get('reward'))}`: " + "; ".join(f"{f}: {', '.join(ms)}" for f, ms in families.items()) + "."]
    summary = e.get("summary") or {}
    means = _means(summary)
    if means:
        lines += ["", "| metric | selected mean | pool mean |", "|---|---|---|"]
        lines += [f"| {m} | {_fmt(s)} | {_fmt(p)} |" for m, (s, p) in means.items()]
    clusters = _clusters(summary)
    if clusters:
        lines += ["", "| cluster | pool rows | quota | selected by quota | back-filled |", "|---|---|---|---|---|"]
        lines += [f"| {c.get('cluster')} | {_fmt(c.get('size'))} | {_fmt(c.get('quota'))} | "
                  f"{_fmt(c.get('picked_by_quota', c.get('selected')))} | {_fmt(c.get('backfilled', 0))} |" for c in clusters]
    backfilled = summary.get("n_backfilled", summary.get("backfilled"))
    if backfilled:
        lines += ["", f"{backfilled} rows were back-filled from the best unselected rows (clusters smaller than their quota)."]
    excluded = {k: v for k, v in (summary.get("excluded") or {}).items() if v}
    if excluded:
        lines += ["", "Rows excluded from the pool: " + ", ".join(f"{v} ({k.replace('_', ' ')})" for k, v in excluded.items()) + "."]
    return lines


def _means(summary: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Metric → (selected mean, pool mean) from ``summary["metric_means"]`` (``{m: {"selected", "pool"}}``),
    or from ``{"means": {"selected": {m: v}, "pool": {m: v}}}``."""
    means = summary.get("metric_means") or summary.get("means") or {}
    if not isinstance(means, Mapping):
        return {}
    if isinstance(means.get("selected"), Mapping):
        sel, pool = means["selected"], means.get("pool") or {}
        return {m: (sel.get(m), pool.get(m)) for m in sel}
    return {m: (v.get("selected"), v.get("pool")) for m, v in means.items() if isinstance(v, Mapping)}


def _clusters(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    clusters = summary.get("clusters") or []
    if isinstance(clusters, Mapping):
        return [{"cluster": k, **v} for k, v in clusters.items() if isinstance(v, Mapping)]
    return [c for c in clusters if isinstance(c, Mapping)]
