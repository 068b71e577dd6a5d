"""The recipe catalog: the named curated sets, each saying how it is built and where it is published.

A recipe is a YAML file in ``crowdselect_hf/recipes/`` (shipped with the package, so
``load_selected(name)`` works from an installed copy; ``crowdselect build`` reads the same
files)::

    name: crowdselect-1k
    description: ...
    source: {dataset: Magpie-Align/Magpie-100K-Generator-Zoo, split: train, revision: <sha>}
    license: llama3.1
    crowd: magpie-100k-generator-zoo     # a preset, or {file: models.json}
    reward: Skywork-Reward-Llama-3.1-8B
    format: messages                     # or prompt-completion
    target: {repo_id: owner/name, config: crowdselect-1k}
    selection: {strategy: crowdselect, k: 1000, n_clusters: 10, weights: [1, 1, 2], ...}

``selection`` is passed to :func:`~crowdselect_hf.crowd_select` as keyword arguments. More
recipe folders can be added with ``CROWDSELECT_RECIPES`` (paths separated by ``os.pathsep``).

This module only finds and reads recipes, so that :func:`~crowdselect_hf.hub.load_selected`
can look names up without depending on the builder, :func:`crowdselect_hf.recipes.build`
(which writes through the hub).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .names import HubError, check_config_name, check_repo_id

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
"""The recipes shipped with the package."""
SUFFIXES = (".yaml", ".yml", ".json")
FORMATS = ("messages", "prompt-completion")


class RecipeError(ValueError):
    """A recipe is unknown or does not parse."""


@dataclass(frozen=True)
class Recipe:
    """How one named curated set is built and where it goes.

    Args:
        name: the short name (``load_selected(name)``); the file's stem.
        source: ``datasets.load_dataset`` arguments of the pool: ``dataset`` (a repo id or a
            builder such as ``parquet``), ``split``, and optionally ``revision``, ``name``,
            ``data_files``.
        repo_id: the dataset repo the set is published to.
        config: its config there.
        selection: keyword arguments of ``crowd_select`` (strategy, k, n_clusters, weights,
            embedder, seed, ...).
        crowd: a crowd preset name, ``{"file": path}`` or ``{"preset": name}``; ``None``: inferred.
        reward: the reward field.
        format: the SFT format.
        license: the licence declared on the card.
        description: one paragraph for people.
        path: the file the recipe was read from.
    """

    name: str
    source: Mapping[str, Any]
    repo_id: str
    config: str
    selection: Mapping[str, Any]
    crowd: Any = None
    reward: str | None = None
    format: str = "messages"
    license: str | None = None
    description: str = ""
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Recipe":
        """Read and check one recipe file (YAML or JSON)."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise RecipeError(f"cannot read recipe {str(path)!r}: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise RecipeError(f"recipe {str(path)!r} is not valid YAML/JSON: {e}") from None
        if not isinstance(data, Mapping):
            raise RecipeError(f"recipe {str(path)!r} must be a mapping, got {type(data).__name__}")

        def need(key: str, kind: type, where: Mapping[str, Any] = data, prefix: str = "") -> Any:
            value = where.get(key)
            if not isinstance(value, kind):
                raise RecipeError(f"recipe {str(path)!r}: '{prefix}{key}' must be of type {kind.__name__}, got {value!r}")
            return value

        name = need("name", str)
        if name != path.stem:
            raise RecipeError(f"recipe {str(path)!r}: name {name!r} must equal the file name {path.stem!r}")
        source = dict(need("source", Mapping))
        need("dataset", str, source, "source.")
        target = need("target", Mapping)
        selection = dict(need("selection", Mapping))
        need("k", int, selection, "selection.")
        fmt = data.get("format", "messages")
        if fmt not in FORMATS:
            raise RecipeError(f"recipe {str(path)!r}: format must be one of {FORMATS}, got {fmt!r}")
        try:
            repo_id = check_repo_id(need("repo_id", str, target, "target."))
            config = check_config_name(need("config", str, target, "target."))
        except HubError as e:
            raise RecipeError(f"recipe {str(path)!r}: {e}") from None
        return cls(name=name, source=source, repo_id=repo_id, config=config, selection=selection,
                   crowd=data.get("crowd"), reward=data.get("reward"), format=fmt, license=data.get("license"),
                   description=str(data.get("description") or "").strip(), path=path)

    # -- building -------------------------------------------------------------------------------
    def load_source(self, **kwargs: Any):
        """The source pool as a ``Dataset`` (``datasets.load_dataset`` with the recipe's arguments)."""
        import datasets

        args = {k: v for k, v in self.source.items() if v is not None}
        path = args.pop("dataset")
        files = args.get("data_files")
        if files is not None and self.path is not None:
            base = self.path.parent
            args["data_files"] = ([str(base / f) for f in files] if isinstance(files, list) else str(base / files))
        args.setdefault("split", "train")
        return datasets.load_dataset(path, **args, **kwargs)

    def make_crowd(self, ds: Any = None):
        """The recipe's :class:`~crowdselect_hf.Crowd`."""
        from .crowd import Crowd

        spec = self.crowd
        if spec is None:
            if ds is None:
                raise RecipeError(f"recipe {self.name!r} names no crowd; it is inferred from the data, pass the dataset")
            return Crowd.infer(ds, reward=self.reward)
        if isinstance(spec, str):
            return Crowd.preset(spec, reward=self.reward)
        if isinstance(spec, Mapping) and "preset" in spec:
            return Crowd.preset(spec["preset"], reward=self.reward)
        if isinstance(spec, Mapping) and "file" in spec:
            file = Path(spec["file"])
            if not file.is_absolute() and self.path is not None:
                file = self.path.parent / file
            return Crowd.from_file(file, reward=self.reward)
        raise RecipeError(f"recipe {self.name!r}: crowd must be a preset name, {{preset: name}} or {{file: path}}, got {spec!r}")

    def source_record(self) -> dict[str, Any]:
        """The source as recorded on the card."""
        return {k: v for k, v in self.source.items() if k in ("dataset", "split", "revision", "name") and v is not None}


def recipe_dirs() -> list[Path]:
    """The folders searched for recipes: ``CROWDSELECT_RECIPES`` entries first, then the package's."""
    extra = [Path(p) for p in os.environ.get("CROWDSELECT_RECIPES", "").split(os.pathsep) if p]
    return [*extra, RECIPE_DIR]


def _files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in recipe_dirs():
        if folder.is_dir():
            for f in sorted(folder.iterdir()):
                if f.suffix in SUFFIXES and f.is_file():
                    found.setdefault(f.stem, f)
    return found


def list_recipes() -> list[str]:
    """The known recipe names.

    Example:
        >>> "crowdselect-1k" in list_recipes()
        True
    """
    return sorted(_files())


def find_recipe(name: str) -> Recipe | None:
    """The recipe called ``name``, or ``None``."""
    path = _files().get(name)
    return Recipe.from_file(path) if path is not None else None


def get_recipe(name: str | os.PathLike) -> Recipe:
    """The recipe called ``name`` (or read from a recipe file path).

    Example:
        >>> r = get_recipe("crowdselect-1k")
        >>> r.selection["weights"], r.selection["n_clusters"], r.selection["seed"], r.config
        ([1, 1, 2], 10, 42, 'crowdselect-1k')
        >>> get_recipe("nope")
        Traceback (most recent call last):
        ...
        crowdselect_hf.recipe_catalog.RecipeError: unknown recipe 'nope'; known recipes: [...]
    """
    if Path(name).suffix in SUFFIXES and Path(name).is_file():
        return Recipe.from_file(name)
    recipe = find_recipe(str(name))
    if recipe is None:
        raise RecipeError(f"unknown recipe {str(name)!r}; known recipes: {list_recipes()}")
    return recipe


def all_recipes() -> list[Recipe]:
    """Every known recipe, parsed."""
    return [Recipe.from_file(p) for p in _files().values()]
