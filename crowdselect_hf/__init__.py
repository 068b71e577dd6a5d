"""CrowdSelect for Hugging Face ``datasets``: score, select and publish instruction-tuning data
with the wisdom of a crowd of LLMs (arXiv 2503.01836)."""

from .crowd import Crowd, CrowdError, Member, parse_model_name
from .metrics import ALGORITHM_VERSION, PolicyCounts, crowd_metrics
from .scoring import COLUMNS, CrowdScore, content_id, crowd_report, crowd_score, score

__version__ = "0.1.0"

__all__ = [
    "ALGORITHM_VERSION",
    "COLUMNS",
    "Crowd",
    "CrowdError",
    "CrowdScore",
    "Member",
    "PolicyCounts",
    "content_id",
    "crowd_metrics",
    "crowd_report",
    "crowd_score",
    "parse_model_name",
    "score",
]
