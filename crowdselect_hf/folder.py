"""What a local curated folder holds, read without changing it: its card and configs, its layout
(curated, ``save_to_disk`` or neither), and whether a config's data files are all there.

Changing a folder is :mod:`crowdselect_hf.transaction`'s (the lock, the atomic swap) and
:mod:`crowdselect_hf.hub`'s (what to write); both read the folder through this module.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from huggingface_hub import DatasetCard

from .card import CARD_FIELD, parse_card
from .names import HubError, check_out_path
from .record import SELECTION_FILE, SIDECAR_DIR

README = "README.md"


# -- the card and its configs -------------------------------------------------------------------

def read_card(folder: str | os.PathLike) -> DatasetCard | None:
    """The card of a local folder, or ``None`` when it has no README.md.

    Raises:
        HubError: its YAML header cannot be read (the error names the line).
    """
    path = Path(folder) / README
    if not path.is_file():
        return None
    return card_of(path.read_text(encoding="utf-8"), f"the card {str(path)!r}")


def card_of(text: str, where: str) -> DatasetCard:
    r"""The card in ``text`` (a README.md); ``where`` names it in the error.

    Raises:
        HubError: its YAML header cannot be read (the error names the line).

    Example:
        >>> card_of("---\nconfigs: [\n---\n", "the card of 'me/sets'")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        crowdselect_hf.names.HubError: the card of 'me/sets' has YAML metadata that cannot be read at line 3 (...); fix the YAML between its first two '---' lines (or move the file away), then retry
    """
    import yaml

    try:
        return parse_card(text)
    except (yaml.YAMLError, ValueError) as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 2}" if mark is not None else ""  # +2: 0-based, after the opening '---'
        what = str(getattr(e, "problem", None) or e).splitlines()[0]
        raise HubError(f"{where} has YAML metadata that cannot be read{at} ({what}); fix the YAML between its first "
                       "two '---' lines (or move the file away), then retry") from None


def card_configs(card: DatasetCard | None) -> list[str]:
    """The config names listed by a card's ``configs:`` block."""
    if card is None:
        return []
    return [c.get("config_name") for c in (card.data.get("configs") or []) if isinstance(c, Mapping)]


def config_names(folder: str | os.PathLike) -> list[str]:
    """The configs of a local Hub-shaped folder (as ``datasets.get_dataset_config_names`` sees them)."""
    return card_configs(read_card(folder))


# -- what a folder is ------------------------------------------------------------------------------

def folder_layout(folder: str | os.PathLike) -> str | None:
    """``"curated"`` (a card with configs, or configs with a selection record), ``"save_to_disk"``
    (``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` files), or ``None`` (neither, or no folder).

    Example:
        >>> import datasets, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> folder_layout(folder) is None
        True
        >>> datasets.Dataset.from_dict({"x": [1]}).save_to_disk(folder)
        >>> folder_layout(folder)
        'save_to_disk'
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    if is_save_to_disk(folder):
        return "save_to_disk"
    card = read_card(folder)
    if card_configs(card) or (card is not None and card.data.get(CARD_FIELD)):
        return "curated"
    if any((p / SIDECAR_DIR / SELECTION_FILE).is_file() for p in folder.iterdir() if p.is_dir()):
        return "curated"
    return None


def is_save_to_disk(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds what ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk`` writes."""
    folder = Path(folder)
    return (folder / "dataset_dict.json").is_file() or all((folder / f).is_file() for f in ("state.json", "dataset_info.json"))


def check_table_out(out: str | os.PathLike) -> Path:
    """``out`` as a ``Path``, if a table (``save_to_disk`` folder or Parquet file) may be written there:
    never into a curated folder, whose configs it would make unloadable.

    Example:
        >>> import tempfile, pathlib
        >>> check_table_out(pathlib.Path(tempfile.mkdtemp()) / "scored.parquet").name
        'scored.parquet'
    """
    path = check_out_path(out, "--out", file=Path(out).suffix.lower() == ".parquet")
    if folder_layout(path) == "curated":
        raise HubError(f"--out {str(out)!r} is a curated folder (configs: {', '.join(config_names(path)) or 'none listed'});"
                       " a table written there would replace its files and its configs would no longer load: "
                       "choose another --out (a new folder or a .parquet file)")
    if (path.parent / SIDECAR_DIR).is_dir():
        raise HubError(f"--out {str(out)!r} is inside config {path.parent.name!r} of a curated folder, among its data "
                       "files: choose another --out")
    return path


# -- a config's data files ---------------------------------------------------------------------------


_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.[A-Za-z0-9]+$")


def check_data_files(folder: str | os.PathLike, card: DatasetCard, config: str) -> None:
    """Every ``data_files`` pattern of ``config`` (in ``card``) matches a file in ``folder``, and no
    numbered shard (``train-00001-of-00003.parquet``) is missing: a deleted file is an error, never
    a silently smaller dataset.

    Raises:
        HubError: naming the config, the pattern or the missing shard, and how to put it right.
    """
    from datasets.utils.metadata import MetadataConfigs

    folder = Path(folder)
    files = MetadataConfigs.from_dataset_card_data(card.data)[config].get("data_files")
    patterns = [files] if isinstance(files, str) else [
        p for f in (files or []) for p in ([f] if isinstance(f, str) else (
            [f.get("path")] if isinstance(f.get("path"), str) else list(f.get("path") or [])))]
    redo = "restore them, or write the config again (save_local(..., overwrite=True), `crowdselect select --overwrite`)"
    for pattern in patterns:
        found = sorted(p for p in folder.glob(pattern) if p.is_file())
        if not found:
            raise HubError(f"config {config!r} of {str(folder)!r} has no data files matching {pattern!r} "
                           f"(deleted or moved?): {redo}")
        shards = [(int(m[1]), int(m[2]), p) for p in found if (m := _SHARD.search(p.name))]
        for total in {t for _, t, _ in shards}:
            present = {i for i, t, _ in shards if t == total}
            missing = sorted(set(range(total)) - present)
            if missing:
                raise HubError(f"config {config!r} of {str(folder)!r} is missing {len(missing)} of its {total} shards "
                               f"(e.g. shard {missing[0]} of {pattern!r}): {redo}")
