"""The pairwise judge's prompt, its verdicts, and what they mean for the candidate. Pure.

Arena-Hard style: the judge sees the user prompt and two answers, A and B, and ends its reply with
one label, ``[[A>>B]]``, ``[[A>B]]``, ``[[A=B]]``, ``[[B>A]]`` or ``[[B>>A]]``. Every prompt is
judged twice, the baseline's answer first (game 1) and then second (game 2), so a judge that
prefers a position cancels out; the prompt's score is the mean of the two games. The prompt text
below is stored in compare.json with every comparison that used it.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np

JUDGE_PROMPT_VERSION = "1"
JUDGE_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the "
    "user prompt displayed below. You will be given assistant A's answer and assistant B's answer. Your job is to "
    "evaluate which assistant's answer is better.\n\n"
    "Begin your evaluation by generating your own answer to the prompt. Then compare both assistants' answers with "
    "yours: identify and correct any mistakes or inaccurate information, and consider whether each answer is "
    "helpful, relevant and concise, and whether important information is missing. Do not let the order in which "
    "the answers were presented, their length, or the assistants' names influence your evaluation.\n\n"
    "After your evaluation, output your final verdict with exactly one of these labels:\n"
    "1. Assistant A is significantly better: [[A>>B]]\n"
    "2. Assistant A is slightly better: [[A>B]]\n"
    "3. Tie, relatively the same: [[A=B]]\n"
    "4. Assistant B is slightly better: [[B>A]]\n"
    "5. Assistant B is significantly better: [[B>>A]]\n\n"
    'Example output: "My final verdict is tie: [[A=B]]".'
)
JUDGE_TEMPLATE = (
    "<|User Prompt|>\n{question}\n\n"
    "<|The Start of Assistant A's Answer|>\n{answer_a}\n<|The End of Assistant A's Answer|>\n\n"
    "<|The Start of Assistant B's Answer|>\n{answer_b}\n<|The End of Assistant B's Answer|>"
)
VERDICTS = {"A>>B": 1.0, "A>B": 1.0, "A=B": 0.5, "B>A": 0.0, "B>>A": 0.0}
"""Each label → the score of assistant A (strong and slight wins count the same)."""
GAMES = (1, 2)
"""Game 1 shows the baseline's answer as A, game 2 as B."""

_LABEL = re.compile(r"\[\[\s*([AB])\s*(>>|>|=|<<|<)\s*([AB])\s*\]\]")
_FLIP = {">>": ">>", ">": ">", "=": "=", "<<": ">>", "<": ">"}


def judge_prompt(question: str, baseline: str, candidate: str, game: int) -> str:
    """The user turn of one game.

    Example:
        >>> print(judge_prompt("Say hi.", "hello", "hi!", game=2).splitlines()[4])
        hi!
    """
    if game not in GAMES:
        raise ValueError(f"game must be 1 (baseline first) or 2 (baseline second), got {game!r}")
    a, b = (baseline, candidate) if game == 1 else (candidate, baseline)
    return JUDGE_TEMPLATE.format(question=question, answer_a=a, answer_b=b)


def parse_verdict(reply: str | None) -> str | None:
    """The one label a reply ends with, normalised (``[[B<A]]`` → ``A>B``); ``None`` when the
    reply has no label or labels that disagree.

    Example:
        >>> parse_verdict("...so B wins. My final verdict is: [[B>A]]")
        'B>A'
        >>> parse_verdict("[[A<<B]]"), parse_verdict("[[A>B]] or maybe [[B>A]]"), parse_verdict("no label")
        ('B>>A', None, None)
    """
    if not reply:
        return None
    found = set()
    for left, op, right in _LABEL.findall(reply):
        if left == right:
            continue
        if op.startswith("<"):
            left, right = right, left
        found.add(f"{left}{_FLIP[op]}{right}" if op != "=" else "A=B")
    return found.pop() if len(found) == 1 else None


def candidate_score(verdict: str | None, game: int) -> float:
    """The candidate's share of the win in one game (NaN without a verdict).

    Example:
        >>> candidate_score("A>B", 1), candidate_score("A>B", 2), candidate_score("A=B", 1), candidate_score(None, 2)
        (0.0, 1.0, 0.5, nan)
    """
    if verdict is None:
        return math.nan
    a = VERDICTS[verdict]
    return 1.0 - a if game == 1 else a


def prompt_scores(game1: Sequence[str | None], game2: Sequence[str | None]) -> np.ndarray:
    """Per prompt: the mean of the candidate's scores in both games; NaN unless both have a verdict.

    Example:
        >>> prompt_scores(["B>A", "A>B", "A=B", None], ["A>B", "A>B", "A=B", "A>B"]).tolist()
        [1.0, 0.5, 0.5, nan]
    """
    if len(game1) != len(game2):
        raise ValueError(f"the two games cover different prompts ({len(game1)} vs {len(game2)})")
    g1 = np.array([candidate_score(v, 1) for v in game1], dtype=np.float64)
    g2 = np.array([candidate_score(v, 2) for v in game2], dtype=np.float64)
    return (g1 + g2) / 2


def position_stats(game1: Sequence[str | None], game2: Sequence[str | None]) -> dict[str, float | int]:
    """How the two orders agreed.

    Returns:
        ``consistent``: share of prompts judged in both orders whose two games gave the candidate
        the same score; ``first_wins``: share of decisive games won by the answer shown first;
        ``no_verdict``: games whose reply held no (or no single) label.

    Example:
        >>> position_stats(["A>B", "B>A"], ["A>B", "A>B"])
        {'consistent': 0.5, 'first_wins': 0.75, 'no_verdict': 0}
    """
    s1 = np.array([candidate_score(v, 1) for v in game1], dtype=np.float64)
    s2 = np.array([candidate_score(v, 2) for v in game2], dtype=np.float64)
    both = np.isfinite(s1) & np.isfinite(s2)
    labels = [v for v in (*game1, *game2) if v is not None]
    decisive = [v for v in labels if v != "A=B"]
    return {"consistent": float((s1[both] == s2[both]).mean()) if both.any() else math.nan,
            "first_wins": sum(v.startswith("A") for v in decisive) / len(decisive) if decisive else math.nan,
            "no_verdict": sum(v is None for v in (*game1, *game2))}
