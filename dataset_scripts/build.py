#!/usr/bin/env python
"""Rebuild a named curated set from its source pool, and optionally publish it.

    python dataset_scripts/build.py <recipe> [--push] [--out DIR] [--repo-id OWNER/NAME]
    python dataset_scripts/build.py --list

<recipe> is a recipe name (see --list; the files live in crowdselect_hf/recipes/) or a path to
a recipe file. Without --out the folder is the one `crowdselect_hf.load_selected(<recipe>)`
reads, so a set built here loads offline by name afterwards.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from crowdselect_hf.hub import HubError, PublishError
from crowdselect_hf.recipes import RecipeError, build, get_recipe, list_recipes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", nargs="?", help="recipe name or recipe file")
    parser.add_argument("--list", action="store_true", help="list the known recipes and exit")
    parser.add_argument("--out", help="Hub-shaped folder to write (default: where load_selected looks)")
    parser.add_argument("--push", action="store_true", help="also publish to the recipe's Hub repo (HF_TOKEN)")
    parser.add_argument("--repo-id", help="publish to this repo instead of the recipe's target")
    parser.add_argument("--private", action="store_true", default=None, help="create the repo as private")
    parser.add_argument("--no-overwrite", action="store_true", help="refuse to replace an existing config")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.list:
        for name in list_recipes():
            print(f"{name}\t{get_recipe(name).description}")
        return 0
    if not args.recipe:
        parser.error(f"name a recipe; known recipes: {list_recipes()}")
    try:
        result = build(args.recipe, out=args.out, push=args.push, repo_id=args.repo_id, private=args.private,
                       overwrite=not args.no_overwrite)
    except (RecipeError, HubError, PublishError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
