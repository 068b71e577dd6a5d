"""Publishing under faults: concurrent writers, writers killed mid-save, and hostile folders and names.

Writers run as real processes, forked from one ``forkserver`` that has imported the package once
(a fresh interpreter per writer costs seconds on a 2-core machine). Every kill is a real
``SIGKILL`` (or ``SIGTERM``, whose default action is as abrupt) of such a process, on a seeded
schedule. The rows are real: small selections of the shipped GSM8K crowd table.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import random
import shutil
import signal
import time
from pathlib import Path

import datasets
import pytest
import yaml
from filelock import FileLock

from crowdselect_hf import transaction
from crowdselect_hf.card import parse_card
from crowdselect_hf.hub import ConfigExistsError, HubError, check_table_out, config_names, load_selected, save_local

pytestmark = pytest.mark.unit

SOURCE = {"dataset": "zeroeval_gsm (tests)", "split": "train"}
STAGING = ".crowdselect"  # every transient folder a save makes starts so
LOG = "crowdselect_hf.transaction"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _in_memory(ds: datasets.Dataset) -> datasets.Dataset:
    """The rows as an in-memory table (pickled whole to a writer, not as a cache-file path)."""
    return datasets.Dataset.from_dict(ds.to_dict(), features=ds.features)


def _same(a: datasets.Dataset, b: datasets.Dataset) -> bool:
    """Row-for-row equality, NaN equal to NaN (the GSM table has NaN stabilities)."""
    return json.dumps(a.to_list(), sort_keys=True, default=str) == json.dumps(b.to_list(), sort_keys=True, default=str)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(STAGING))


def _card(folder: Path):
    return parse_card((folder / "README.md").read_text(encoding="utf-8")).data


@pytest.fixture(scope="module")
def versions(gsm_scored, gsm_crowd):
    """Two different versions of one config: (selection, SFT rows) of 8 rows and of 5 rows."""
    from crowdselect_hf.selection import crowd_select
    from crowdselect_hf.sft import to_sft

    a = crowd_select(gsm_scored, k=8, strategy="reward-top")
    b = crowd_select(gsm_scored, k=5, strategy="random", seed=3)
    return {
        "A": (a, _in_memory(to_sft(gsm_scored.select(a.indices), crowd=gsm_crowd))),
        "B": (b, _in_memory(to_sft(gsm_scored.select(b.indices), format="prompt-completion", crowd=gsm_crowd))),
    }


def _save(folder, name, version, versions, crowd, **kw):
    sel, rows = versions[version]
    return save_local(rows, folder, name, selection=sel, crowd=crowd, source=SOURCE, **kw)


@pytest.fixture(scope="module")
def ctx():
    context = mp.get_context("forkserver")
    # what a writer runs, and the classes of what it is sent (a Selection, a Crowd), imported once
    context.set_forkserver_preload(["crowdselect_hf.hub", "crowdselect_hf.selection", "crowdselect_hf.crowd",
                                    "tests.test_hub_faults"])
    return context


# -- what the writer processes run ---------------------------------------------------------------------

def _writer(folder, name, rows, sel, crowd, start) -> None:
    start.wait(60)
    save_local(rows, folder, name, selection=sel, crowd=crowd, source=SOURCE)


def _card_reader(folder, stop, out) -> None:
    """Read the card every few milliseconds until ``stop``, and once more after; record, per read,
    how many configs it lists, or what was wrong with it."""
    seen = []
    while True:
        last = stop.is_set()
        text = (Path(folder) / "README.md").read_text(encoding="utf-8")
        try:
            head, sep, _ = text.removeprefix("---\n").partition("\n---\n")
            header = yaml.load(head, Loader=_LOADER)
            seen.append(len(header["configs"]) if sep and isinstance(header, dict) else f"cut: {len(text)} chars")
        except (yaml.YAMLError, KeyError, TypeError) as e:
            seen.append(f"{type(e).__name__}: {e}")
        if last:
            break
        time.sleep(0.005)
    out.put(seen)


def _pausing_writer(folder, name, rows, sel, crowd, pause_after, ready, paused, done) -> None:
    """Overwrite ``name``. With ``pause_after``, stop for good right after the rename or replace
    whose destination has that name (".commit", ".old", the config, "README.md"), to be killed
    there; with ``pause_after="parquet"``, right after the shards are written, still staging."""
    def pausing(real):
        def call(*args, **kwargs):
            out = real(*args, **kwargs)
            target = args[1] if len(args) > 1 else None
            if pause_after == "parquet" or (target is not None and Path(target).name == pause_after):
                paused.set()
                time.sleep(120)
            return out
        return call

    if pause_after == "parquet":
        datasets.Dataset.to_parquet = pausing(datasets.Dataset.to_parquet)
    elif pause_after is not None:
        os.rename, os.replace = pausing(os.rename), pausing(os.replace)
    ready.set()
    save_local(rows, folder, name, selection=sel, crowd=crowd, source=SOURCE, overwrite=True)
    done.set()


class Writer:
    """Starts :func:`_pausing_writer` processes and kills them."""

    def __init__(self, ctx, folder, crowd, versions):
        self.ctx, self.folder, self.crowd, self.versions = ctx, folder, crowd, versions

    def start(self, version, pause_after=None, name="target"):
        sel, rows = self.versions[version]
        self.ready, self.paused, self.done = self.ctx.Event(), self.ctx.Event(), self.ctx.Event()
        self.process = self.ctx.Process(target=_pausing_writer, args=(self.folder, name, rows, sel, self.crowd, pause_after,
                                                                      self.ready, self.paused, self.done))
        self.process.start()
        assert self.ready.wait(60)
        if pause_after is not None:
            assert self.paused.wait(60), f"the writer never reached {pause_after!r}"
        return self

    def kill(self, sig=signal.SIGKILL) -> int:
        try:
            os.kill(self.process.pid, sig)
        except ProcessLookupError:  # it had finished
            pass
        self.process.join(60)
        return self.process.exitcode


# -- concurrent writers ------------------------------------------------------------------------------------

def test_concurrent_writers_of_different_configs_all_survive(tmp_path, ctx, versions, gsm_crowd):
    """2 waves × 10 writer processes, each of its own config, released at once into one folder
    (the first wave also races to create it), while a reader reads the card in a loop."""
    folder = tmp_path / "sets"
    sel, rows = versions["A"]
    # Every load parses the shared card (twice, in datasets), and a card of 20 configs is long: keep
    # two columns of the rows (their features go into the card) and a selection record for one
    # writer in five (a record is ~4x the rest of a config's entry).
    rows = rows.select_columns(["messages", "crowd_id"])
    expected = {}
    stop, seen = ctx.Event(), ctx.Queue()
    reader = None
    for wave in range(2):
        start, procs = ctx.Event(), []
        for i in range(10):
            name = f"c{wave}{i}"
            expected[name] = rows.select(range(1 + (wave * 10 + i) % len(rows)))
            record = i % 5 == 0
            procs.append(ctx.Process(target=_writer, args=(folder, name, expected[name], sel if record else None,
                                                           gsm_crowd if record else None, start)))
        for p in procs:
            p.start()
        if wave == 1:
            reader = ctx.Process(target=_card_reader, args=(folder, stop, seen))
            reader.start()
        start.set()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0] * 10, f"wave {wave}: writers failed"
    stop.set()
    reads = seen.get(timeout=60)
    reader.join(30)

    assert config_names(folder) == sorted(expected)
    card = _card(folder)
    assert sorted(card["crowdselect"]) == sorted(c["config_name"] for c in card["dataset_info"]) == sorted(expected)
    for name, want in expected.items():
        assert _same(load_selected(folder, name), want), name
    assert (folder / "c00" / "_crowdselect" / "selection.json").is_file()
    assert _leftovers(folder) == []
    # the reader never saw a half-written card, and the card only ever grew
    assert reads and all(isinstance(n, int) for n in reads), [r for r in reads if not isinstance(r, int)][:3]
    assert reads == sorted(reads) and reads[0] >= 10 and reads[-1] == 20


# -- writers killed mid-save ---------------------------------------------------------------------------------

def _version_on_disk(folder: Path, versions) -> str:
    """Which version config ``target`` holds, checking that all of it (rows, card, record) is that one."""
    ds = load_selected(folder, "target")
    entry = _card(folder)["crowdselect"]["target"]
    record = json.loads((folder / "target" / "_crowdselect" / "selection.json").read_text(encoding="utf-8"))
    matches = [v for v, (_, rows) in versions.items() if _same(ds, rows)]
    assert len(matches) == 1, "the rows are neither version"
    sel, rows = versions[matches[0]]
    assert entry["rows"] == record["rows"] == len(rows) and record["k"] == entry["record"]["k"] == len(sel.indices)
    assert record["strategy"] == entry["record"]["strategy"] == sel.record.strategy
    return matches[0]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_killed_overwrite_leaves_old_or_new_config_complete(tmp_path, ctx, versions, gsm_crowd, caplog):
    """52 overwrites killed on a seeded schedule: 16 right after each step of the swap (the
    commit mark, the old config moved out — the rename window —, the new one moved in, the card
    replaced) and 36 at random instants from the save's start to 1.2x its length; after each kill
    the next open finds one version whole, and no staging folder."""
    folder = tmp_path / "sets"
    _save(folder, "keep", "B", versions, gsm_crowd)
    _save(folder, "target", "A", versions, gsm_crowd)
    keep = _files(folder / "keep")
    writer = Writer(ctx, folder, gsm_crowd, versions)

    w = writer.start("B")  # undisturbed: how long a save takes here, from its start to its end
    t0 = time.perf_counter()
    assert w.done.wait(60)
    duration = time.perf_counter() - t0
    assert w.kill() in (0, -signal.SIGKILL) and _version_on_disk(folder, versions) == "B"

    rng = random.Random(20251212)
    steps = [".commit", ".old", "target", "README.md"]
    schedule = [("step", steps[i % 4]) for i in range(16)] + [("time", rng.uniform(0, 1.2 * duration)) for _ in range(36)]
    rng.shuffle(schedule)
    current, outcomes = "B", {"old": 0, "new": 0, "finished": 0, "removed": 0}
    for i, (kind, at) in enumerate(schedule):
        new = "A" if current == "B" else "B"
        sig = signal.SIGTERM if i % 6 == 5 else signal.SIGKILL
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=LOG):
            w = writer.start(new, pause_after=at if kind == "step" else None)
            if kind == "time":
                time.sleep(at)
            code = w.kill(sig)
            if i % 5 == 4:  # the next open is a save of another config (else a load)
                _save(folder, "other", "B", versions, gsm_crowd, overwrite=True)
            now = _version_on_disk(folder, versions)
        where = f"kill {i} ({kind} {at})"
        assert _leftovers(folder) == [], f"{where}: staging left after the next open"
        assert {"keep", "target"} <= set(config_names(folder)) <= {"keep", "target", "other"}, where
        assert _files(folder / "keep") == keep, where
        lines = [r.getMessage() for r in caplog.records if r.name == LOG]
        assert len(lines) <= 1, lines  # one log line per recovery
        if kind == "step":
            assert code == -sig, f"{where}: the writer was not killed where it paused"
            assert now == new, f"{where}: a committed save was rolled back"
            assert lines and "finished the interrupted save of config 'target'" in lines[0], where
        outcomes["new" if now == new else "old"] += 1
        outcomes["finished"] += any("finished the interrupted save" in m for m in lines)
        outcomes["removed"] += any("unfinished staging folder" in m for m in lines)
        current = now
    assert _same(load_selected(folder, "keep"), versions["B"][1])
    # every kill after the commit mark was finished, and the random kills hit the staging too
    assert outcomes["finished"] >= 16 and outcomes["old"] >= 5 and outcomes["removed"] >= 5, outcomes


def test_kill_between_the_two_renames_of_an_overwrite_is_finished_by_the_next_open(tmp_path, ctx, versions, gsm_crowd):
    folder = tmp_path / "sets"
    _save(folder, "target", "A", versions, gsm_crowd)
    w = Writer(ctx, folder, gsm_crowd, versions).start("B", pause_after=".old")
    assert w.kill() == -signal.SIGKILL
    (stage,) = _leftovers(folder)
    assert not (folder / "target").exists()  # killed inside the window: the old config moved out, the new not in
    assert (folder / stage / ".old").is_dir() and (folder / stage / "target").is_dir()
    assert _version_on_disk(folder, versions) == "B" and _leftovers(folder) == []


def test_stale_staging_left_by_sigterm_is_removed_by_the_next_open(tmp_path, ctx, versions, gsm_crowd, caplog):
    folder = tmp_path / "sets"
    _save(folder, "target", "A", versions, gsm_crowd)
    w = Writer(ctx, folder, gsm_crowd, versions).start("B", pause_after="parquet")
    assert w.kill(signal.SIGTERM) == -signal.SIGTERM
    (stale,) = _leftovers(folder)
    assert any((folder / stale).rglob("*.parquet"))  # it died with rows staged
    with caplog.at_level(logging.WARNING, logger=LOG):
        _save(folder, "second", "B", versions, gsm_crowd)  # the next open: another writer
    assert _leftovers(folder) == []
    (line,) = [r.getMessage() for r in caplog.records if r.name == LOG]
    assert "removed 1 unfinished staging folder" in line and " MB)" in line
    assert _version_on_disk(folder, versions) == "A" and config_names(folder) == ["second", "target"]


def test_a_live_writer_keeps_its_staging_folder(tmp_path, ctx, versions, gsm_crowd):
    """Recovery removes only dead writers' stages: a writer still staging keeps its own."""
    folder = tmp_path / "sets"
    _save(folder, "target", "A", versions, gsm_crowd)
    w = Writer(ctx, folder, gsm_crowd, versions).start("B", pause_after="parquet")
    try:
        (live,) = _leftovers(folder)
        assert not transaction.recover(folder) and _version_on_disk(folder, versions) == "A"
        assert _leftovers(folder) == [live]
    finally:
        w.kill()
    transaction.recover(folder)
    assert _leftovers(folder) == []


def test_interrupted_overwrite_of_version_0_1_is_rolled_back(tmp_path, versions, gsm_crowd, caplog):
    """crowdselect-hf 0.1.0, killed between its two renames, left the old config in a hidden
    ``.crowdselect-old-*`` folder and none in place: the next open puts it back."""
    folder = tmp_path / "sets"
    _save(folder, "target", "A", versions, gsm_crowd)
    (folder / ".crowdselect-old-x1y2").mkdir()
    os.rename(folder / "target", folder / ".crowdselect-old-x1y2" / "target")
    (folder / ".crowdselect-staging-z3").mkdir()  # and its staging folder, never cleaned up
    with caplog.at_level(logging.WARNING, logger=LOG):
        assert _version_on_disk(folder, versions) == "A"
    assert _leftovers(folder) == []
    (line,) = [r.getMessage() for r in caplog.records if r.name == LOG]
    assert "restored config 'target'" in line and "removed 2 unfinished staging folders" in line


def test_writers_wait_for_the_lock_and_say_so_when_it_is_held_too_long(tmp_path, monkeypatch, versions, gsm_crowd):
    folder = tmp_path / "sets"
    _save(folder, "target", "A", versions, gsm_crowd)
    monkeypatch.setattr(transaction, "LOCK_TIMEOUT_S", 0.2)
    with FileLock(str(folder / transaction.LOCK_FILE)):
        with pytest.raises(HubError, match=r"another process has held the lock '.*\.writers\.lock' for over 0.2 s; wait"):
            save_local(versions["B"][1], folder, "second")
    assert config_names(folder) == ["target"] and _leftovers(folder) == []


# -- foreign folders, colliding names, broken folders -------------------------------------------------------

@pytest.mark.parametrize("name", ["README.md", "readme.MD", "state.json", "dataset_info.json", "dataset_dict.json"])
def test_config_name_that_collides_with_the_folders_own_files_is_refused(tmp_path, versions, name):
    with pytest.raises(HubError, match=rf"config name {name!r} is the name of one of a curated folder's own files"):
        save_local(versions["A"][1], tmp_path / "sets", name)
    assert not (tmp_path / "sets").exists()


def test_score_out_into_a_curated_folder_is_refused(tmp_path, versions, gsm_crowd, gsm_dir, capsys):
    from crowdselect_hf import cli

    folder = tmp_path / "sets"
    _save(folder, "target", "A", versions, gsm_crowd)
    before = _files(folder)
    cases = {folder: "is a curated folder (configs: target); a table written there would replace its files and its "
                     "configs would no longer load: choose another --out",
             folder / "target" / "scored.parquet": "is inside config 'target' of a curated folder, among its data files: "
                                                   "choose another --out"}
    for out, why in cases.items():
        assert cli.main(["-q", "score", str(gsm_dir / "zoo.parquet"), "--out", str(out)]) == 1
        assert f"crowdselect score: error: --out '{out}' {why}" in capsys.readouterr().err
    assert _files(folder) == before and _version_on_disk(folder, versions) == "A"
    # what stays allowed: a new folder, an existing save_to_disk folder, a .parquet file written before
    versions["A"][1].to_parquet(str(tmp_path / "scored.parquet"))
    versions["A"][1].save_to_disk(str(tmp_path / "scored"))
    for out in (tmp_path / "new", tmp_path / "scored", tmp_path / "scored.parquet", folder / "scored.parquet"):
        assert check_table_out(out) == out


def test_curated_set_over_a_save_to_disk_folder_is_refused(tmp_path, versions):
    folder = tmp_path / "saved"
    versions["A"][1].save_to_disk(str(folder))
    before = _files(folder)
    with pytest.raises(HubError, match=r"is a save_to_disk folder .*choose another folder"):
        save_local(versions["B"][1], folder, "target")
    assert _files(folder) == before
    assert _same(datasets.load_from_disk(str(folder)), versions["A"][1])
    with pytest.raises(HubError, match=r"is a save_to_disk folder, not a curated one: open it with datasets.load_from_disk"):
        load_selected(folder)


def test_card_with_broken_yaml_is_a_clear_error(tmp_path, versions, gsm_crowd):
    folder = tmp_path / "sets"
    _save(folder, "target", "A", versions, gsm_crowd)
    text = (folder / "README.md").read_text(encoding="utf-8").replace("configs:\n", "configs: [\n", 1)
    (folder / "README.md").write_text(text, encoding="utf-8")
    line = text.splitlines().index("configs: [") + 2  # where the parser finds the flow sequence broken
    broken = rf"the card '.*README.md' has YAML metadata that cannot be read at line {line} \(.*\); fix the YAML"
    with pytest.raises(HubError, match=broken):
        load_selected(folder, "target")
    with pytest.raises(HubError, match=broken):
        save_local(versions["B"][1], folder, "second")
    assert (folder / "README.md").read_text(encoding="utf-8") == text  # never overwritten
    assert _leftovers(folder) == [] and not (folder / "second").exists()


def test_deleted_shards_are_a_clear_error(tmp_path, versions, gsm_crowd):
    folder = tmp_path / "sets"
    sel, rows = versions["A"]
    save_local(rows, folder, "three", max_shard_size=2_000)  # several shards
    shards = sorted((folder / "three").glob("train-*.parquet"))
    assert len(shards) >= 3 and len(load_selected(folder, "three")) == len(rows)
    shards[1].unlink()
    with pytest.raises(HubError, match=rf"config 'three' of .* is missing 1 of its {len(shards)} shards \(e.g. shard 1 of "
                                       r"'three/train-\*'\): restore them, or write the config again"):
        load_selected(folder, "three")
    _save(folder, "target", "A", versions, gsm_crowd)
    shutil.rmtree(folder / "target")
    with pytest.raises(HubError, match=r"config 'target' of .* has no data files matching 'target/train-\*' \(deleted or "
                                       r"moved\?\): restore them"):
        load_selected(folder, "target")


def test_load_of_a_missing_folder_is_a_clear_error(tmp_path):
    missing = tmp_path / "no" / "such" / "set"
    with pytest.raises(HubError, match=r"there is no folder '.*/no/such/set': load_selected expects a curated folder .*"
                                       r"a recipe name \(.*crowdselect-1k.*\) or a dataset repo id 'owner/name'; check the path"):
        load_selected(missing)
    with pytest.raises(HubError, match=r"there is no folder './curated'"):
        load_selected("./curated")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(HubError, match=r"'.*notes.txt' is a file, not a folder: load_selected expects"):
        load_selected(tmp_path / "notes.txt")
    with pytest.raises(HubError, match=r"'.*' is not a Hub-shaped folder: it has no README.md"):
        load_selected(tmp_path)


def test_out_under_a_file_is_a_clear_error(tmp_path, versions, gsm_dir, capsys):
    from crowdselect_hf import cli

    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(HubError, match=r"folder '.*notes.txt/sets' cannot be created: '.*notes.txt' is a file, not a folder"):
        save_local(versions["A"][1], notes / "sets", "target")
    with pytest.raises(HubError, match=r"folder '.*notes.txt' is a file, not a folder; choose a folder"):
        save_local(versions["A"][1], notes, "target")
    assert cli.main(["-q", "score", str(gsm_dir / "zoo.parquet"), "--out", str(notes / "scored.parquet")]) == 1
    assert f"error: --out '{notes}/scored.parquet' cannot be created: '{notes}' is a file, not a folder" in capsys.readouterr().err
    assert notes.read_text() == "x"


def test_empty_rows_are_refused_by_save_local(tmp_path, versions):
    with pytest.raises(HubError, match=r"the rows to save as config 'target' are empty \(0 rows\)"):
        save_local(versions["A"][1].select([]), tmp_path / "sets", "target")
    assert not (tmp_path / "sets").exists()


def test_rows_of_another_selection_are_refused_by_save_local(tmp_path, versions, gsm_crowd):
    (_, rows_a), (sel_b, _) = versions["A"], versions["B"]
    with pytest.raises(HubError, match=r"8 rows cannot come from this selection, which picked 5"):
        save_local(rows_a.remove_columns("crowd_id"), tmp_path / "sets", "target", selection=sel_b)
    with pytest.raises(HubError, match=r"of these rows were not picked by this selection"):
        save_local(rows_a.select(range(5)), tmp_path / "sets", "target", selection=sel_b)
    assert not (tmp_path / "sets").exists()


def test_existing_config_is_refused_under_the_lock_too(tmp_path, versions, gsm_crowd):
    """A config the card lists but whose folder is gone is still 'existing': refused, card kept."""
    folder = tmp_path / "sets"
    _save(folder, "target", "A", versions, gsm_crowd)
    shutil.rmtree(folder / "target")
    before = (folder / "README.md").read_text(encoding="utf-8")
    with pytest.raises(ConfigExistsError, match=r"config 'target' already exists .*\['target'\]"):
        _save(folder, "target", "B", versions, gsm_crowd)
    assert (folder / "README.md").read_text(encoding="utf-8") == before and _leftovers(folder) == []
