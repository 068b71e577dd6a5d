#!/usr/bin/env python
"""Rebuild a named curated set from its recipe: a thin entry point to `crowdselect build`.

    python dataset_scripts/build.py <recipe> [--push] [--out DIR] [--repo-id OWNER/NAME]
    python dataset_scripts/build.py --list

Every installed copy of the package has the same command as `crowdselect build`; the recipes
live in crowdselect_hf/recipes/ (see dataset_scripts/README.md).
"""

from __future__ import annotations

import sys

from crowdselect_hf.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    return cli_main(["build", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
