"""Where curated sets are named and kept: valid config names and repo ids, and the local folder
of a recipe's set.

The lowest layer of publishing: :mod:`crowdselect_hf.hub` (writing and loading sets) and
:mod:`crowdselect_hf.recipe_catalog` (checking a recipe's target) both check names here, so
neither needs the other for that.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_CONFIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
RESERVED_NAMES = ("README.md", "dataset_info.json", "dataset_dict.json", "state.json")
"""Names of a folder's own files (the card, ``save_to_disk``'s files) that a config folder would
collide with; compared case-insensitively, as macOS and Windows do. (``_crowdselect`` and the
hidden ``.crowdselect-*`` / ``.writers.lock`` entries already fail the pattern.)"""


class HubError(ValueError):
    """A curated set cannot be written, found or loaded as asked."""


def check_config_name(config_name: str) -> str:
    """A config name that is also a safe folder name.

    Example:
        >>> check_config_name("crowdselect-1k")
        'crowdselect-1k'
        >>> check_config_name("../x")
        Traceback (most recent call last):
        ...
        crowdselect_hf.names.HubError: config name '../x' is not valid: use letters, digits, '-', '_' and '.', starting with a letter or digit (at most 96 characters)
    """
    if not isinstance(config_name, str) or not _CONFIG_NAME.match(config_name) or ".." in config_name:
        raise HubError(f"config name {config_name!r} is not valid: use letters, digits, '-', '_' and '.', starting "
                       "with a letter or digit (at most 96 characters)")
    if config_name.casefold() in {n.casefold() for n in RESERVED_NAMES}:
        raise HubError(f"config name {config_name!r} is the name of one of a curated folder's own files "
                       f"({', '.join(RESERVED_NAMES)}); choose another config name")
    return config_name


def check_out_path(path: str | os.PathLike, what: str = "folder", *, file: bool = False) -> Path:
    """``path`` as a ``Path``, if it can be written: no parent of it is a file, and it is not a file
    where a folder is to be written (nor a folder where a file is).

    Args:
        path: the folder (or file) to write; it may not exist yet.
        what: how the error names it (``"--out"``, ``"folder"``).
        file: ``path`` is a file to write (e.g. ``scored.parquet``), not a folder.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"; _ = f.write_text("x")
        >>> check_out_path(f / "curated", "--out")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        crowdselect_hf.names.HubError: --out '.../notes.txt/curated' cannot be created: '.../notes.txt' is a file, not a folder; choose a path whose parents are folders
    """
    path = Path(path).expanduser()
    if file and path.is_dir():
        raise HubError(f"{what} {str(path)!r} is a folder, not a file; choose a file name")
    if not file and path.exists() and not path.is_dir():
        raise HubError(f"{what} {str(path)!r} is a file, not a folder; choose a folder (a new or a curated one)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise HubError(f"{what} {str(path)!r} cannot be created: {str(parent)!r} is a file, not a folder; "
                               "choose a path whose parents are folders")
            break
    return path


def check_repo_id(repo_id: str) -> str:
    """A dataset repo id ``owner/name`` as the Hub accepts it; a malformed one (``me//x``, ``a--b/c``)
    raises :class:`HubError` saying what is expected.

    Example:
        >>> [check_repo_id(r) for r in ("me/magpie-crowdselect", "org/set.v2")]
        ['me/magpie-crowdselect', 'org/set.v2']
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    problem = not isinstance(repo_id, str) or repo_id.count("/") != 1
    if not problem:
        try:
            validate_repo_id(repo_id)
        except HFValidationError:
            problem = True
    if problem:
        raise HubError(f"malformed repo id {repo_id!r}: expected 'owner/name' (letters, digits, '-', '_', '.'; "
                       "no '--' or '..'; at most 96 characters)")
    return repo_id


# -- where local sets live ----------------------------------------------------------------------

def crowdselect_home() -> Path:
    """Where locally built sets go: ``$CROWDSELECT_HOME`` or ``$HF_HOME/crowdselect``."""
    from huggingface_hub import constants

    return Path(os.environ.get("CROWDSELECT_HOME") or Path(constants.HF_HOME) / "crowdselect")


def local_set_dir(repo_id: str) -> Path:
    """The default local folder of a recipe's target repo (what ``crowdselect build`` writes without ``--out``)."""
    return crowdselect_home() / "sets" / repo_id.replace("/", "--")
