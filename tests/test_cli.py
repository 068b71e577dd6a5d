"""The ``crowdselect`` command, driven as a user would: offline, on small data.

Two runners. ``run`` starts the installed console script in a subprocess; three tests use it because
what they prove is the entry points themselves: ``test_help_of_every_subcommand`` (the console
script), ``test_python_m_and_verbose`` (``python -m crowdselect_hf``; ``-v``/``-q`` on a real stderr)
and ``test_demo_from_an_empty_folder_offline`` (a fresh process in an empty folder). The rest call
``cli.main(argv)`` in this process through ``run_here``: the same argv parsing, error handling and
exit codes, the environment and working folder that ``run`` sets, stdout and stderr captured with
the log lines and warnings a console would show, and what ``main`` switches for the whole process
restored afterwards; each call saves the ~2.5 s a new process spends importing datasets, pyarrow and
torch. Not seen in-process: bytes written straight to file descriptors 1 and 2 (none today).
"""

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from .conftest import GSM_REWARD
from .tiny_models import save_causal_lm, save_reward_model, word_tokenizer, words_of

pytestmark = pytest.mark.slow

SUBCOMMANDS = ("demo", "score", "select", "push", "load", "report", "reward", "generate", "build")


def run(*args, cwd=None, env=None):
    """``crowdselect ARGS`` as a user runs it: the console script, offline, no HF_TOKEN."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "CROWDSELECT_DEBUG")}
    full_env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})})
    exe = Path(sys.executable).parent / "crowdselect"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "crowdselect_hf.cli"]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=600)


@contextlib.contextmanager
def _cli_globals_restored():
    """Undo what ``cli.main`` switches for the whole process: logging (``basicConfig``, ``-q``/``-v``
    levels), datasets' verbosity and progress bars, the warnings filters, torch's seed (``generate``)."""
    root, ours = logging.getLogger(), logging.getLogger("crowdselect_hf")
    handlers, root_level, our_level = root.handlers, root.level, ours.level
    verbosity, bars_off = datasets.logging.get_verbosity(), datasets.are_progress_bars_disabled()
    torch_rng = sys.modules["torch"].random.fork_rng(devices=[]) if "torch" in sys.modules else contextlib.nullcontext()
    root.handlers = []  # pytest's capture handlers sit here; without them main's basicConfig logs to our stderr, as in a console
    try:
        with warnings.catch_warnings(), torch_rng:
            yield
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers = handlers
        root.setLevel(root_level)
        ours.setLevel(our_level)
        datasets.logging.set_verbosity(verbosity)
        if datasets.are_progress_bars_disabled() != bars_off:
            (datasets.disable_progress_bars if bars_off else datasets.enable_progress_bars)()


def _show_warnings_as_a_console_does():
    """The interpreter's default filters (pytest records warnings instead), printed to ``sys.stderr``."""
    warnings.resetwarnings()
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", category, append=True)
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
        warnings.formatwarning(message, category, filename, lineno, line))


def _log_handlers_on(*streams):
    """The handlers that hold one of these streams: datasets and transformers bind theirs at import
    (not logging's last resort, whose ``stream`` is a property that reads ``sys.stderr`` each time)."""
    loggers = [logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)]
    return [h for logger in loggers for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(getattr(type(h), "stream", None), property)
            and any(h.stream is s for s in streams)]


def run_here(*args, cwd=None, env=None):
    """``crowdselect ARGS`` as ``run`` gives it, but ``cli.main`` in this process: same environment
    and working folder (restored afterwards), stdout and stderr captured, ``SystemExit`` (argparse's
    usage errors, ``--help``) turned into the return code."""
    from crowdselect_hf import cli

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("HF_TOKEN", "CROWDSELECT_DEBUG"):
            patch.delenv(name, raising=False)
        for name, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}.items():
            patch.setenv(name, value)
        if cwd is not None:
            patch.chdir(cwd)
        stderr = sys.stderr
        for handler in _log_handlers_on(stderr, sys.__stderr__):
            patch.setattr(handler, "stream", err)
        try:
            with _cli_globals_restored(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                _show_warnings_as_a_console_does()
                try:
                    code = cli.main(argv)
                except SystemExit as e:  # argparse's usage errors and --help; the rest as the interpreter reads them
                    code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
                    if code == 1 and not isinstance(e.code, int):
                        print(e.code, file=sys.stderr)
        finally:
            for handler in _log_handlers_on(err):  # a library first imported during the call must not keep our buffer
                handler.setStream(stderr)
    return subprocess.CompletedProcess(["crowdselect", *argv], code, out.getvalue(), err.getvalue())


PYTHON_SPEAK = ("Traceback", "=True", "=False", "config=", "overwrite=")


def assert_one_line_error(result, *fragments):
    """A failed run that says why in one line, in the CLI's words (flags, not keyword arguments)."""
    assert result.returncode != 0
    for python_word in PYTHON_SPEAK:
        assert python_word not in result.stderr, (python_word, result.stderr)
    last = result.stderr.strip().splitlines()[-1]
    assert "error:" in last
    for fragment in fragments:
        assert fragment in last, (fragment, result.stderr)


@pytest.fixture(scope="module")
def gsm_parquet(gsm_ds, tmp_path_factory):
    """The first 120 questions of the shipped GSM8K crowd table, as a user's Parquet file."""
    path = tmp_path_factory.mktemp("cli-data") / "gsm-120.parquet"
    gsm_ds.select(range(120)).to_parquet(str(path))
    return path


def test_help_of_every_subcommand():
    top = run("--help")
    assert top.returncode == 0
    for sub in SUBCOMMANDS:
        assert sub in top.stdout
    for sub in SUBCOMMANDS:
        result = run(sub, "--help")
        assert result.returncode == 0, (sub, result.stderr)
        assert f"crowdselect {sub}" in result.stdout and "--quiet" in result.stdout
    no_command = run()
    assert no_command.returncode == 2 and "COMMAND" in no_command.stdout


def _subparsers():
    import argparse

    from crowdselect_hf.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return parser, sub.choices


def test_every_subcommand_and_option_has_help_text():
    import argparse

    parser, commands = _subparsers()
    assert set(commands) >= set(SUBCOMMANDS)
    for name, sub in [("crowdselect", parser), *commands.items()]:
        assert sub.description, f"{name} has no description"
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)):
                continue
            text = (action.help or "").strip()
            assert text and text != argparse.SUPPRESS, f"{name} {action.option_strings or action.dest} has no help text"


def test_a_flag_means_one_thing_in_every_subcommand():
    """--config is always the input's subset and --config-name always the curated config; no abbreviations."""
    _, commands = _subparsers()
    for name, sub in commands.items():
        assert not sub.allow_abbrev, name
        flags = {flag: action.help for action in sub._actions for flag in action.option_strings}
        if "--config" in flags:
            assert "input" in flags["--config"], (name, flags["--config"])
        if "--config-name" in flags:
            assert "curated config" in flags["--config-name"], (name, flags["--config-name"])


def test_python_m_and_verbose(tmp_path, gsm_parquet):
    result = subprocess.run([sys.executable, "-m", "crowdselect_hf", "-v", "score", str(gsm_parquet), "--out",
                             str(tmp_path / "s.parquet")], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert "scored 120 rows" in result.stdout and "INFO crowdselect_hf" in result.stderr
    quiet = run("score", gsm_parquet, "--out", tmp_path / "q.parquet", "-q")
    assert quiet.returncode == 0 and quiet.stdout == "" and "INFO" not in quiet.stderr


def test_run_here_sees_what_a_console_sees_and_restores_what_main_switches(tmp_path, gsm_parquet):
    def switches():
        root = logging.getLogger()
        return (datasets.logging.get_verbosity(), datasets.are_progress_bars_disabled(), root.level, list(root.handlers),
                logging.getLogger("crowdselect_hf").level, os.getcwd())

    before = switches()
    verbose = run_here("-v", "score", gsm_parquet, "--out", tmp_path / "s.parquet")
    assert verbose.returncode == 0 and "INFO crowdselect_hf" in verbose.stderr
    quiet = run_here("score", gsm_parquet, "--out", "q.parquet", "-q", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == "" and (tmp_path / "q.parquet").exists()
    assert switches() == before


def test_demo_from_an_empty_folder_offline(tmp_path):
    result = run("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "crowdselect-demo"
    shards = sorted((out / "crowdselect-demo").glob("train-*.parquet"))
    assert shards and (out / "README.md").exists()
    report = out / "crowdselect-demo" / "report.html"
    assert report.exists() and report.stat().st_size > 20_000
    assert str(report) in result.stdout and "trl sft" in result.stdout
    rows = datasets.load_dataset(str(out), "crowdselect-demo", split="train")
    assert len(rows) == 100 and rows[0]["messages"][1]["role"] == "assistant"
    # the demo can be run again: it replaces its own output, and says so
    again = run("demo", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "replaced the earlier demo output" in again.stdout
    assert len(datasets.load_dataset(str(out), "crowdselect-demo", split="train")) == 100


def test_score_select_report_load(tmp_path, gsm_parquet, gsm_dir):
    crowd_file = gsm_dir / "models.json"
    scored = tmp_path / "scored.parquet"
    result = run_here("score", gsm_parquet, "--crowd", crowd_file, "--reward", GSM_REWARD, "--out", scored)
    assert result.returncode == 0, result.stderr
    assert "scored 120 rows" in result.stdout and "policies:" in result.stdout
    table = pq.read_table(scored)
    assert {"crowd_difficulty", "crowd_stability", "crowd_best_model"} <= set(table.column_names)

    result = run_here("select", scored, "--k", 30, "--n-clusters", 3, "--weights", "1,1,2", "--out", tmp_path / "cur",
                      "--config-name", "cs-30", "--crowd", crowd_file, "--reward", GSM_REWARD)
    assert result.returncode == 0, result.stderr
    assert "selected 30 of 120 rows" in result.stdout
    rows = datasets.load_dataset(str(tmp_path / "cur"), "cs-30", split="train")
    assert len(rows) == 30 and set(rows["crowd_id"]) <= set(table.column("crowd_id").to_pylist())
    selection = json.loads((tmp_path / "cur" / "cs-30" / "_crowdselect" / "selection.json").read_text())
    assert selection["k"] == 30 and selection["clustering"]["n_clusters"] == 3

    baseline = run_here("select", gsm_parquet, "--k", 10, "--strategy", "reward-top", "--out", tmp_path / "cur",
                        "--format", "prompt-completion", "--no-report", "--quiet")
    assert baseline.returncode == 0 and baseline.stdout == ""
    assert sorted(datasets.get_dataset_config_names(str(tmp_path / "cur"))) == ["cs-30", "reward-top-10"]

    report = run_here("report", tmp_path / "cur", "--config-name", "reward-top-10", "--out", tmp_path / "r.html")
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")

    again = run_here("select", scored, "--k", 30, "--n-clusters", 3, "--out", tmp_path / "cur", "--config-name", "cs-30")
    assert_one_line_error(again, "cs-30", "--overwrite")
    assert_one_line_error(run_here("select", tmp_path / "cur", "--k", 10), "cs-30", "reward-top-10", "--config")
    ambiguous = run_here("load", tmp_path / "cur")
    assert_one_line_error(ambiguous, "cs-30", "reward-top-10", "--config-name")
    loaded = run_here("load", tmp_path / "cur", "--config-name", "cs-30", "--head", 2)
    assert loaded.returncode == 0, loaded.stderr
    assert "num_rows: 30" in loaded.stdout and loaded.stdout.count('"crowd_id"') == 2


def test_reward_and_generate_with_tiny_models(tmp_path):
    instructions = ["name a red fruit", "say hello to the team", "count to three please"]
    tok = word_tokenizer(words_of(instructions + ["apple", "hello", "one two three"]))
    lm = save_causal_lm(tmp_path / "tiny-a-1b", tok)
    rm = save_reward_model(tmp_path / "rm", tok)
    data = tmp_path / "instructions.jsonl"
    data.write_text("".join(json.dumps({"instruction": t}) + "\n" for t in instructions))

    generated = tmp_path / "crowd.parquet"
    result = run_here("generate", data, "--model", lm, "--max-new-tokens", 4, "--out", generated)
    assert result.returncode == 0, result.stderr
    table = pq.read_table(generated)
    assert table.num_rows == 3 and "tiny-a-1b" in table.column_names

    rewarded = tmp_path / "rewarded.parquet"
    result = run_here("reward", generated, "--model", rm, "--reward-name", "rm", "--out", rewarded)
    assert result.returncode == 0, result.stderr
    scores = [cell["rm"] for cell in pq.read_table(rewarded).column("tiny-a-1b").to_pylist()]
    assert len(scores) == 3 and all(isinstance(s, float) for s in scores)


def test_bad_arguments_give_one_line_errors(tmp_path, gsm_parquet):
    out = tmp_path / "o.parquet"
    assert_one_line_error(run_here("score", tmp_path / "missing.parquet", "--out", out), "no such file or folder")
    too_many = run_here("select", gsm_parquet, "--k", 5000, "--out", tmp_path / "c")
    assert_one_line_error(too_many, "more than the 120 usable rows of the pool")
    bad_weights = run_here("select", gsm_parquet, "--k", 5, "--weights", "1,x,2")
    assert bad_weights.returncode == 2 and "Traceback" not in bad_weights.stderr
    assert "weights must be three numbers" in bad_weights.stderr.strip().splitlines()[-1]
    assert_one_line_error(run_here("select", gsm_parquet, "--k", 5, "--crowd", "no-such-preset"), "neither a file nor a preset")
    assert_one_line_error(run_here("load", "no-such-recipe-or-repo"))
    assert_one_line_error(run_here("report", tmp_path), str(tmp_path))
    assert_one_line_error(run_here("score", gsm_parquet, "--split", "test", "--out", out), "--split test", "one file")
    empty = tmp_path / "empty.parquet"
    pq.write_table(pq.read_table(gsm_parquet).slice(0, 0), empty)
    assert_one_line_error(run_here("score", empty, "--out", out), "has no rows")
    assert_one_line_error(run_here("select", gsm_parquet, "--k", 0), "--k")
    # pushing offline fails cleanly and says nothing was changed
    cur = tmp_path / "cur"
    assert run_here("select", gsm_parquet, "--k", 5, "--strategy", "random", "--out", cur, "--no-report", "-q").returncode == 0
    assert_one_line_error(run_here("push", cur, "me/set", env={"HF_TOKEN": "hf_secret_value"}), "nothing was changed")


def test_the_readme_tour_runs_as_written(tmp_path):
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"## Guided tour.*?```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split() for line in block.splitlines() if line.startswith("crowdselect ")]
    assert [c[1] for c in commands] == ["score", "select", "select", "report", "load", "push"]
    assert run_here("demo", "--quiet", cwd=tmp_path).returncode == 0
    for words in commands:
        if words[1] == "push":  # needs a token and the network; its offline failure is tested above
            continue
        result = run_here(*words[1:], cwd=tmp_path)
        assert result.returncode == 0, (words, result.stderr[-2000:])
    assert sorted(datasets.get_dataset_config_names(str(tmp_path / "curated"))) == ["crowdselect-200", "reward-top-200"]
    assert (tmp_path / "curated" / "crowdselect-200" / "report.html").exists()
