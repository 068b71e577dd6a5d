"""Generate the synthetic demo crowd table shipped as ``crowdselect_hf/data/demo_pool.parquet``.

Usage::

    python dataset_scripts/make_demo_pool.py --out crowdselect_hf/data/demo_pool.parquet

Everything is made up here, from templates and a seeded ``numpy.random.default_rng``: no model
wrote a response and no reward model scored one, so the file holds no third-party data. The same
seed gives the same table on every machine (no set iteration, no hash randomisation, no clock).

The table has the wide layout of ``Magpie-Align/Magpie-100K-Generator-Zoo``: ``uuid``,
``instruction``, then one struct column ``{"content": string, "demo-reward": float64}`` per
model. What makes it useful for CrowdSelect:

* instructions of eight task types (coding, math, writing, advice, extraction, trivia, reasoning,
  summarization) over many topics, so an embedder plus KMeans finds structure;
* four fictional families at two to four sizes each, named so that
  :func:`crowdselect_hf.parse_model_name` reads family and size (``Acme-7B-Chat`` → ``acme-chat``, 7);
* rewards on a reward-model-like scale (roughly −20…+30, as Skywork-Reward): a latent difficulty
  per instruction (its mean depends on the task type), a model quality that grows with size within
  a family (plus a per-model offset, so a few size inversions exist), an instruction-specific
  sensitivity to quality (large for coding/math, negative for a few "trick" questions where bigger
  models over-elaborate), and noise — so difficulty, separability and stability all vary, and
  stability takes both signs;
* the documented policy cases of ``POLICY_CASES`` (see ``demo_pool.md``): empty responses,
  missing rewards, rows with no usable reward, a family whose rewards all tie, and exact duplicate
  instructions.
"""

from __future__ import annotations

import argparse
import math
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20250303
N_UNIQUE = 900
REWARD = "demo-reward"

# (family name pattern, sizes in billions, base quality, quality gain per doubling of size)
FAMILIES = (
    ("Acme-{}B-Chat", (1, 7, 70), -0.6, 0.40),
    ("Borealis-{}B-Instruct", (2, 9, 27), 0.0, 0.45),
    ("Cirrus-{}B-Instruct", (0.5, 3, 14, 32), -0.4, 0.35),
    ("Dune-{}B-It", (8, 70), 0.2, 0.25),
)

# How many of each policy case the table holds; demo_pool.md documents the same numbers and the
# tests check the file against both.
POLICY_CASES = {
    "empty_responses": 7,  # content "" (reward present and low, as a reward model would give)
    "missing_rewards": 12,  # reward None on a response that has text, in otherwise scored rows
    "rows_without_reward": 2,  # every reward of the row is None: NaN metrics, never selected
    "tied_family_rows": 3,  # all members of the Dune family got exactly the same reward
    "duplicate_instructions": 3,  # instructions that appear twice (same text, new uuid, new answers)
}

# task type: (mean latent difficulty, quality sensitivity, noise sd in reward points)
TASKS = {
    "coding": (0.8, 1.6, 2.5),
    "math": (1.0, 1.8, 3.0),
    "writing": (0.0, 0.9, 2.0),
    "advice": (-0.5, 0.5, 1.8),
    "extraction": (0.2, 0.8, 2.0),
    "trivia": (-0.8, 0.6, 2.2),
    "reasoning": (0.9, 1.4, 3.0),
    "summarization": (0.1, 0.7, 1.8),
}

SLOTS = {
    "lang": ["Python", "JavaScript", "Rust", "Go", "SQL", "Java", "C++", "TypeScript", "Bash"],
    "code_task": [
        "reverses a linked list", "parses a CSV file into records", "checks whether a string is a palindrome",
        "merges two sorted lists", "computes the n-th Fibonacci number", "deduplicates a list while keeping order",
        "validates an email address", "counts word frequencies in a text", "flattens a nested list",
        "finds the longest common prefix of some strings", "implements binary search", "rotates a matrix by 90 degrees",
        "retries an HTTP request with exponential backoff", "reads a JSON config with defaults", "groups records by a key",
        "computes a moving average", "detects a cycle in a directed graph", "implements an LRU cache",
    ],
    "bug": ["an off-by-one error", "a race condition", "a memory leak", "an infinite loop", "a null dereference", "a slow query"],
    "number": [str(n) for n in (3, 4, 5, 6, 7, 8, 9, 12, 15, 17, 20, 24, 36, 48, 64, 99, 120, 144)],
    "shape": ["circle", "square", "right triangle", "regular hexagon", "rectangle", "trapezoid", "cylinder", "cone"],
    "math_topic": [
        "the derivative of x^3 sin(x)", "the sum of the first n odd numbers", "the probability of two sixes in a row",
        "the roots of x^2 - 5x + 6", "the integral of 1/x from 1 to e", "the number of ways to arrange 5 books",
        "the limit of (1 + 1/n)^n", "the expected value of a fair die", "the eigenvalues of a 2x2 rotation matrix",
        "the compound interest on a loan", "the greatest common divisor of 84 and 126", "the area under a parabola",
    ],
    "genre": ["haiku", "limerick", "short story", "product description", "cover letter", "wedding toast", "sonnet", "blog intro", "press release", "bedtime story"],
    "subject": [
        "autumn rain", "a lighthouse keeper", "a lost umbrella", "coffee in the morning", "a robot learning to paint",
        "the first day of school", "a mountain village", "an old bicycle", "city lights at night", "a friendly dragon",
        "a library at midnight", "the ocean tide", "a small bakery", "a chess tournament", "a migrating bird",
    ],
    "advice_topic": [
        "staying focused while working from home", "preparing for a job interview", "saving money on groceries",
        "sleeping better", "learning a new language as an adult", "running a first marathon", "negotiating a raise",
        "keeping houseplants alive", "dealing with a difficult coworker", "planning a week of healthy meals",
        "starting to invest", "reducing screen time", "moving to a new city", "training a puppy",
    ],
    "audience": ["a student", "a new manager", "a retiree", "a busy parent", "a beginner", "a freelancer"],
    "entity": ["dates", "person names", "prices", "email addresses", "city names", "product codes", "phone numbers", "company names"],
    "doc": ["meeting notes", "an invoice", "a news article", "a support ticket", "a recipe", "a travel itinerary", "a lab report", "a contract clause"],
    "country": ["France", "Japan", "Brazil", "Kenya", "Canada", "India", "Norway", "Egypt", "Mexico", "Australia", "Vietnam", "Peru"],
    "science": ["photosynthesis", "plate tectonics", "the water cycle", "black holes", "vaccines", "the immune system", "semiconductors", "tides", "DNA replication", "volcanoes"],
    "person": ["Marie Curie", "Ada Lovelace", "Isaac Newton", "Nelson Mandela", "Frida Kahlo", "Alan Turing", "Leonardo da Vinci", "Rosalind Franklin"],
    "puzzle": [
        "three boxes are all labelled wrongly", "a farmer must ferry a wolf, a goat and a cabbage", "two trains leave stations 300 km apart",
        "a clock loses five minutes every hour", "five people shake hands once each", "a snail climbs a 10 m well",
        "a bat and a ball cost 1.10 in total", "twelve coins contain one counterfeit",
    ],
    "text_kind": ["a long email thread", "a research abstract", "a podcast transcript", "a product review", "a quarterly report", "a chapter of a novel"],
    "length": ["one sentence", "three bullet points", "50 words", "a tweet", "two short paragraphs"],
}

TEMPLATES = {
    "coding": [
        "Write a {lang} function that {code_task}.",
        "How do I write code in {lang} that {code_task}? Please explain each step.",
        "My {lang} program has {bug}. How can I find and fix it?",
        "Review this approach: a {lang} script that {code_task}. What could go wrong?",
        "Write unit tests in {lang} for a function that {code_task}.",
    ],
    "math": [
        "Compute {math_topic} and show your work.",
        "Explain step by step how to find {math_topic}.",
        "What is the area of a {shape} with side or radius {number}?",
        "If a {shape} is scaled by a factor of {number}, how does its area change? Prove it.",
        "Is {number} a prime number? Justify the answer.",
    ],
    "writing": [
        "Write a {genre} about {subject}.",
        "Write a {genre} about {subject} for {audience}.",
        "Rewrite this idea as a {genre}: {subject}.",
        "Give me three opening lines for a {genre} about {subject}.",
    ],
    "advice": [
        "What are your best tips for {advice_topic}?",
        "I am {audience}. How should I approach {advice_topic}?",
        "Give me a one-week plan for {advice_topic}.",
        "What mistakes do people make when {advice_topic}?",
    ],
    "extraction": [
        "Extract all {entity} from {doc} and return them as JSON.",
        "List every mention of {entity} in {doc}, one per line.",
        "From {doc}, pull out the {entity} and sort them.",
        "Convert the {entity} found in {doc} into a table.",
    ],
    "trivia": [
        "What is the capital of {country}?",
        "Who was {person} and why are they famous?",
        "Explain {science} in simple terms.",
        "What language is mostly spoken in {country}?",
        "Name three facts about {science}.",
        "When did {person} live?",
        "What is the currency of {country}?",
        "Describe the climate of {country} in a few sentences.",
        "What is {person} best remembered for in {science}?",
        "How does {science} affect everyday life in {country}?",
    ],
    "reasoning": [
        "Solve this puzzle: {puzzle}. Explain your reasoning.",
        "Here is a riddle: {puzzle}. What is the trick?",
        "Think carefully: {puzzle}. What is the answer, and what is the common mistake?",
        "Is this argument valid? {puzzle}, so the answer must be obvious.",
        "A variant: {puzzle}, but with {number} of everything. What changes?",
        "Explain to {audience} why {puzzle} is harder than it looks.",
    ],
    "summarization": [
        "Summarize {text_kind} in {length}.",
        "Condense {text_kind} about {science} into {length}.",
        "Give a summary of {text_kind} for {audience} in {length}.",
    ],
}

OPENERS = {
    "coding": ["Here is a solution.", "Sure, here is one way to do it.", "Below is an implementation.", "You can do it like this."],
    "math": ["Let us work through it.", "Step 1: set up the problem.", "We start from the definition.", "Here is the computation."],
    "writing": ["Here is a draft.", "Of course, here it is.", "A first version:", "Here you go."],
    "advice": ["Good question.", "Here are some practical tips.", "A few ideas that usually help:", "Start small."],
    "extraction": ["Here is the extracted data.", "I found the following items.", "Result:", "Extracted entries:"],
    "trivia": ["Short answer first.", "Here is what is known.", "In brief:", "Good question."],
    "reasoning": ["Let us reason carefully.", "The key is to avoid the obvious answer.", "Think about it step by step.", "Here is the logic."],
    "summarization": ["Summary:", "In short:", "Key points:", "Here is the condensed version."],
}

BODY = {
    "coding": [
        "The function loops over the input once, so it runs in linear time.",
        "Edge cases such as an empty input are handled first.",
        "A dictionary keeps track of what has already been seen.",
        "I added type hints and a docstring for clarity.",
        "The tests cover the normal case, an empty input and a very large input.",
        "Avoid mutating the argument; return a new value instead.",
        "Use the standard library where possible; it is well tested.",
    ],
    "math": [
        "Applying the product rule gives two terms.",
        "Both sides can be divided by the common factor.",
        "Substituting the values gives the final number.",
        "A quick sanity check with a small case confirms it.",
        "The result follows by induction on n.",
        "Rounding to two decimals gives the answer.",
    ],
    "writing": [
        "The opening sets a quiet, reflective mood.",
        "Light falls softly across the scene.",
        "A small detail carries the emotion of the piece.",
        "The ending returns to the first image.",
        "Short sentences keep the rhythm brisk.",
        "The tone stays warm without being sentimental.",
    ],
    "advice": [
        "Set one clear goal for each day.",
        "Track your progress in a simple notebook.",
        "Ask for feedback early and often.",
        "Plan breaks before you need them.",
        "Be patient; habits take a few weeks to form.",
        "Remove small frictions that make the habit harder.",
    ],
    "extraction": [
        "Each item appears once, in order of first mention.",
        "Ambiguous entries are marked with a question mark.",
        "The output is valid JSON.",
        "Duplicates were removed.",
        "Values were normalised to a common format.",
    ],
    "trivia": [
        "This is widely documented in encyclopedias.",
        "The fact is often taught in school.",
        "Historians broadly agree on this.",
        "There are a few common misconceptions about it.",
        "It remains an active topic of study.",
    ],
    "reasoning": [
        "The intuitive answer is wrong because it ignores one constraint.",
        "Writing the conditions down as equations makes it clear.",
        "Checking each case in turn rules out all but one.",
        "The trick is in the wording of the question.",
        "Working backwards from the end state is easier.",
    ],
    "summarization": [
        "The main point is stated up front.",
        "Supporting details are grouped by theme.",
        "Minor tangents are left out.",
        "The conclusion is kept in one sentence.",
        "Numbers are rounded for readability.",
    ],
}

CLOSERS = ["Let me know if you need more detail.", "Hope this helps.", "", "", "Happy to refine it further."]


def _models() -> list[tuple[str, float, float]]:
    """(name, size, quality) for every model, families in order, smallest first."""
    out = []
    for pattern, sizes, base, gain in FAMILIES:
        for size in sizes:
            out.append((pattern.format(f"{size:g}"), float(size), base + gain * np.log2(size)))
    return out


def _instructions(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """``n`` distinct (task type, instruction) pairs; task types drawn uniformly, so types with
    few possible instructions run out and end up rarer."""
    tasks = list(TASKS)
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100 * n:
            raise RuntimeError(f"the templates cannot produce {n} distinct instructions")
        task = tasks[rng.integers(len(tasks))]
        template = TEMPLATES[task][rng.integers(len(TEMPLATES[task]))]
        text = template.format_map(_SlotFiller(rng))
        if text not in seen:
            seen.add(text)
            out.append((task, text))
    return out


class _SlotFiller(dict):
    def __init__(self, rng: np.random.Generator):
        super().__init__()
        self.rng = rng

    def __missing__(self, key: str) -> str:
        values = SLOTS[key]
        value = values[self.rng.integers(len(values))]
        self[key] = value
        return value


def _response(rng: np.random.Generator, task: str, instruction: str, size: float, reward: float) -> str:
    """A short synthetic answer; longer for bigger models and better rewards, with noise."""
    n_sentences = int(min(max(1 + 0.5 * math.log2(size + 1) + 0.12 * reward + rng.normal(0, 1), 1), 7))
    body = BODY[task]
    picks = rng.choice(len(body), size=min(n_sentences, len(body)), replace=False)
    parts = [OPENERS[task][rng.integers(len(OPENERS[task]))]]
    if rng.random() < 0.5:
        parts.append(f"Regarding \"{instruction[:60].rstrip('.?')}\":")
    parts += [body[i] for i in picks]
    parts.append(CLOSERS[rng.integers(len(CLOSERS))])
    return " ".join(p for p in parts if p)


def build_table(seed: int = SEED, n_unique: int = N_UNIQUE) -> pa.Table:
    """Build the demo pool as an Arrow table (deterministic in ``seed``).

    Args:
        seed: seed of ``numpy.random.default_rng``.
        n_unique: distinct instructions; the table has ``n_unique + POLICY_CASES["duplicate_instructions"]`` rows.
    """
    rng = np.random.default_rng(seed)
    models = _models()
    names = [m[0] for m in models]
    sizes = np.array([m[1] for m in models])
    quality = np.array([m[2] for m in models]) + rng.normal(0, 0.25, len(models))
    quality = (quality - quality.mean()) / quality.std()

    items = _instructions(rng, n_unique)
    n_dup = POLICY_CASES["duplicate_instructions"]
    dup_of = rng.choice(n_unique, size=n_dup, replace=False)
    items = items + [items[i] for i in dup_of]
    n = len(items)
    task_params = np.array([TASKS[t] for t, _ in items])
    difficulty = task_params[:, 0] + rng.normal(0, 0.5, n)
    sensitivity = task_params[:, 1] * rng.lognormal(0, 0.3, n)
    # "Trick" questions: bigger models over-elaborate, so reward falls with quality.
    trick = rng.random(n) < np.where(np.isin([t for t, _ in items], ["reasoning", "trivia"]), 0.25, 0.04)
    sensitivity = np.where(trick, -0.6 * sensitivity, sensitivity)
    noise = rng.normal(0, 1.2, (n, len(models))) * task_params[:, 2:3]
    rewards = 6.0 - 7.0 * difficulty[:, None] + 1.6 * sensitivity[:, None] * quality[None, :] + noise
    rewards = np.round(rewards, 4)

    contents = [[_response(rng, task, text, sizes[j], rewards[i, j]) for j in range(len(models))] for i, (task, text) in enumerate(items)]
    reward_obj: list[list[float | None]] = rewards.tolist()

    # The documented policy cases, at rows and cells chosen by the seed (never on duplicates).
    cases = rng.permutation(n_unique)
    k = 0

    def take(count):
        nonlocal k
        chosen = cases[k : k + count]
        k += count
        return chosen

    for i in take(POLICY_CASES["empty_responses"]):
        j = int(rng.integers(len(models)))
        contents[i][j] = ""
        reward_obj[i][j] = round(float(-18.0 + rng.normal(0, 2)), 4)
    for i in take(POLICY_CASES["missing_rewards"]):
        reward_obj[i][int(rng.integers(len(models)))] = None
    for i in take(POLICY_CASES["rows_without_reward"]):
        reward_obj[i] = [None] * len(models)
    dune = [j for j, name in enumerate(names) if name.startswith("Dune-")]
    for i in take(POLICY_CASES["tied_family_rows"]):
        tied = reward_obj[i][dune[0]]
        for j in dune:
            reward_obj[i][j] = tied

    uuids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)]
    struct = pa.struct([("content", pa.string()), (REWARD, pa.float64())])
    columns = {"uuid": pa.array(uuids, pa.string()), "instruction": pa.array([t for _, t in items], pa.string())}
    for j, name in enumerate(names):
        columns[name] = pa.array([{"content": contents[i][j], REWARD: reward_obj[i][j]} for i in range(n)], struct)
    return pa.table(columns)


def write(table: pa.Table, out: str | Path) -> Path:
    """Write the table as zstd-compressed Parquet (small enough to ship inside the package)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, compression="zstd", compression_level=19, use_dictionary=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", default="crowdselect_hf/data/demo_pool.parquet", help="where to write the Parquet file")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--rows", type=int, default=N_UNIQUE, help="distinct instructions")
    args = parser.parse_args(argv)
    path = write(build_table(args.seed, args.rows), args.out)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
