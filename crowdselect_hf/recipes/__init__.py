"""Named curated sets: recipes that say how each set is built and where it is published.

The recipe files (YAML) live in this folder, shipped with the package; finding and reading them
is :mod:`crowdselect_hf.recipe_catalog` (re-exported here), and :func:`build` rebuilds a set
from its recipe.
"""

from __future__ import annotations

import os
from typing import Any

from ..recipe_catalog import (  # noqa: F401  (re-exported: the public face of recipes)
    FORMATS,
    RECIPE_DIR,
    SUFFIXES,
    Recipe,
    RecipeError,
    all_recipes,
    find_recipe,
    get_recipe,
    list_recipes,
    recipe_dirs,
)


def build(recipe: Recipe | str, out: str | os.PathLike | None = None, push: bool = False, *,
          repo_id: str | None = None, token: str | None = None, private: bool | None = None,
          overwrite: bool = True, dataset: Any = None) -> dict[str, Any]:
    """Rebuild a named set from its source: score, select, SFT rows, a Hub-shaped folder, and
    optionally publish it.

    Args:
        recipe: a :class:`Recipe`, a recipe name or a recipe file.
        out: the Hub-shaped folder to write (default :func:`~crowdselect_hf.hub.local_set_dir`,
            where ``load_selected(name)`` looks).
        push: also publish the config to the recipe's repo (or ``repo_id``).
        repo_id: publish there instead of the recipe's target.
        token, private: passed to :func:`~crowdselect_hf.publish_folder`, which pushes the saved config as it is.
        overwrite: replace the config if it is already in ``out`` / the repo.
        dataset: use this pool instead of loading the recipe's source (tests, custom pipelines).

    Returns:
        ``{"recipe", "folder", "config", "rows", "dropped", "url"}``.
    """
    recipe = recipe if isinstance(recipe, Recipe) else get_recipe(recipe)
    from ..hub import local_set_dir, publish_folder
    from ..pipeline import OutputConfig, SelectionConfig, curate

    target = repo_id or recipe.repo_id
    pool = dataset if dataset is not None else recipe.load_source()
    crowd = recipe.make_crowd(pool)
    try:
        selection = SelectionConfig(**dict(recipe.selection))
    except TypeError as e:
        raise RecipeError(f"recipe {recipe.name!r}: selection: {e}") from None
    output = OutputConfig(out=str(out or local_set_dir(target)), config_name=recipe.config, format=recipe.format,
                          overwrite=overwrite, report=False, license=recipe.license, repo_ref=target)
    done = curate(pool, selection, output, crowd=crowd, source=recipe.source_record())
    url = publish_folder(done.folder, target, recipe.config, private=private, token=token,
                         overwrite=overwrite) if push else None
    return {"recipe": recipe.name, "folder": str(done.folder), "config": recipe.config, "rows": done.rows,
            "dropped": done.dropped, "url": url}
