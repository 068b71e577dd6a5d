"""How a curated folder changes safely: one committer at a time, and each change all or nothing.

Saving a config (:func:`crowdselect_hf.hub.save_local`) is one :class:`ConfigSwap`:

1. **stage** — a staging folder ``<folder>/.crowdselect-staging-*`` receives the config's files.
   Its writer holds the stage's own lock (``.writer.lock`` inside it) for as long as it runs, so
   a live stage is never mistaken for a dead one;
2. **commit**, under the folder's lock (``<folder>/.writers.lock``): earlier dead swaps are
   recovered, the card is merged from the card on disk *now*, written into the stage, everything
   staged is flushed to disk (``fsync``), and the commit mark ``.commit`` is written — the point
   of no return;
3. **swap** — the old config moves into the stage (``.old``), the new one into place (one
   rename each), the card replaces ``README.md`` (``os.replace``);
4. **clean** — the stage, now holding only the old config, is removed.

Killed at any instant, the folder can be put right: before the commit mark nothing outside the
stage has changed (roll back: delete the stage); after it the stage holds everything needed to
finish (roll forward). :func:`recover` does one or the other for every dead stage, with one log
line, and every lock holder runs it first — the next ``save_local``, ``load_selected`` or
report of the folder, and the next committer, who must not merge into a card that a dead
swap would then replace. It also rolls back the ``.crowdselect-old-*`` folders that
crowdselect-hf 0.1.0 left when killed between its two renames.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock, Timeout

from .names import HubError, check_config_name

logger = logging.getLogger(__name__)

README = "README.md"
LOCK_FILE = ".writers.lock"
STAGING_PREFIX = ".crowdselect-staging-"
LEGACY_OLD_PREFIX = ".crowdselect-old-"
WRITER_LOCK = ".writer.lock"
COMMIT_MARK = ".commit"
OLD = ".old"
LOCK_TIMEOUT_S = 600.0
"""How long a writer (or reader) waits for the folder's lock before it gives up with an error."""


@dataclass
class Recovery:
    """What :func:`recover` did to one folder.

    Attributes:
        finished: configs whose interrupted save was completed (rolled forward).
        restored: configs put back from a 0.1.0-style ``.crowdselect-old-*`` folder (rolled back).
        removed: stale staging folders deleted (their writers died before committing).
        freed_bytes: the disk space those stale folders held.
    """

    finished: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    removed: int = 0
    freed_bytes: int = 0

    def __bool__(self) -> bool:
        return bool(self.finished or self.restored or self.removed)

    def describe(self) -> str:
        parts = [f"finished the interrupted save of config {c!r}" for c in self.finished]
        parts += [f"restored config {c!r} from an interrupted overwrite" for c in self.restored]
        if self.removed:
            parts.append(f"removed {self.removed} unfinished staging folder{'s' if self.removed != 1 else ''} "
                         f"({self.freed_bytes / 1e6:.1f} MB)")
        return "; ".join(parts)


# -- the folder's lock -------------------------------------------------------------------------------

def _lock(path: Path, timeout: float | None = None) -> FileLock:
    timeout = LOCK_TIMEOUT_S if timeout is None else timeout
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise HubError(f"another process has held the lock {str(path)!r} for over {timeout:g} s; wait for that "
                       "save (or load) to finish, then retry") from None
    return lock


@contextmanager
def folder_lock(folder: str | os.PathLike, *, timeout: float | None = None) -> Iterator[Recovery]:
    """Hold ``folder``'s lock, after recovering its dead swaps (see the module docstring).

    Yields:
        What the recovery did.
    """
    folder = Path(folder)
    lock = _lock(folder / LOCK_FILE, timeout)
    try:
        yield _recover_locked(folder)
    finally:
        lock.release()


@contextmanager
def reading(folder: str | os.PathLike, *, timeout: float | None = None) -> Iterator[None]:
    """Hold ``folder``'s lock while reading it, so no swap is half done meanwhile; a folder this
    process cannot write (read-only, someone else's) is read as it is, without lock or recovery."""
    folder = Path(folder)
    if not (folder / README).exists() and not _leftovers(folder):  # not a curated folder: leave no lock file in it
        yield
        return
    try:
        lock = _lock(folder / LOCK_FILE, timeout)
    except OSError as e:
        lock = None
        if _leftovers(folder):
            logger.warning("cannot lock %s to recover its interrupted saves (%s); reading it as it is", folder,
                           e.strerror or e)
    if lock is None:
        yield
        return
    try:
        _recover_locked(folder)
        yield
    finally:
        lock.release()


def recover(folder: str | os.PathLike) -> Recovery:
    """Finish or roll back every interrupted save in ``folder`` and delete stale staging folders.

    Cheap when there is nothing to do (one directory listing, no lock). Logs one line when it
    changed something.

    Example:
        >>> import tempfile
        >>> bool(recover(tempfile.mkdtemp()))
        False
    """
    folder = Path(folder)
    if not _leftovers(folder):
        return Recovery()
    with folder_lock(folder) as done:
        return done


def remove_if_empty(folder: str | os.PathLike) -> bool:
    """Remove ``folder`` if it holds nothing but its lock file (a first save into it failed);
    under the lock, so a writer that has just come in is not pulled from under.

    Returns:
        Whether it was removed.
    """
    folder = Path(folder)
    try:
        lock = _lock(folder / LOCK_FILE)
    except OSError:
        return False
    try:
        if {p.name for p in folder.iterdir()} - {LOCK_FILE}:
            return False
        (folder / LOCK_FILE).unlink()
        folder.rmdir()
        return True
    except OSError:
        return False
    finally:
        lock.release()


def _leftovers(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            return [Path(e.path) for e in entries if e.name.startswith((STAGING_PREFIX, LEGACY_OLD_PREFIX)) and e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _recover_locked(folder: Path) -> Recovery:
    done = Recovery()
    for path in sorted(_leftovers(folder)):
        if path.name.startswith(LEGACY_OLD_PREFIX):
            _recover_legacy(folder, path, done)
        elif (path / COMMIT_MARK).is_file():
            # Committing needs the folder lock, which we hold: this stage's writer is dead.
            done.finished.append(_roll_forward(folder, path))
        elif not _is_live(path):
            done.freed_bytes += _size(path)
            shutil.rmtree(path, ignore_errors=True)
            done.removed += 1
    if done:
        logger.warning("recovered %s: %s", folder, done.describe())
    return done


def _is_live(stage: Path) -> bool:
    probe = FileLock(str(stage / WRITER_LOCK))
    try:
        probe.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:  # the stage vanished meanwhile
        return False
    probe.release()
    return False


def _recover_legacy(folder: Path, trash: Path, done: Recovery) -> None:
    """A ``.crowdselect-old-*/<config>`` of crowdselect-hf 0.1.0: the old config, moved aside."""
    for old in [p for p in trash.iterdir() if p.is_dir()]:
        target = folder / old.name
        if not target.exists():
            os.rename(old, target)
            done.restored.append(old.name)
    done.freed_bytes += _size(trash)
    shutil.rmtree(trash, ignore_errors=True)
    done.removed += 1


def _roll_forward(folder: Path, stage: Path) -> str:
    """Finish a committed swap from wherever it stopped; returns its config name."""
    mark = json.loads((stage / COMMIT_MARK).read_text(encoding="utf-8"))
    config = check_config_name(mark["config"])
    new, old, target = stage / config, stage / OLD, folder / config
    if new.exists():
        if target.exists():
            if old.exists():
                raise HubError(f"cannot finish the interrupted save of config {config!r} in {str(folder)!r}: "
                               f"{str(target)!r} and {str(old)!r} both exist; move one of them away, then retry")
            os.rename(target, old)
        os.rename(new, target)
    if (stage / README).exists():
        os.replace(stage / README, folder / README)
    _fsync_dir(folder)
    shutil.rmtree(stage, ignore_errors=True)
    return config


# -- one swap ---------------------------------------------------------------------------------------

class ConfigSwap:
    """Stage one config of a curated folder, then swap it in atomically (see the module docstring).

    Args:
        folder: the curated folder (it must exist).
        config_name: the config being written.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> with ConfigSwap(folder, "tiny") as swap:
        ...     _ = (swap.config_dir / "train-00000-of-00001.parquet").write_bytes(b"rows")
        ...     swap.commit(lambda: "---\\nconfigs: []\\n---\\n")
        >>> sorted(p.name for p in folder.iterdir())
        ['.writers.lock', 'README.md', 'tiny']
    """

    def __init__(self, folder: str | os.PathLike, config_name: str):
        self.folder = Path(folder)
        self.config_name = check_config_name(config_name)
        self.root: Path | None = None
        self._writer: FileLock | None = None
        self._marked = False

    @property
    def config_dir(self) -> Path:
        """Where the config's files are staged."""
        return self.root / self.config_name

    def __enter__(self) -> "ConfigSwap":
        with folder_lock(self.folder):  # no recovery can see the stage before its writer holds it
            self.root = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.folder))
            self._writer = _lock(self.root / WRITER_LOCK)
        self.config_dir.mkdir()
        return self

    def commit(self, card: Callable[[], str]) -> None:
        """Swap the staged config in, with the card ``card()`` returns.

        ``card`` runs under the folder's lock, after recovery, so it reads the card as it is
        now and no other writer changes it until the swap is done; it may raise to refuse the
        write (e.g. the config exists), and then nothing changes.
        """
        with folder_lock(self.folder):
            text = card()
            (self.root / README).write_text(text, encoding="utf-8")
            _fsync_tree(self.root)
            _write_durably(self.root / COMMIT_MARK, json.dumps({"config": self.config_name, "pid": os.getpid()}))
            self._marked = True
            _roll_forward(self.folder, self.root)

    def __exit__(self, *exc) -> None:
        try:
            if self.root is not None and self.root.exists():
                if self._marked:
                    # The swap stopped half way (an error in a rename): the stage may hold the old
                    # config; the next lock holder finishes it. Never delete it here.
                    logger.warning("the save of config %r into %s was interrupted; the next open of the folder "
                                   "finishes it", self.config_name, self.folder)
                else:
                    shutil.rmtree(self.root, ignore_errors=True)
        finally:
            if self._writer is not None:
                self._writer.release()


# -- durability ----------------------------------------------------------------------------------------

def _write_durably(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            if name == WRITER_LOCK:
                continue
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not supported for folders on this platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total
