"""What each cluster is about, in words: its most distinctive terms (class-based TF-IDF) and
its central instruction.

Terms come from the instructions themselves, never from the embedder that clustered them. A term
can label a cluster only if a larger share of that cluster's instructions contains it than of the
other clusters' instructions; among those, the terms with the highest class-based TF-IDF
(Grootendorst 2022: ``tf(t, c) · log(1 + A / f(t))``, document counts) win.

The central instruction is the cluster's candidate nearest its centre in the embedder's own space
(``ClusterCount.central_id``, found by the selector, which has the embeddings). A TF-IDF space is
made of terms, so for the TF-IDF embedder the terms are the label; for any other embedder (a
transformer, precomputed vectors) the terms may not be what it grouped by, and the central
instruction is the label. The report shows both either way.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .data import PoolData

N_TERMS = 3
CENTRAL_LABEL_CHARS = 60
"""A central instruction used as a label is cut to this many characters ("…" included)."""
TERM_EMBEDDERS = ("tfidf",)
"""Embedder names starting with these are labelled by their terms (their space is made of terms)."""
MAX_DOCS_PER_CLUSTER = 1_000
"""At most this many instructions per cluster are read (a seeded random subset beyond)."""
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"
"""Words of three letters or more: numbers and short tokens say little about a topic."""
STOP_WORDS = frozenset("""
    a about above across after afterwards again against all almost alone along already also although
    always am among amongst amoungst amount an and another any anyhow anyone anything anyway
    anywhere are around as at back be became because become becomes becoming been before beforehand
    behind being below beside besides between beyond bill both bottom but by call can cannot cant co
    con could couldnt cry de describe detail do done down due during each eg eight either eleven
    else elsewhere empty enough etc even ever every everyone everything everywhere except few
    fifteen fifty fill find fire first five for former formerly forty found four from front full
    further get give go had has hasnt have he hence her here hereafter hereby herein hereupon hers
    herself him himself his how however hundred i ie if in inc indeed interest into is it its itself
    keep last latter latterly least less ltd made many may me meanwhile might mill mine more
    moreover most mostly move much must my myself name namely neither never nevertheless next nine
    no nobody none noone nor not nothing now nowhere of off often on once one only onto or other
    others otherwise our ours ourselves out over own part per perhaps please put rather re same see
    seem seemed seeming seems serious several she should show side since sincere six sixty so some
    somehow someone something sometime sometimes somewhere still such system take ten than that the
    their them themselves then thence there thereafter thereby therefore therein thereupon these
    they thick thin third this those though three through throughout thru thus to together too top
    toward towards twelve twenty two un under until up upon us very via was we well were what
    whatever when whence whenever where whereafter whereas whereby wherein whereupon wherever
    whether which while whither who whoever whole whom whose why will with within without would yet
    you your yours yourself yourselves
""".split()) | frozenset({"does", "did", "doing", "got", "gets", "let", "lets", "don", "doesn", "didn", "isn", "aren",
                          "wasn", "weren", "won", "couldn", "shouldn", "wouldn", "haven", "hasn", "hadn"})
"""scikit-learn's English stop words (``ENGLISH_STOP_WORDS``, BSD-3-Clause; copied so that the
report does not import scikit-learn), plus function words and contraction stems it lacks."""


@dataclass(frozen=True)
class ClusterLabel:
    """The label of one cluster.

    Attributes:
        cluster: the cluster.
        terms: its most distinctive terms, best first (empty when none stands out).
        n_docs: how many of its instructions the terms were computed from.
    """

    cluster: int
    terms: tuple[str, ...]
    n_docs: int
    central: str | None = None

    @property
    def terms_text(self) -> str:
        return " · ".join(self.terms)

    @property
    def central_text(self) -> str:
        """The central instruction on one line, cut to :data:`CENTRAL_LABEL_CHARS`."""
        text = " ".join((self.central or "").split())
        return text if len(text) <= CENTRAL_LABEL_CHARS else text[: CENTRAL_LABEL_CHARS - 1].rstrip() + "…"


@dataclass(frozen=True)
class ClusterLabels:
    """The labels of a pool's clusters, and where their text came from.

    Attributes:
        labels: per cluster, its :class:`ClusterLabel`.
        source: ``"pool"`` (the pool's instructions) or ``"selected"`` (only the selected rows'
            instructions were known); ``None`` when there was no text to label with.
        by: what :meth:`text` shows: ``"terms"`` or ``"central"`` (the central instruction).
    """

    labels: dict[int, ClusterLabel]
    source: str | None
    by: str = "terms"

    def text(self, cluster: int) -> str:
        """The cluster's label: its terms or its central instruction (see :attr:`by`), the other
        one when that is empty."""
        label = self.labels.get(int(cluster))
        if label is None:
            return ""
        first, second = (label.central_text, label.terms_text) if self.by == "central" else (label.terms_text, label.central_text)
        return first or second


def cluster_labels(d: PoolData, n_terms: int = N_TERMS, max_docs: int = MAX_DOCS_PER_CLUSTER,
                   seed: int = 0, record=None) -> ClusterLabels:
    """Label each cluster of ``d`` with its most distinctive terms and its central instruction.

    Args:
        d: the pool; reads ``cluster`` and the instructions (:meth:`PoolData.texts_at`).
        n_terms: terms per label.
        max_docs: instructions read per cluster at most.
        seed: picks the subset of a larger cluster.
        record: the :class:`~crowdselect_hf.record.SelectionRecord`: its clusters' ``central_id``
            and its embedder (which label :meth:`ClusterLabels.text` shows).

    Returns:
        :class:`ClusterLabels` (empty when the pool is not clustered or has no text).

    Example:
        >>> import pyarrow as pa
        >>> pool = pa.table({"crowd_selected": [True] * 4, "crowd_cluster": [0, 0, 1, 1],
        ...     "crowd_instruction": ["bake bread", "bake cake", "train model", "train network"]})
        >>> labels = cluster_labels(PoolData.from_table(pool), n_terms=1)
        >>> labels.text(0), labels.text(1)
        ('bake', 'train')
    """
    clusters = d.cluster_labels()
    if not clusters:
        return ClusterLabels({}, None)
    rng = np.random.default_rng(seed)
    known = np.ones(d.n, dtype=bool) if d.has_texts else d.selected.copy()
    rows, groups = [], []
    for c in clusters:
        idx = np.flatnonzero((d.cluster == c) & known)
        if idx.size > max_docs:
            idx = np.sort(rng.choice(idx, max_docs, replace=False))
        rows.append(idx)
        groups.append(np.full(idx.size, c))
    rows_all = np.concatenate(rows)
    texts = d.texts_at(rows_all)
    keep = np.array([t is not None for t in texts], dtype=bool)
    docs = [t for t in texts if t is not None]
    group = np.concatenate(groups)[keep]
    if not docs:
        return ClusterLabels({}, None)
    terms = distinctive_terms(docs, group, clusters, n_terms)
    central = central_instructions(d, record)
    labels = {c: ClusterLabel(c, terms.get(c, ()), int((group == c).sum()), central.get(c)) for c in clusters}
    embedder = record.clustering.embedder if record is not None and record.clustering is not None else ""
    by = "terms" if not central or str(embedder).startswith(TERM_EMBEDDERS) else "central"
    return ClusterLabels(labels, "pool" if d.has_texts else "selected", by)


def central_instructions(d: PoolData, record) -> dict[int, str]:
    """Per cluster, the instruction of its recorded ``central_id`` (where the pool has that row and
    its text)."""
    wanted = {c.central_id: c.cluster for c in (record.clusters if record is not None else ()) if c.central_id}
    if not wanted or d.ids is None:
        return {}
    rows = np.flatnonzero(pc.is_in(d.ids, value_set=pa.array(list(wanted), pa.string())).to_numpy(zero_copy_only=False))
    out = {}
    for row, crowd_id, text in zip(rows, d.ids_at(rows), d.texts_at(rows)):
        if text is not None and wanted[crowd_id] not in out:  # a duplicate id: its first row
            out[wanted[crowd_id]] = text
    return out


def distinctive_terms(docs: list[str], group: np.ndarray, clusters: list[int],
                      n_terms: int = N_TERMS) -> dict[int, tuple[str, ...]]:
    """Per cluster, up to ``n_terms`` terms that occur in a larger share of its documents than of
    the others', ranked by class-based TF-IDF over document counts. Terms: :data:`TOKEN_PATTERN`
    of the lower-cased text, without :data:`STOP_WORDS`, in at least two documents (of 20 or more)."""
    token = re.compile(TOKEN_PATTERN)
    doc_terms = [{t for t in token.findall(doc.lower()) if t not in STOP_WORDS} for doc in docs]
    df = Counter(t for terms in doc_terms for t in terms)
    min_df = 2 if len(docs) >= 20 else 1
    vocab = sorted(t for t, n in df.items() if n >= min_df)
    if not vocab:
        return {}
    column = {t: j for j, t in enumerate(vocab)}
    index = {c: i for i, c in enumerate(clusters)}
    g = np.array([index[int(c)] for c in group], dtype=np.int64)
    rows = np.repeat(g, [sum(t in column for t in terms) for terms in doc_terms])
    cols = np.fromiter((column[t] for terms in doc_terms for t in terms if t in column), dtype=np.int64, count=rows.size)
    # counts[c, t]: documents of cluster c that contain term t.
    counts = np.zeros((len(clusters), len(vocab)))
    np.add.at(counts, (rows, cols), 1.0)
    n_docs = np.bincount(g, minlength=len(clusters)).astype(np.float64)
    total = counts.sum(axis=0)
    share_in = counts / np.maximum(n_docs, 1)[:, None]
    share_out = (total[None, :] - counts) / np.maximum(len(docs) - n_docs, 1)[:, None]
    words = counts.sum(axis=1)
    tf = counts / np.maximum(words, 1)[:, None]
    idf = np.log1p(words.mean() / np.maximum(total, 1))
    ctfidf = np.where((share_in > share_out) & (counts >= min(2, len(docs))), tf * idf, -np.inf)
    out = {}
    for c, i in index.items():
        best = np.argsort(-ctfidf[i], kind="stable")[:n_terms]
        out[c] = tuple(vocab[j] for j in best if np.isfinite(ctfidf[i, j]))
    return out
