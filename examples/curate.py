"""The whole CrowdSelect pipeline in Python: crowd table → scores → clustered selection →
TRL-ready rows → Hub-shaped folder + report → (optionally) the Hub.

    # the paper's setting on the Magpie generator zoo (downloads ~2.4 GB once):
    python examples/curate.py --k 1000 --out curated
    # any local crowd table, with your own crowd description:
    python examples/curate.py --pool zoo.parquet --crowd models.json --reward weighted_alpaca_eval_gpt4_turbo --k 100
    # then publish:  python examples/curate.py ... --push me/magpie-crowdselect
"""

import argparse

import datasets

import crowdselect_hf as cs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pool", default="Magpie-Align/Magpie-100K-Generator-Zoo", help="Hub id or local Parquet file")
    p.add_argument("--crowd", default="magpie-100k-generator-zoo", help="a preset name or a crowd file")
    p.add_argument("--reward", default=None, help="reward field (default: the crowd's)")
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--n-clusters", type=int, default=10)
    p.add_argument("--embedder", default="tfidf", help="tfidf, minilm, or a sentence-embedding model id/folder")
    p.add_argument("--out", default="curated")
    p.add_argument("--config-name", default=None)
    p.add_argument("--push", default=None, metavar="REPO_ID")
    args = p.parse_args(argv)

    if args.pool.endswith(".parquet"):
        pool = datasets.load_dataset("parquet", data_files=args.pool, split="train")
    else:
        pool = datasets.load_dataset(args.pool, split="train")
    if args.crowd.endswith((".json", ".yaml", ".yml")):
        crowd = cs.Crowd.from_file(args.crowd, reward=args.reward)
    else:
        crowd = cs.Crowd.preset(args.crowd, reward=args.reward)

    scored = cs.score(pool, crowd=crowd)                       # reads only the reward fields
    print(cs.crowd_report(scored, crowd=crowd).describe())
    sel = cs.crowd_select(scored, k=args.k, n_clusters=args.n_clusters, weights=(1, 1, 2), embedder=args.embedder)
    curated = cs.to_sft(scored.select(sel.indices), format="messages", crowd=crowd)
    config = args.config_name or f"crowdselect-{args.k}"
    folder = cs.save_local(curated, args.out, config, selection=sel, crowd=crowd, overwrite=True,
                           source={"dataset": args.pool, "split": "train"})
    report = cs.write_report(folder, config=config)
    print(f"{len(curated)} rows → {folder}/{config}  (report: {report})")
    if args.push:
        print("pushed:", cs.publish_folder(folder, args.push, config))


if __name__ == "__main__":
    main()
