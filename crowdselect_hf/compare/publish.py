"""Writing a finished comparison where users look: ``compare.json`` (the work folder and the
curated folder's ``_compare/``), a ``comparison`` entry in each compared config's card entry (so
``crowdselect push`` carries it), and each compared config's ``report.html`` rewritten with its
"Downstream comparison" section.
"""

from __future__ import annotations

import os
from pathlib import Path

from .card_block import CARD_KEY, card_entry
from .record import COMPARE_DIR, COMPARE_FILE, ComparisonRecord, comparison_path, write_comparison


def publish_comparison(folder: Path, out: Path, record: ComparisonRecord, key: str) -> Path:
    """Write the record, update the card and the reports; returns the work folder's compare.json."""
    main = out / COMPARE_FILE
    side = comparison_path(folder)
    paths = [main] if side.resolve() == main.resolve() else [main, side]
    write_comparison(record, *paths)
    update_card(folder, record, key)
    rewrite_reports(folder, record)
    return main


def update_card(folder: Path, record: ComparisonRecord, key: str) -> bool:
    """Put each compared config's :func:`~.card_block.card_entry` into the folder's card and
    re-render its body; ``False`` when the folder has no card."""
    from datasets.utils.metadata import MetadataConfigs

    from ..card import CARD_FIELD, merge_card
    from ..hub import README, read_card

    card = read_card(folder)
    if card is None:
        return False
    for name in record.configs:
        entry = dict((card.data.get(CARD_FIELD) or {}).get(name) or {})
        if not entry:
            continue
        entry[CARD_KEY] = card_entry(record, name, key, f"{COMPARE_DIR}/{COMPARE_FILE}")
        data_files = (MetadataConfigs.from_dataset_card_data(card.data).get(name) or {}).get("data_files")
        card = merge_card(card, name, entry, data_files=data_files, repo_ref=str(folder))
    path = Path(folder) / README
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(str(card), encoding="utf-8")
    os.replace(tmp, path)
    return True


def rewrite_reports(folder: Path, record: ComparisonRecord) -> list[Path]:
    """Rewrite the ``report.html`` of every compared config that has one (now with the comparison)."""
    from ..report import write_report

    written = []
    for name in record.configs:
        if (Path(folder) / name / "report.html").is_file():
            written.append(write_report(Path(folder) / name))
    return written
