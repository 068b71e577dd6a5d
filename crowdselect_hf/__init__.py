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

__version__ = "0.1.0"

from .combine import SelectionError
from .crowd import Crowd, CrowdError, Member, parse_model_name
from .demo_data import demo_crowd, demo_pool
from .embeddings import ColumnEmbedder, EmbeddingCache, TfidfEmbedder, TransformerEmbedder, get_embedder
from .generation import CrowdGenerator, GenerationConfig, GeneratorModel, generate_dataset
from .hub import ConfigExistsError, HubError, PublishError, load_selected, publish, publish_folder, save_local
from .metrics import ALGORITHM_VERSION, PolicyCounts, crowd_metrics
from .recipes import Recipe, RecipeError, get_recipe, list_recipes
from .report import render_report, write_report
from .rewards import RewardConfig, RewardScorer, RewardStats, reward_dataset
from .scoring import COLUMNS, CrowdScore, content_id, crowd_report, crowd_score, score
from .selection import STRATEGIES, CrowdSelector, Selection, crowd_select
from .sft import sft_example, to_sft

__all__ = [
    "ALGORITHM_VERSION",
    "COLUMNS",
    "STRATEGIES",
    "ConfigExistsError",
    "Crowd",
    "CrowdError",
    "CrowdGenerator",
    "CrowdScore",
    "CrowdSelector",
    "ColumnEmbedder",
    "EmbeddingCache",
    "GenerationConfig",
    "GeneratorModel",
    "HubError",
    "Member",
    "PolicyCounts",
    "PublishError",
    "Recipe",
    "RecipeError",
    "RewardConfig",
    "RewardScorer",
    "RewardStats",
    "Selection",
    "SelectionError",
    "TfidfEmbedder",
    "TransformerEmbedder",
    "content_id",
    "crowd_metrics",
    "crowd_report",
    "crowd_score",
    "crowd_select",
    "demo_crowd",
    "demo_pool",
    "generate_dataset",
    "get_embedder",
    "get_recipe",
    "list_recipes",
    "load_selected",
    "parse_model_name",
    "publish",
    "publish_folder",
    "render_report",
    "reward_dataset",
    "save_local",
    "score",
    "sft_example",
    "to_sft",
    "write_report",
]
