"""CrowdSelect for Hugging Face ``datasets``: score, select and publish instruction-tuning data
with the wisdom of a crowd of LLMs (arXiv 2503.01836).

Example:
    >>> import crowdselect_hf as cs
    >>> scored = cs.score(cs.demo_pool(), crowd=cs.demo_crowd())
    >>> sel = cs.crowd_select(scored, k=50, n_init=2)
    >>> curated = scored.filter(sel, with_indices=True)  # the demo pool repeats 3 instructions
    >>> len(curated), curated[0]["crowd_id"] in set(sel.ids)
    (50, True)
"""

import importlib
from typing import TYPE_CHECKING

from .version import __version__  # noqa: F401  (the version lives in version.py)

# Public names are imported on first use (PEP 562), so `import crowdselect_hf` and the
# `crowdselect` command start fast; scikit-learn, huggingface_hub and friends load when needed.
_LAZY = {
    "ALGORITHM_VERSION": "metrics",
    "COLUMNS": "scoring",
    "ColumnEmbedder": "embeddings",
    "ConfigExistsError": "hub",
    "Crowd": "crowd",
    "CrowdError": "crowd",
    "CrowdGenerator": "generation",
    "CrowdScore": "scoring",
    "CrowdSelector": "selection",
    "EmbeddingCache": "embeddings",
    "GenerationConfig": "generation",
    "GeneratorModel": "generation",
    "HubError": "hub",
    "Member": "crowd",
    "PolicyCounts": "metrics",
    "PublishError": "hub",
    "Recipe": "recipes",
    "RecipeError": "recipes",
    "RewardConfig": "rewards",
    "RewardScorer": "rewards",
    "RewardStats": "rewards",
    "STRATEGIES": "selection",
    "Selection": "selection",
    "SelectionError": "combine",
    "TfidfEmbedder": "embeddings",
    "TransformerEmbedder": "embeddings",
    "content_id": "binding",
    "CrowdBinding": "binding",
    "compare": "compare",
    "curate": "pipeline",
    "ensure_scored": "pipeline",
    "MetricsProvenance": "provenance",
    "OutputConfig": "pipeline",
    "read_provenance": "provenance",
    "SelectionConfig": "pipeline",
    "SelectionRecord": "record",
    "score_with_counts": "scoring",
    "crowd_metrics": "metrics",
    "crowd_report": "scoring",
    "crowd_score": "scoring",
    "crowd_select": "selection",
    "demo_crowd": "demo_data",
    "demo_pool": "demo_data",
    "generate_dataset": "generation",
    "get_embedder": "embeddings",
    "get_recipe": "recipes",
    "list_recipes": "recipes",
    "load_selected": "hub",
    "parse_model_name": "model_names",
    "publish": "hub",
    "publish_folder": "hub",
    "render_report": "report",
    "reward_dataset": "rewards",
    "save_local": "hub",
    "score": "scoring",
    "sft_example": "sft",
    "to_sft": "sft",
    "write_report": "report",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'crowdselect_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .binding import CrowdBinding, content_id
    from .combine import SelectionError
    from .compare import compare
    from .crowd import Crowd, CrowdError, Member
    from .demo_data import demo_crowd, demo_pool
    from .embeddings import ColumnEmbedder, EmbeddingCache, TfidfEmbedder, TransformerEmbedder, get_embedder
    from .generation import CrowdGenerator, GenerationConfig, GeneratorModel, generate_dataset
    from .hub import ConfigExistsError, HubError, PublishError, load_selected, publish, publish_folder, save_local
    from .metrics import ALGORITHM_VERSION, PolicyCounts, crowd_metrics
    from .model_names import parse_model_name
    from .pipeline import OutputConfig, SelectionConfig, curate, ensure_scored
    from .provenance import MetricsProvenance, read_provenance
    from .recipes import Recipe, RecipeError, get_recipe, list_recipes
    from .record import SelectionRecord
    from .report import render_report, write_report
    from .rewards import RewardConfig, RewardScorer, RewardStats, reward_dataset
    from .scoring import COLUMNS, CrowdScore, crowd_report, crowd_score, score, score_with_counts
    from .selection import STRATEGIES, CrowdSelector, Selection, crowd_select
    from .sft import sft_example, to_sft

__all__ = sorted(_LAZY)
