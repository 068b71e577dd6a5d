"""The dataset card's "Downstream comparison" block: the evidence a published set carries for its
own quality.

A comparison writes a short ``comparison`` entry into each compared config's ``crowdselect:``
card entry (:func:`card_entry`), so ``push`` carries it with the config; the card body renders
the block from those entries alone (:func:`comparison_lines`, called by :mod:`crowdselect_hf.card`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:  # the card imports this module: nothing here imports the card back
    from .record import ComparisonRecord

CARD_KEY = "comparison"


def card_entry(record: "ComparisonRecord", config: str, key: str, file: str) -> dict[str, Any]:
    """The ``comparison`` entry of one compared config (its results against the baseline);
    ``file``: where the full record is, relative to the curated folder."""
    train = record.settings.get("train", {})
    return {
        "id": key, "baseline": record.baseline, "is_baseline": config == record.baseline, "student": record.student,
        "configs": list(record.configs), "prompts": record.evaluation.get("prompts"),
        "eval": record.evaluation.get("kind"), "underpowered": record.underpowered,
        "min_eval_prompts": record.evaluation.get("min_eval_prompts"),
        "training": {k: train.get(k) for k in ("learning_rate", "epochs", "train_batch_size", "grad_accum", "lora", "seed")},
        "results": [{"judge": r.judge, "n": r.n, "win_rate": r.win_rate, "win_rate_ci": list(r.win_rate_ci), "wins": r.wins,
                     "ties": r.ties, "losses": r.losses, "mean_difference": r.mean_difference,
                     "mean_difference_ci": list(r.mean_difference_ci) if r.mean_difference_ci else None,
                     "p_adjusted": r.p_adjusted, "significant": r.significant, "alpha": r.alpha}
                    for r in record.results if r.config == config],
        "file": file, "package_version": record.package_version,
    }


def comparison_lines(block: Mapping[str, Mapping[str, Any]], configs: Sequence[str]) -> list[str]:
    """Markdown lines of the block, each comparison after a blank line (none when no listed config
    took part in a comparison).

    Example:
        >>> entry = {"comparison": {"id": "k", "baseline": "random-8", "is_baseline": False, "student": "m",
        ...     "configs": ["top-8", "random-8"], "prompts": 24, "eval": "held-out pool slice", "underpowered": True,
        ...     "min_eval_prompts": 100, "training": {"learning_rate": 1e-5, "epochs": 3, "lora": False},
        ...     "results": [{"judge": "pairwise", "n": 24, "win_rate": 0.75, "win_rate_ci": [0.6, 0.9], "wins": 12,
        ...                  "ties": 12, "losses": 0, "p_adjusted": 0.0005, "significant": True, "alpha": 0.05}]}}
        >>> lines = comparison_lines({"top-8": entry}, ["top-8"])
        >>> lines[1], any("Underpowered" in x for x in lines), lines[-3]
        ('## Downstream comparison', True, '| `top-8` | pairwise | 75.0% [60.0%, 90.0%] | 12 / 12 / 0 | – | 0.0005 | significant |')
    """
    groups: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for name in configs:
        c = (block.get(name) or {}).get(CARD_KEY)
        if isinstance(c, Mapping) and c.get("id"):
            groups.setdefault(str(c["id"]), []).append((name, c))
    if not groups:
        return []
    lines = ["", "## Downstream comparison", ""]
    for members in groups.values():
        head = members[0][1]
        train = head.get("training") or {}
        how = (f"lr {_g(train.get('learning_rate'))}, {_g(train.get('epochs'))} epochs, "
               f"{'LoRA' if train.get('lora') else 'full fine-tuning'}, seed {_g(train.get('seed'))}")
        lines += [f"A student was fine-tuned from `{head.get('student')}` on each config with the same settings ({how}), "
                  f"answered the same {head.get('prompts')} evaluation prompts ({head.get('eval')}), and was judged "
                  f"against the baseline `{head.get('baseline')}`. Win rates count a tie as half, with 95% bootstrap "
                  "intervals over prompts; p is an exact sign test of prompts won against lost, Holm-adjusted.", ""]
        if head.get("underpowered"):
            lines += [f"> **Underpowered:** only {head.get('prompts')} evaluation prompts (the stated minimum is "
                      f"{head.get('min_eval_prompts')}). Do not read these numbers as evidence.", ""]
        lines += [f"| config | judge | win rate vs `{head.get('baseline')}` (95% CI) | wins / ties / losses | "
                  "mean reward difference (95% CI) | p (Holm) | |", "|---|---|---|---|---|---|---|"]
        for name, c in members:
            for r in c.get("results") or ():
                lo, hi = (r.get("win_rate_ci") or [None, None])[:2]
                diff = "–" if r.get("mean_difference") is None else (
                    f"{r['mean_difference']:+.3g} [{_signed(*(r.get('mean_difference_ci') or [None, None])[:2])}]")
                verdict = "significant" if r.get("significant") else "not significant"
                lines.append(f"| `{name}` | {r.get('judge')} | {_pct(r.get('win_rate'))} [{_pct(lo)}, {_pct(hi)}] | "
                             f"{r.get('wins')} / {r.get('ties')} / {r.get('losses')} | {diff} | {_g(r.get('p_adjusted'))} | "
                             f"{verdict} |")
        lines += ["", f"Every setting, the judge prompt, the per-cluster results and side-by-side answers: "
                      f"`{head.get('file')}` (crowdselect-hf {head.get('package_version')})."]
    return lines


def _pct(x: Any) -> str:
    return "–" if not isinstance(x, (int, float)) or not math.isfinite(x) else f"{100 * x:.1f}%"


def _g(x: Any) -> str:
    return "–" if x is None else (f"{x:.3g}" if isinstance(x, float) else str(x))


def _signed(lo: Any, hi: Any) -> str:
    return ", ".join("–" if v is None else f"{v:+.3g}" for v in (lo, hi))
