"""``compare()``: train a student on each curated config, let every student answer the same
evaluation prompts, judge them against a baseline config, and write the result where users
look (compare.json, the report, the dataset card).

Stages, each cached in the work folder (:mod:`.cache`), so a re-run after a crash resumes at the
stage that failed: evaluation set → training (per config, from TRL checkpoints) → answers → reward
judge → pairwise judge → statistics → compare.json, card and reports. The estimate of the work
is printed before anything starts.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pyarrow as pa

from .._torch import checkpoint_identity
from ..card import SPLIT
from ..columns import read_columns
from ..record import has_record, read_pool, read_record
from .answers import generator_for, student_answers
from .cache import load_table, save_table, stage_key, table_hash
from .config import CompareError, CompareSettings, settings_of
from .estimate import Estimate, StudentCost, count_parameters, optimizer_steps, row_tokens
from .evalset import EVAL_SCHEMA, EvalSet, held_out_slice, load_eval_file, open_dataset
from .judging import failed_calls, judge_generator, pairwise_judgments, reward_scores
from .publish import publish_comparison
from .record import COMPARE_FILE, ComparisonRecord
from .summary import StageOutputs, build_record
from .training import FINAL_DIR, TRAINED_FILE, is_main_process, train_student, world_size
from .verdicts import JUDGE_PROMPT_VERSION, JUDGE_SYSTEM

logger = logging.getLogger(__name__)

STAGE_VERSION = "1"
"""Bumped whenever a stage's outputs for the same settings would change."""


@dataclass
class Comparison:
    """What :func:`compare` did.

    Attributes:
        record: the result (``None`` when it stopped before judging).
        out: the work folder; ``path``: its compare.json.
        stopped_after: the stage it stopped after (``stop_after``, or ``"train"`` under a launcher).
        estimate: the work it printed before starting.
    """

    record: ComparisonRecord | None
    out: Path
    path: Path | None
    stopped_after: str | None
    estimate: Estimate


def compare(folder: str | Path, student: str | None = None, configs: Sequence[str] | str | None = None,
            baseline: str | None = None, *, settings: CompareSettings | None = None,
            say: Callable[[str], Any] | None = print, progress: bool = True, callbacks: Sequence[Any] = (),
            **options: Any) -> Comparison:
    """Train, answer, judge and report — the ``crowdselect compare`` command in Python.

    Args:
        folder: a curated, Hub-shaped folder (``crowdselect select`` / ``save_local``) with at
            least two configs.
        student: the base model every student is fine-tuned from.
        configs: the configs to compare (default: all); ``baseline``: the one the others are
            judged against (default: a ``random-*`` config, else the first).
        settings: all settings at once (instead of keyword options).
        say: where the estimate and the results are printed (``None``: silent).
        progress: show progress bars.
        callbacks: extra ``transformers.TrainerCallback`` objects for every training run.
        options: any field of :mod:`crowdselect_hf.compare.config`'s classes, e.g.
            ``learning_rate=1e-5, lora=True, reward_model=..., judge_model=..., judge_base_url=...,
            eval_size=500, allow_small_eval=False``.

    Returns:
        A :class:`Comparison`.

    Raises:
        CompareError: bad input (named), too few evaluation prompts, no judge, or a stage that
            failed (its partial results are cached; run again to resume).

    Example:
        >>> cmp = compare("curated", "meta-llama/Llama-3.2-3B-Instruct", reward_model="Skywork/Skywork-Reward-Llama-3.1-8B",
        ...               judge_model="gpt-4.1", pool="pool.parquet")  # doctest: +SKIP
        >>> print(cmp.record.results[0].sentence())  # doctest: +SKIP
    """
    if settings is None:
        if configs is not None:
            options["configs"] = tuple(configs.split(",")) if isinstance(configs, str) else tuple(configs)
        settings = settings_of(student=student, baseline=baseline, **options)
    tell = say or (lambda _line: None)
    folder = Path(folder)
    names, baseline = _configs(folder, settings)
    run = settings.run
    out = Path(run.out) if run.out else folder / "_compare"
    records = {c: read_record(folder / c) for c in names}
    pools = {c: read_pool(folder / c) for c in names}
    rows = {c: _training_rows(folder, c) for c in names}
    warnings: list[str] = []

    evalset = _evaluation(folder, settings, names, records, pools, out)
    _check_size(evalset, settings, warnings, tell)
    if not settings.judge.judges and run.stop_after is None:
        raise CompareError("no judge is configured: pass --reward-model (a reward model) and/or --judge-model "
                           "(a pairwise LLM judge on --judge-base-url)")
    train_keys = {c: stage_key(STAGE_VERSION, checkpoint_identity(run.student), table_hash(read_columns(rows[c], rows[c].column_names)),
                               asdict(settings.train)) for c in names}
    estimate = _estimate(settings, names, rows, evalset, out, train_keys)
    for line in estimate.lines():
        tell(line)
    if run.stop_after == "estimate":
        return Comparison(None, out, None, "estimate", estimate)

    students = {}
    for c in names:
        tell(f"[train] {c}")
        students[c] = train_student(rows[c], run.student, out / "students" / c, c, settings.train, train_keys[c],
                                    {"student": run.student, "train": asdict(settings.train)}, retrain=run.retrain,
                                    callbacks=callbacks, progress=progress)
    if world_size() > 1:
        if is_main_process():
            tell("trained every student under a distributed launch; run the same command again without the launcher "
                 "to generate and judge (the students are cached)")
        return Comparison(None, out, None, "train", estimate)
    if run.stop_after == "train":
        return Comparison(None, out, None, "train", estimate)

    outputs = StageOutputs(students=students, answers=_answers(evalset, settings, names, students, out, progress))
    if run.stop_after == "answers":
        return Comparison(None, out, None, "answers", estimate)
    if settings.judge.reward_model:
        outputs.rewards = _rewards(evalset, settings, names, outputs.answers, out, progress)
    if settings.judge.judge_model:
        outputs.judgments = _pairwise(evalset, settings, names, baseline, outputs.answers, out, progress)

    identities = {"student": checkpoint_identity(run.student)}
    if settings.judge.reward_model:
        identities["reward"] = checkpoint_identity(settings.judge.reward_model)
    record = build_record(str(folder), settings, baseline, names, evalset, {c: records[c].strategy for c in names},
                          outputs, warnings, identities)
    path = publish_comparison(folder, out, record, stage_key(record.to_dict()["results"], record.command))
    for r in record.results:
        tell(r.sentence())
    if record.underpowered:
        tell(warnings[0])
    tell(f"compare.json: {path}")
    return Comparison(record, out, path, None, estimate)


def _configs(folder: Path, settings: CompareSettings) -> tuple[list[str], str]:
    """The compared configs (baseline included) and the baseline."""
    if not folder.is_dir():
        raise CompareError(f"{str(folder)!r} is not a folder (expected a curated folder written by `crowdselect select`)")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and has_record(p))
    asked = list(settings.run.configs) or found
    missing = [c for c in asked if c not in found]
    if missing:
        raise CompareError(f"{str(folder)!r} has no config {missing[0]!r} with a selection record; configs found: "
                           f"{', '.join(found) or 'none'}")
    baseline = settings.run.baseline or next((c for c in asked if c.startswith("random")), asked[0] if asked else None)
    if baseline is not None and baseline not in found:
        raise CompareError(f"baseline {baseline!r} is not a config of {str(folder)!r} ({', '.join(found) or 'none'})")
    names = asked if baseline in asked else [baseline, *asked]
    if len(names) < 2:
        raise CompareError(f"a comparison needs at least two configs; {str(folder)!r} has {', '.join(found) or 'none'}")
    return names, baseline


def _training_rows(folder: Path, config: str):
    """The config's training rows (its ``train-*.parquet`` shards), training columns only."""
    import datasets
    import pyarrow.parquet as pq

    files = sorted((folder / config).glob(f"{SPLIT}-*.parquet"))
    if not files:
        raise CompareError(f"config {config!r} has no {SPLIT}-*.parquet rows in {str(folder / config)!r}")
    names = pq.read_schema(files[0]).names
    keep = [c for c in ("messages", "prompt", "completion") if c in names]
    if not keep:
        raise CompareError(f"config {config!r} has no training columns (messages, or prompt + completion): {names}")
    return datasets.Dataset(pa.concat_tables([pq.read_table(f, columns=keep) for f in files]))


def _evaluation(folder: Path, settings: CompareSettings, names: list[str], records, pools, out: Path) -> EvalSet:
    ev = settings.evaluation
    clusters_from = _clusters_source(folder, names, records, pools)
    pool_spec = (ev.pool, "train", None) if ev.pool else _recorded_pool(records, names)
    key = stage_key(STAGE_VERSION, ev.eval_file, ev.eval_split, ev.eval_column, ev.eval_size, ev.eval_seed,
                    None if ev.eval_file else (pool_spec, clusters_from, {c: table_hash(pools[c], ("crowd_id", "crowd_selected"))
                                                                          for c in names}))
    path = out / "eval.parquet"
    cached, complete = load_table(path, key, "evaluation set")
    if cached is not None and complete:
        meta = cached.schema.metadata or {}
        return EvalSet(cached.select(EVAL_SCHEMA.names), _source_of(meta))
    if ev.eval_file:
        evalset = load_eval_file(ev)
    else:
        if pool_spec is None:
            raise CompareError("the held-out evaluation slice needs the pool's instructions, and the selections record no "
                               "loadable source: pass --pool (the crowd table the configs were selected from) or --eval-file")
        pool = open_dataset(pool_spec[0], pool_spec[1], "--pool", revision=pool_spec[2])
        evalset = held_out_slice(pool, pools, names, ev, clusters_from)
    import json

    table = evalset.table.replace_schema_metadata({b"crowdselect.compare.source": json.dumps(dict(evalset.source)).encode()})
    save_table(path, table, key, {"evaluation": asdict(ev), "pool": pool_spec}, complete=True)
    return evalset


def _clusters_source(folder: Path, names: list[str], records, pools) -> str | None:
    """The config whose clusters label the prompts: a clustered compared config, else another
    clustered config of the folder selected from the same pool (its pool table joins ``pools``)."""
    found = next((c for c in names if records[c].clustering is not None), None)
    if found is not None:
        return found
    ids = pools[names[0]].column("crowd_id")
    for p in sorted(folder.iterdir()):
        if p.name in names or not p.is_dir() or not has_record(p) or read_record(p).clustering is None:
            continue
        table = read_pool(p)
        if table.column("crowd_id").equals(ids):
            pools[p.name] = table
            return p.name
    return None


def _source_of(meta) -> dict[str, Any]:
    import json

    raw = meta.get(b"crowdselect.compare.source")
    return json.loads(raw) if raw else {}


def _recorded_pool(records, names: list[str]) -> tuple[str, str, str | None] | None:
    """(dataset, split, revision) the selections recorded as their source, when it can be loaded."""
    sources = {tuple((records[c].source or {}).get(k) for k in ("dataset", "split", "revision")) for c in names}
    sources = {s for s in sources if s[0]}
    if len(sources) > 1:
        raise CompareError(f"the configs were selected from different pools ({', '.join(sorted(s[0] for s in sources))}); "
                           "compare configs of one pool, or pass --eval-file")
    if not sources:
        return None
    spec, split, revision = next(iter(sources))
    loadable = Path(spec).expanduser().exists() or ("/" in spec and not spec.startswith((".", "/", "~")))
    return (spec, split or "train", revision) if loadable else None


def _check_size(evalset: EvalSet, settings: CompareSettings, warnings: list[str], tell) -> None:
    n, n_min = len(evalset), settings.evaluation.min_eval_prompts
    if n == 0:
        raise CompareError("the evaluation set is empty: every pool instruction was selected by a compared config; "
                           "pass --eval-file")
    if n >= n_min:
        return
    why = (f"only {n} evaluation prompts, fewer than the stated minimum of {n_min} (--min-eval-prompts): with so few "
           "prompts the 95% interval of a win rate spans tens of points")
    if not settings.evaluation.allow_small_eval:
        raise CompareError(f"{why}. Draw more (--eval-size, --eval-file), or pass --allow-small-eval to run it marked "
                           "underpowered")
    message = f"WARNING: UNDERPOWERED COMPARISON — {why}; the results are marked underpowered and are not evidence"
    logger.warning(message)
    warnings.append(message)
    tell(message)


def _estimate(settings: CompareSettings, names: list[str], rows, evalset: EvalSet, out: Path, keys) -> Estimate:
    import transformers

    from .cache import read_json

    t = settings.train
    tokenizer = transformers.AutoTokenizer.from_pretrained(settings.run.student)
    costs = []
    for c in names:
        done = read_json(out / "students" / c / TRAINED_FILE)
        cached = done is not None and done.get("key") == keys[c] and (out / "students" / c / FINAL_DIR).is_dir()
        costs.append(StudentCost(c, len(rows[c]), row_tokens(tokenizer, rows[c].to_list(), t.max_length),
                                 optimizer_steps(len(rows[c]), t.epochs, t.train_batch_size, t.grad_accum, t.max_steps,
                                                 world_size()), cached))
    n = len(evalset)
    return Estimate(student=settings.run.student, params=count_parameters(settings.run.student), epochs=t.epochs,
                    lora=t.lora, students=tuple(costs), prompts=n, max_new_tokens=settings.answers.max_new_tokens,
                    reward_pairs=n * len(names) if settings.judge.reward_model else 0,
                    judge_calls=2 * n * (len(names) - 1) if settings.judge.judge_model else 0)


def _bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, unit="call")


def _answers(evalset: EvalSet, settings: CompareSettings, names, students, out: Path, progress: bool) -> dict[str, pa.Table]:
    eval_hash = table_hash(evalset.table, ("prompt_id", "instruction"))
    answers, failed = {}, []
    with _bar(len(evalset) * len(names), "student answers", progress) as bar:
        for c in names:
            key = stage_key(STAGE_VERSION, students[c].key, eval_hash, asdict(settings.answers), settings.train.seed)
            gen = generator_for(c, students[c].path, settings.answers, settings.train.seed)
            answers[c] = student_answers(evalset, c, gen, out / "answers" / f"{c}.parquet", key,
                                         {"answers": asdict(settings.answers), "student": students[c].path}, bar.update)
            missing = answers[c].column("content").null_count
            if missing:
                failed.append(f"{c}: {missing}")
    if failed:
        raise CompareError(f"some prompts got no answer ({'; '.join(failed)}; see answers/*.parquet 'error'); they are "
                           f"cached in {out}: run again to retry only those")
    return answers


def _rewards(evalset: EvalSet, settings: CompareSettings, names, answers, out: Path, progress: bool) -> dict[str, pa.Table]:
    from ..rewards import RewardScorer

    j = settings.judge
    scorer = RewardScorer(j.reward_model, reward_name="reward", batch_size=j.reward_batch_size, max_length=j.reward_max_length)
    rewards = {}
    with _bar(len(evalset) * len(names), "reward judge", progress) as bar:
        for c in names:
            key = stage_key(STAGE_VERSION, table_hash(answers[c], ("prompt_id", "content")), scorer.identity,
                            j.reward_model, j.reward_max_length)
            rewards[c] = reward_scores(evalset, c, answers[c], scorer, out / "rewards" / f"{c}.parquet", key,
                                       {"reward_model": j.reward_model}, bar.update)
    scorer.unload()
    return rewards


def _pairwise(evalset: EvalSet, settings: CompareSettings, names, baseline: str, answers, out: Path,
              progress: bool) -> dict[str, pa.Table]:
    j = settings.judge
    generator = judge_generator(j)
    base_hash = table_hash(answers[baseline], ("prompt_id", "content"))
    judgments, failed, first = {}, 0, None
    candidates = [c for c in names if c != baseline]
    with _bar(2 * len(evalset) * len(candidates), "pairwise judge", progress) as bar:
        for c in candidates:
            # The judge is its model name: the same model behind another URL keeps its judgments.
            key = stage_key(STAGE_VERSION, base_hash, table_hash(answers[c], ("prompt_id", "content")), j.judge_model,
                            j.judge_max_tokens, JUDGE_PROMPT_VERSION, JUDGE_SYSTEM)
            judgments[c] = pairwise_judgments(evalset, answers[baseline], answers[c], generator,
                                              out / "judgments" / f"{c}.parquet", key,
                                              {"judge_model": j.judge_model, "judge_base_url": j.judge_base_url}, bar.update)
            n, error = failed_calls(judgments[c])
            failed, first = failed + n, first or error
    if failed > j.max_failed_calls:
        raise CompareError(f"{failed} pairwise judge calls failed (first error: {first}); the judgments so far are cached "
                           f"in {out / 'judgments'}: run again to ask only those (--max-failed-calls allows some to stay missing)")
    return judgments


__all__ = ["COMPARE_FILE", "Comparison", "compare"]
