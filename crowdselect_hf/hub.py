"""Curated sets as Hub-shaped folders and Hub repositories, and loading them back by name.

A curated set is Parquet plus a ``configs:`` block in its README — what ``datasets`` ≥ 4 loads
with no loading script::

    <folder or repo>/
        README.md                         one card for every config (card.py)
        <config>/train-00000-of-00001.parquet
        <config>/_crowdselect/pool.parquet    the whole pool's scores (Selection.pool_table())
        <config>/_crowdselect/selection.json  params, summary, crowd and source of the selection
        .writers.lock                     the lock that writers (and readers) of the folder take

The config's ``data_files`` pattern is ``<config>/train-*``, so ``_crowdselect/`` is never read
as data. :func:`save_local` writes such a folder (atomically, and safely beside concurrent
writers: :mod:`crowdselect_hf.transaction`), :func:`publish` pushes the same files in one
commit, and :func:`load_selected` loads a recipe name, a repo id or a folder.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import datasets
from huggingface_hub import DatasetCard

from .card import CARD_FIELD, SPLIT, card_text, config_entry, merge_card
from .folder import (  # noqa: F401  (re-exported)
    card_configs, card_of, check_data_files, check_table_out, config_names, is_save_to_disk, read_card,
)
from .record import write_record
from .names import HubError, check_config_name, check_out_path, check_repo_id, crowdselect_home, local_set_dir  # noqa: F401  (re-exported)
from .recipe_catalog import RecipeError, all_recipes, find_recipe, list_recipes
from .transaction import ConfigSwap, reading, recover, remove_if_empty

logger = logging.getLogger(__name__)

README = "README.md"
DEFAULT_MAX_SHARD_SIZE = "500MB"


class ConfigExistsError(HubError):
    """The config is already there and ``overwrite=True`` was not given."""


class PublishError(RuntimeError):
    """The push failed; the repository was left as it was (see :func:`publish`)."""


# -- writing one config ----------------------------------------------------------------------------

def _sft_format(ds: datasets.Dataset) -> str | None:
    if "messages" in ds.column_names:
        return "messages"
    if "prompt" in ds.column_names and "completion" in ds.column_names:
        return "prompt-completion"
    return None


def _num_shards(ds: datasets.Dataset, max_shard_size: int | str) -> int:
    from datasets.utils.py_utils import convert_file_size_to_int

    limit = convert_file_size_to_int(max_shard_size)
    size = ds._estimate_nbytes() if len(ds) else 0
    return max(1, min(len(ds), int(math.ceil(size / limit)))) if len(ds) else 1


def _source_of(ds: datasets.Dataset, source: Mapping[str, Any] | None) -> dict[str, Any]:
    if source is not None:
        return dict(source)
    info = ds.info
    name = info.dataset_name or info.builder_name
    return {"dataset": name, "config": info.config_name} if name else {}


def _check_rows_of(ds: datasets.Dataset, selection: Any) -> None:
    """The rows must be (a subset of) what ``selection`` picked: never record another pool's selection."""
    if len(ds) > len(selection.ids):
        raise HubError(f"{len(ds)} rows cannot come from this selection, which picked {len(selection.ids)}: "
                       "save the rows of the selection itself (ds.select(sel.indices))")
    if "crowd_id" not in ds.column_names:
        return
    picked = set(selection.ids)
    foreign = [i for i in ds.unique("crowd_id") if i not in picked]
    if foreign:
        raise HubError(f"{len(foreign)} of these rows were not picked by this selection (crowd_id {foreign[0]!r}, …): "
                       "save the rows of the selection itself (ds.select(sel.indices))")


def stage_config(ds: datasets.Dataset, root: str | os.PathLike, config_name: str, *, selection: Any = None,
                 crowd: Any = None, source: Mapping[str, Any] | None = None, existing: DatasetCard | None = None,
                 license: str | None = None, repo_ref: str | None = None, pretty_name: str | None = None,
                 max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE) -> list[str]:
    """Write one config and the merged card into ``root`` (an empty staging folder).

    Returns:
        The written files, relative to ``root`` (POSIX paths, as they go into a repo).
    """
    root = Path(root)
    written, entry, info = _stage_rows(ds, root, config_name, selection=selection, crowd=crowd, source=source,
                                       max_shard_size=max_shard_size)
    card = merge_card(existing, config_name, entry, dataset_info=info, license=license or ds.info.license or None,
                      repo_ref=repo_ref, pretty_name=pretty_name)
    (root / README).write_text(card_text(card), encoding="utf-8")
    return written + [README]


def _stage_rows(ds: datasets.Dataset, root: Path, config_name: str, *, selection: Any, crowd: Any,
                source: Mapping[str, Any] | None, max_shard_size: int | str) -> tuple[list[str], dict, Any]:
    """Write the config's shards and sidecar into ``root/<config>``; return them, its card entry and its info."""
    if not isinstance(ds, datasets.Dataset):
        raise TypeError(f"expected a datasets.Dataset, got {type(ds).__name__}")
    if len(ds) == 0:
        raise HubError(f"the rows to save as config {config_name!r} are empty (0 rows); a curated config needs at "
                       "least one row: check the filter or selection that produced them")
    if selection is not None:
        _check_rows_of(ds, selection)
    written: list[str] = []
    n = _num_shards(ds, max_shard_size)
    num_bytes = 0
    for i in range(n):
        rel = f"{config_name}/{SPLIT}-{i:05d}-of-{n:05d}.parquet"
        (root / config_name).mkdir(parents=True, exist_ok=True)
        shard = ds.shard(num_shards=n, index=i, contiguous=True) if n > 1 else ds
        shard.to_parquet(str(root / rel))
        num_bytes += (root / rel).stat().st_size
        written.append(rel)

    source = _source_of(ds, source)
    record = None
    if selection is not None:
        record = selection.record.saved_as(config_name, len(ds), {**source, "fingerprint": ds._fingerprint},
                                           crowd.to_dict() if crowd is not None else None)
        written += [p.relative_to(root).as_posix() for p in write_record(root / config_name, record, selection.pool_table())]

    info = datasets.DatasetInfo(
        config_name=config_name, features=ds.features,
        splits=datasets.SplitDict({SPLIT: datasets.SplitInfo(name=SPLIT, num_bytes=ds.data.nbytes if len(ds) else 0,
                                                             num_examples=len(ds))}),
        download_size=num_bytes, dataset_size=ds.data.nbytes if len(ds) else 0,
    )
    entry = config_entry(config_name, rows=len(ds), format=_sft_format(ds), record=record,
                         source=source, fingerprint=ds._fingerprint)
    return written, entry, info


def save_local(ds: datasets.Dataset, folder: str | os.PathLike, config_name: str, selection: Any = None,
               overwrite: bool = False, *, crowd: Any = None, source: Mapping[str, Any] | None = None,
               license: str | None = None, pretty_name: str | None = None, repo_ref: str | None = None,
               max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE) -> Path:
    """Write ``ds`` as config ``config_name`` of a Hub-shaped folder that
    ``datasets.load_dataset(folder, config_name)`` loads offline.

    Other configs of the folder are kept; the shared README.md is merged, never replaced
    wholesale. A save is atomic and isolated: writers of one folder merge the card one at a time
    under the folder's lock, everything is staged and flushed to disk before anything moves, and
    a save killed at any instant is finished or rolled back by the next open of the folder (see
    :mod:`crowdselect_hf.transaction`).

    Args:
        ds: the rows (usually :func:`~crowdselect_hf.to_sft` output).
        folder: the Hub-shaped folder (created if needed).
        config_name: the config to write.
        selection: the ``Selection`` that chose the rows: its ``pool_table()`` and a
            ``selection.json`` go to ``<config>/_crowdselect/``, its parameters into the card.
        overwrite: replace an existing config of that name (otherwise :class:`ConfigExistsError`).
        crowd: the ``Crowd`` that answered (recorded in the card and ``selection.json``).
        source: the source pool, e.g. ``{"dataset": ..., "split": "train", "revision": ...}``.
        license: the licence; default: the source's (``ds.info.license``), else the card's, else ``"other"``.
        pretty_name: the card's title.
        repo_ref: how the card tells readers to load it (default: the folder path).
        max_shard_size: the largest Parquet shard (e.g. ``"500MB"``).

    Returns:
        The folder.

    Example:
        >>> import datasets, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> ds = datasets.Dataset.from_dict({"messages": [[{"role": "user", "content": "Hi"},
        ...                                                {"role": "assistant", "content": "Hello"}]]})
        >>> _ = save_local(ds, folder, "tiny", license="apache-2.0")
        >>> config_names(folder)
        ['tiny']
        >>> datasets.load_dataset(folder, "tiny", split="train")[0]["messages"][1]["content"]
        'Hello'
    """
    check_config_name(config_name)
    folder = check_out_path(folder)
    if is_save_to_disk(folder):
        raise HubError(f"{str(folder)!r} is a save_to_disk folder (state.json / dataset_info.json), not a curated one; "
                       "a curated set written into it would mix with its Arrow files: choose another folder")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / config_name

    def refuse_existing(card: DatasetCard | None) -> None:
        known = card_configs(card)
        if (config_name in known or target.exists()) and not overwrite:
            raise ConfigExistsError(f"config {config_name!r} already exists in {str(folder)!r} (configs: {known}); "
                                    "pass --overwrite (the overwrite argument in Python) to replace it")

    def card() -> str:  # under the folder's lock: the card as it is now, merged with this config
        existing = read_card(folder)
        refuse_existing(existing)
        return card_text(merge_card(existing, config_name, entry, dataset_info=info,
                                    license=license or ds.info.license or None, repo_ref=repo_ref or str(folder),
                                    pretty_name=pretty_name))

    try:
        recover(folder)
        if target.exists() and not overwrite:  # fail before staging anything; checked again under the lock
            refuse_existing(read_card(folder))
        with ConfigSwap(folder, config_name) as swap:
            _, entry, info = _stage_rows(ds, swap.root, config_name, selection=selection, crowd=crowd, source=source,
                                         max_shard_size=max_shard_size)
            swap.commit(card)
    except BaseException:
        if created:
            remove_if_empty(folder)
        raise
    logger.info("saved config %r (%d rows) to %s", config_name, len(ds), folder)
    return folder


# -- publishing ----------------------------------------------------------------------------------

def publish(ds: datasets.Dataset, repo_id: str, config_name: str, selection: Any = None, private: bool | None = None,
            token: str | None = None, revision: str | None = None, create_pr: bool = False, *, crowd: Any = None,
            source: Mapping[str, Any] | None = None, license: str | None = None, pretty_name: str | None = None,
            overwrite: bool = False, commit_message: str | None = None,
            max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE) -> str:
    """Push ``ds`` as config ``config_name`` of the dataset repo ``repo_id``, with its card.

    Consistency: the current card is read at the head commit, the whole config (Parquet shards,
    ``_crowdselect/`` files, the merged README.md) is built in a local temporary folder, and
    everything — including deleting the config's stale shards — goes in ONE
    ``HfApi.create_commit`` whose ``parent_commit`` is that head. A commit is atomic on the Hub,
    so the repo gets all of it or nothing; if someone else committed in between, the commit is
    refused instead of overwriting their card. Files uploaded to LFS before a refused commit are
    not part of any revision.

    ``HF_ENDPOINT`` and ``HF_TOKEN`` are honoured through ``huggingface_hub``; the token is
    never printed or logged.

    Args:
        ds: the rows (usually :func:`~crowdselect_hf.to_sft` output).
        repo_id: ``owner/name`` of the dataset repo (created if missing, with ``private``).
        config_name: the config to write; other configs of the repo are kept.
        selection: the ``Selection`` behind the rows (sidecar files and card parameters).
        private: visibility if the repo has to be created (an existing repo keeps its own);
            ``None``: the Hub's default.
        token: a Hub token; default ``HF_TOKEN`` or the saved login.
        revision: the branch to commit to (default ``main``).
        create_pr: open a pull request instead of committing to the branch.
        crowd, source, license, pretty_name, max_shard_size: as in :func:`save_local`.
        overwrite: replace an existing config of that name.
        commit_message: default ``"Add <config> (crowdselect-hf)"``.

    Returns:
        The commit URL (the pull-request URL with ``create_pr=True``).

    Example:
        >>> publish(ds, "me/magpie-crowdselect", "crowdselect-1k", selection=sel, crowd=crowd)  # doctest: +SKIP
        'https://huggingface.co/datasets/me/magpie-crowdselect/commit/...'
    """
    def build(tmp: str, existing: DatasetCard | None) -> list[str]:
        return stage_config(ds, tmp, config_name, selection=selection, crowd=crowd, source=source, existing=existing,
                            license=license, repo_ref=repo_id, pretty_name=pretty_name, max_shard_size=max_shard_size)

    url = _push(repo_id, config_name, build, private=private, token=token, revision=revision, create_pr=create_pr,
                overwrite=overwrite, commit_message=commit_message)
    logger.info("published config %r (%d rows) to %s", config_name, len(ds), url)
    return url


def publish_folder(folder: str | os.PathLike, repo_id: str, config_name: str | None = None, private: bool | None = None,
                   token: str | None = None, revision: str | None = None, create_pr: bool = False, *,
                   overwrite: bool = False, commit_message: str | None = None) -> str:
    """Push one config of a Hub-shaped folder written by :func:`save_local`, as it is.

    The config's files (Parquet shards and ``_crowdselect/``) are uploaded byte for byte; its
    ``configs:``, ``dataset_info`` and ``crowdselect:`` entries are merged into the repo's card.
    Same single-commit consistency as :func:`publish`.

    Args:
        folder: the Hub-shaped folder.
        repo_id: ``owner/name`` of the dataset repo.
        config_name: the config to push; default: the folder's only config.
        private, token, revision, create_pr, overwrite, commit_message: as in :func:`publish`.

    Returns:
        The commit URL (the pull-request URL with ``create_pr=True``).
    """
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    folder = Path(folder).expanduser()
    recover(folder)
    local = read_card(folder)
    config_name = _one_config(folder, card_configs(local), config_name)
    entry = dict((local.data.get(CARD_FIELD) or {}).get(config_name) or {})
    data_files = MetadataConfigs.from_dataset_card_data(local.data)[config_name].get("data_files")
    info = DatasetInfosDict.from_dataset_card_data(local.data).get(config_name)
    files = sorted(p for p in (folder / config_name).rglob("*") if p.is_file())

    def build(tmp: str, existing: DatasetCard | None) -> list[str]:
        card = merge_card(existing, config_name, entry, data_files=data_files, dataset_info=info,
                          license=local.data.get("license"), repo_ref=repo_id, pretty_name=local.data.get("pretty_name"))
        (Path(tmp) / README).write_text(card_text(card), encoding="utf-8")
        return [README] + [p.relative_to(folder).as_posix() for p in files]

    def source_of(rel: str, tmp: str) -> str:
        return str(Path(tmp) / rel) if rel == README else str(folder / rel)

    return _push(repo_id, config_name, build, private=private, token=token, revision=revision, create_pr=create_pr,
                 overwrite=overwrite, commit_message=commit_message, source_of=source_of)


def _push(repo_id: str, config_name: str, build, *, private, token, revision, create_pr, overwrite, commit_message,
          source_of=None) -> str:
    """Read the repo's head and card, build the config with ``build(tmp, existing_card)`` (which
    returns the repo paths to upload), and commit everything in one commit on that head."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    check_repo_id(repo_id)
    check_config_name(config_name)
    api = HfApi(token=token)
    try:
        try:
            info = api.repo_info(repo_id, repo_type="dataset", revision=revision)
        except RepositoryNotFoundError:  # created only once we know we will write to it
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            info = api.repo_info(repo_id, repo_type="dataset", revision=revision)
        parent = info.sha
        remote = [s.rfilename for s in (info.siblings or [])]
        existing = None
        if README in remote:
            path = api.hf_hub_download(repo_id, README, repo_type="dataset", revision=parent)
            existing = card_of(Path(path).read_text(encoding="utf-8"), f"the card of {repo_id!r}{_at(revision)}")
    except (HfHubHTTPError, OSError) as e:
        raise PublishError(f"cannot read dataset repo {repo_id!r}{_at(revision)}: {_scrub(e, token)}; nothing was changed") from None
    known = card_configs(existing)
    stale = [f for f in remote if f.startswith(config_name + "/")]
    if (config_name in known or stale) and not overwrite:
        raise ConfigExistsError(f"config {config_name!r} already exists in {repo_id!r}{_at(revision)} (configs: {known}); "
                                "pass --overwrite (the overwrite argument in Python) to replace it")
    with tempfile.TemporaryDirectory(prefix="crowdselect-publish-") as tmp:
        files = build(tmp, existing)
        where = source_of or (lambda rel, tmp: str(Path(tmp) / rel))
        operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=where(f, tmp)) for f in files]
        operations += [CommitOperationDelete(path_in_repo=f) for f in stale if f not in files]
        try:
            commit = api.create_commit(
                repo_id, operations, commit_message=commit_message or f"Add {config_name} (crowdselect-hf)",
                repo_type="dataset", revision=revision, create_pr=create_pr, parent_commit=parent,
            )
        except (HfHubHTTPError, OSError) as e:
            raise PublishError(f"pushing config {config_name!r} to {repo_id!r}{_at(revision)} failed: {_scrub(e, token)}; "
                               "no commit was made, the repo is unchanged") from None
    return commit.pr_url if create_pr and commit.pr_url else commit.commit_url


def _at(revision: str | None) -> str:
    return f" at revision {revision!r}" if revision else ""


def _scrub(error: BaseException, token: str | None) -> str:
    text = str(error) or type(error).__name__
    for secret in {token, os.environ.get("HF_TOKEN")} - {None, ""}:
        text = text.replace(secret, "***")
    return text


# -- loading by name -------------------------------------------------------------------------------

def _load_folder(folder: Path, config: str | None, split: str | None, **kwargs: Any):
    with reading(folder):  # no swap is half done while we read, and an interrupted one is put right first
        card = read_card(folder)
        config = _one_config(folder, card_configs(card), config)
        check_data_files(folder, card, config)
        return datasets.load_dataset(str(folder), config, split=split, **kwargs)


def _one_config(folder: Path, known: list[str], config: str | None) -> str:
    """``config`` if the folder's card lists it, else its only config; otherwise an error listing them."""
    if not known:
        if is_save_to_disk(folder):
            raise HubError(f"{str(folder)!r} is a save_to_disk folder, not a curated one: open it with "
                           "datasets.load_from_disk")
        raise HubError(f"{str(folder)!r} is not a Hub-shaped folder: "
                       + ("its README.md has no 'configs:' block" if (folder / README).is_file() else "it has no README.md")
                       + " (write one with crowdselect_hf.save_local or `crowdselect select`)")
    if config is None:
        if len(known) != 1:
            raise HubError(f"{str(folder)!r} holds several configs ({', '.join(known)}); choose one with "
                           "--config-name (config_name= in Python)")
        return known[0]
    if config not in known:
        raise HubError(f"config {config!r} is not in {str(folder)!r}; its configs: {', '.join(known)}")
    return config


def _looks_like_path(name: str) -> bool:
    """A name no repo id can be: it starts like a path (or has a Windows separator)."""
    return name.startswith((".", "/", "~")) or (os.sep != "/" and os.sep in name)


def load_selected(name_or_repo: str | os.PathLike, config: str | None = None, split: str | None = SPLIT, *,
                  revision: str | None = None, **load_kwargs: Any):
    """Load a curated set by recipe name, repo id or local folder.

    Resolution, in order:

    1. an existing local folder → ``load_dataset(folder, config)``;
    2. a recipe name (:func:`~crowdselect_hf.recipes.list_recipes`) → its target config, from its
       local build (``crowdselect build <recipe>`` writes to
       :func:`local_set_dir`) if there is one, else from its target repo on the Hub;
    3. ``owner/name`` → ``load_dataset(repo_id, config, revision=revision)``.

    Args:
        name_or_repo: a recipe name, a dataset repo id, or a folder.
        config: the config; default: the recipe's, or the only one of a folder.
        split: the split (``None`` for a ``DatasetDict``).
        revision: the Hub revision.
        **load_kwargs: passed to ``datasets.load_dataset``.

    Returns:
        What ``datasets.load_dataset`` returns.

    Example:
        >>> ds = load_selected("crowdselect-1k")  # doctest: +SKIP
    """
    path = Path(name_or_repo).expanduser()
    if path.is_dir():
        return _load_folder(path, config, split, **load_kwargs)
    name = str(name_or_repo)
    if path.exists() or (_looks_like_path(name) and find_recipe(name) is None):
        what = f"{name!r} is a file, not a folder" if path.exists() else f"there is no folder {name!r}"
        raise HubError(f"{what}: load_selected expects a curated folder (written by save_local or `crowdselect "
                       f"select`), a recipe name ({', '.join(list_recipes())}) or a dataset repo id 'owner/name'; "
                       "check the path")
    recipe = find_recipe(name)
    if recipe is not None:
        repo_id, config = recipe.repo_id, config or recipe.config
        local = local_set_dir(repo_id)
        if config in config_names(local):
            return _load_folder(local, config, split, **load_kwargs)
    elif "/" not in name:
        raise RecipeError(f"unknown recipe {name!r}; known recipes: {list_recipes()} "
                          "(or pass a dataset repo id 'owner/name' or a local folder)")
    else:
        repo_id = check_repo_id(name)
        recipe = next((r for r in all_recipes() if r.repo_id == repo_id and config in (None, r.config)), None)
    try:
        return datasets.load_dataset(repo_id, config, split=split, revision=revision, **load_kwargs)
    except (ConnectionError, datasets.exceptions.DatasetNotFoundError, FileNotFoundError) as e:
        hint = (f"build it locally with `crowdselect build {recipe.name}` (writes to "
                f"{local_set_dir(repo_id)}, which load_selected({recipe.name!r}) reads), then load it again"
                if recipe is not None else f"check the repo id (there is no local folder {name!r} either), or build the "
                "set locally and pass its folder")
        raise HubError(f"cannot load {repo_id!r} (config {config!r}): {e}. It is not in the local cache and the Hub "
                       f"cannot give it (offline, unreachable, or not published): {hint}") from None
