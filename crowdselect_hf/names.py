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
    return config_name


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
