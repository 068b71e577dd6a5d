"""Dataset cards for curated sets: YAML metadata the Hub and ``datasets`` read, and a body a
person can read.

One repository (or local folder) may hold several configs (``crowdselect-1k``, ``random-1k``,
...). They share one card: its ``configs:`` entries are maintained the way ``datasets``
maintains them (entries this package did not write are kept as they are), and the
``crowdselect:`` block holds one entry per config (:func:`config_entry`) with the
:class:`~crowdselect_hf.record.SelectionRecord` that built it, the same record as the config's
``_crowdselect/selection.json``. The body is rendered from those records only, so adding a config re-renders every section; text outside
the ``<!-- crowdselect:begin -->`` / ``<!-- crowdselect:end -->`` markers is kept.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import yaml
from huggingface_hub import DatasetCard, DatasetCardData
from huggingface_hub.repocard import REGEX_YAML_BLOCK

from .jsonable import json_ready
from .record import RecordError, SelectionRecord
from .version import __version__

CARD_FIELD = "crowdselect"
RECORD_KEY = "record"
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


# -- reading and writing the card's text --------------------------------------------------------------
# A card's YAML grows with every config (its record, crowd and features), and every save reads and
# writes it under the folder's lock; libyaml, where PyYAML has it, does both about 4x faster than
# huggingface_hub's pure-Python round trip, with the same text.

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _card(data: DatasetCardData, body: str) -> DatasetCard:
    card = DatasetCard("---\n{}\n---\n" + body)
    card.data = data
    return card


def parse_card(text: str) -> DatasetCard:
    r"""The ``DatasetCard`` of a README's text (as ``DatasetCard(text)``, faster).

    Raises:
        yaml.YAMLError: the YAML header is not YAML.
        ValueError: it is YAML but not a mapping.

    Example:
        >>> parse_card("---\nlicense: mit\n---\nNotes.\n").data.license
        'mit'
    """
    match = REGEX_YAML_BLOCK.search(text)
    if match is None:
        return DatasetCard(text)
    data = yaml.load(match.group(2), Loader=_LOADER) or {}
    if not isinstance(data, dict):
        raise ValueError("repo card metadata block should be a dict")
    return _card(DatasetCardData(**data), text[match.end():])


def card_text(card: DatasetCard) -> str:
    r"""The text of ``card``: the same as ``str(card)``, faster.

    Example:
        >>> card = parse_card("---\nlicense: mit\n---\nNotes.\n")
        >>> card_text(card) == str(card)
        True
    """
    header = yaml.dump(card.data.to_dict(), Dumper=_DUMPER, allow_unicode=True, sort_keys=False).strip()
    return f"---\n{header}\n---\n{card.text}"


def config_entry(config_name: str, *, rows: int, format: str | None, record: SelectionRecord | None = None,
                 source: Mapping[str, Any] | None = None, fingerprint: str | None = None) -> dict[str, Any]:
    """The ``crowdselect:`` entry of one config.

    Layout::

        rows, format        the config's ``train`` split
        source              where the pool came from (dataset, split, revision) + the rows' fingerprint
        record              the SelectionRecord, exactly as ``<config>/_crowdselect/selection.json``
                            holds it (absent when no selection chose the rows)
        package_version     the crowdselect-hf that wrote the entry

    Args:
        config_name: the config.
        rows: rows in its ``train`` split.
        format: ``"messages"``, ``"prompt-completion"`` or ``None`` (not SFT rows).
        record: the :class:`~crowdselect_hf.record.SelectionRecord` of the selection that chose
            the rows; one not yet saved is saved here as ``config_name`` with ``rows`` and ``source``.
        source: the source pool, e.g. ``{"dataset": ..., "split": ..., "revision": ...}``.
        fingerprint: the ``datasets`` fingerprint of the saved rows.

    Example:
        >>> entry = config_entry("tiny", rows=3, format="messages", source={"dataset": "me/pool"}, fingerprint="f0")
        >>> entry["source"], "record" in entry
        ({'dataset': 'me/pool', 'fingerprint': 'f0'}, False)
    """
    entry: dict[str, Any] = {"rows": int(rows), "format": format}
    entry["source"] = {**json_ready(dict(source or {})), **({"fingerprint": fingerprint} if fingerprint else {})}
    if record is not None:
        if record.config not in (None, config_name):
            raise ValueError(f"the selection record was saved as config {record.config!r}, not {config_name!r}")
        if record.config is None:
            record = record.saved_as(config_name, rows, entry["source"])
        entry[RECORD_KEY] = record.to_dict()
    entry["package_version"] = __version__
    return entry


def entry_record(entry: Mapping[str, Any]) -> SelectionRecord | None:
    """The selection record of a ``crowdselect:`` entry; ``None`` when the entry has none.

    An entry written by crowdselect-hf 0.1.0 (the parameters at its top level, a ``summary``)
    goes through :meth:`SelectionRecord.from_dict`'s converter of 0.1.0 ``selection.json`` files.

    Raises:
        RecordError: the entry's record cannot be read.
    """
    if entry.get(RECORD_KEY) is not None:
        return SelectionRecord.from_dict(entry[RECORD_KEY])
    if not entry.get("strategy"):
        return None
    old = {"params": entry, "summary": entry.get("summary") or {}, "crowd": entry.get("crowd"),
           "config": entry.get("config"), "rows": entry.get("rows"), "source": entry.get("source")}
    try:
        return SelectionRecord.from_dict(old)
    except (KeyError, TypeError, ValueError) as e:
        raise RecordError(f"not a crowdselect-hf 0.1.0 card entry: {e}") from None


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
        >>> card = merge_card(None, "random-1k", config_entry("random-1k", rows=3, format="messages"),
        ...                   license="apache-2.0", repo_ref="me/sets")
        >>> card.data.configs
        [{'config_name': 'random-1k', 'data_files': [{'split': 'train', 'path': 'random-1k/train-*'}]}]
        >>> card = merge_card(card, "top-1k", config_entry("top-1k", rows=2, format="messages"))
        >>> [c["config_name"] for c in card.data.configs], card.data.license, sorted(card.data.crowdselect)
        (['random-1k', 'top-1k'], 'apache-2.0', ['random-1k', 'top-1k'])
    """
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    if isinstance(existing, str):
        existing = parse_card(existing)
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
    return _card(data, _splice(body, text))


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
    """The readable part of the card, rendered from its YAML (between the crowdselect markers).

    Each config's section states only what its selection record holds: clusters and embedder
    when it clustered, weights when it combined the metrics, a seed when one applied, and the
    reward its metrics were computed from.
    """
    get = data.get
    block: Mapping[str, Mapping[str, Any]] = get(CARD_FIELD) or {}
    configs = [c.get("config_name") for c in (get("configs") or [])]
    ref = repo_ref or "<repo_id or folder>"
    title = get("pretty_name") or (repo_ref.rstrip("/").rsplit("/", 1)[-1] if repo_ref else "CrowdSelect curated instruction data")
    lines = [BEGIN, f"# {title}", "",
             f"Instruction-tuning data selected with [CrowdSelect]({PAPER}) by "
             f"`crowdselect-hf` {__version__}: every instruction was answered by a crowd "
             "of LLMs whose answers were scored by a reward model, and each row's assistant turn is the best-scored "
             "answer. Each config below says which score chose its rows.", "",
             "## Configs", "",
             "| config | rows | strategy | k | ranked by | clusters | weights | format | source |",
             "|---|---|---|---|---|---|---|---|---|"]
    records: dict[str, SelectionRecord | RecordError | None] = {}
    for name in configs:
        e = block.get(name)
        if e is None:
            lines.append(f"| `{name}` | – | (not written by crowdselect-hf) | | | | | | |")
            continue
        try:
            r = records[name] = entry_record(e)
        except RecordError as err:
            r, records[name] = None, err
        src = e.get("source") or {}
        lines.append(f"| `{name}` | {_fmt(e.get('rows'))} | {_fmt(r and r.strategy)} | {_fmt(r and r.k)} | "
                     f"{_fmt(r and r.ranked_by)} | {_fmt(r and r.clustering and r.clustering.n_clusters)} | "
                     f"{_fmt(r and r.weights)} | {_fmt(e.get('format'))} | {_fmt(src.get('dataset'))} |")
    for name in configs:
        if name in records:
            lines += ["", *_config_section(name, block[name], records[name])]
    from .compare.card_block import comparison_lines  # the downstream comparison, when one was run

    lines += comparison_lines(block, configs)
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
              "card's YAML records its source (dataset, revision, fingerprint) and, under `record`, its selection "
              "record (the same as `<config>/_crowdselect/selection.json`): the strategy and the parameters that "
              "applied to it, the per-cluster counts, the crowd, the reward the metrics were computed from and the "
              "package version that built it.", "", END]
    return "\n".join(lines)


def _config_section(name: str, e: Mapping[str, Any], r: SelectionRecord | RecordError | None) -> list[str]:
    src = e.get("source") or {}
    where = f"from `{_fmt(src.get('dataset'))}`"
    if src.get("split"):
        where += f" (split `{src['split']}`"
        where += f", revision `{src['revision']}`)" if src.get("revision") else ")"
    lines = [f"### `{name}`", "", f"{_fmt(e.get('rows'))} rows ({_fmt(e.get('format'))}) {where}."]
    if isinstance(r, RecordError):
        return lines + ["", f"Its selection record cannot be read ({r})."]
    if r is None:
        return lines + ["", "No selection record: these rows were saved without a crowdselect-hf selection."]
    lines += ["", f"- strategy: `{r.strategy}`, k = {r.k}, ranked by {r.ranked_by}"]
    if r.clustering is not None:
        c = r.clustering
        lines.append(f"- clustering: {c.n_clusters} clusters of `{c.embedder}` instruction embeddings "
                     f"(KMeans `{c.kmeans}`, n_init {c.n_init})")
    if r.weights is not None:
        lines.append(f"- weights (difficulty, separability, stability): {_fmt(r.weights)}")
    if r.seed is not None:
        lines.append(f"- seed: {r.seed}")
    lines.append(f"- reward the metrics were computed from: `{r.reward or 'unknown'}`")
    members = [m for m in ((r.crowd or {}).get("members") or (r.metrics or {}).get("members") or []) if isinstance(m, Mapping)]
    if members:
        families: dict[str, list[str]] = {}
        for m in members:
            size = m.get("params_b")
            families.setdefault(m.get("family") or "?", []).append(str(m.get("name")) + (f" ({_fmt(size)}B)" if size else ""))
        lines.append(f"- crowd: {len(members)} models in {len(families)} families: "
                     + "; ".join(f"{f}: {', '.join(ms)}" for f, ms in families.items()))
    if r.metric_means:
        lines += ["", "| metric | selected mean | pool mean |", "|---|---|---|"]
        lines += [f"| {m} | {_fmt(v.get('selected'))} | {_fmt(v.get('pool'))} |" for m, v in r.metric_means.items()]
    if r.clusters:
        lines += ["", "| cluster | pool rows | candidates | quota | selected by quota | back-filled |", "|---|---|---|---|---|---|"]
        lines += [f"| {c.cluster} | {c.pool_rows} | {c.candidates} | {c.quota} | {c.picked_by_quota} | {c.backfilled} |"
                  for c in r.clusters]
        total = [sum(getattr(c, f) for c in r.clusters) for f in ("pool_rows", "candidates", "quota", "picked_by_quota", "backfilled")]
        lines.append("| total | " + " | ".join(str(t) for t in total) + " |")
    if r.n_backfilled:
        lines += ["", f"{r.n_backfilled} rows were back-filled from the best unselected rows (clusters with fewer "
                      "candidates than their quota)."]
    excluded = {k: v for k, v in (r.excluded or {}).items() if v}
    if excluded:
        lines += ["", "Rows excluded from the pool: " + ", ".join(f"{v} ({k.replace('_', ' ')})" for k, v in excluded.items()) + "."]
    return lines
