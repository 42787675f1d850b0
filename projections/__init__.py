"""Read models of the execution journal: status, last steps, step statistics and costs.

``views = Projections(journal)``; ``views.catch_up()`` or ``views.follow()`` apply the log;
``views.execution(id)``, ``views.executions(...)``, ``views.children(id)``, ``views.forks(id)``,
``views.steps(id)``, ``views.costs(by=)``, ``views.step_stats()``, ``views.stuck(older_than=)``
and ``views.stalled(older_than=)`` (each open execution that is not moving, and why: a
:class:`Stall` with its :class:`StallReason`) read them. Views live in the journal's own
database and can always be dropped and rebuilt from the log (:func:`rebuild`).
"""

from projections.api import STATUSES, Projections
from projections.errors import ProjectionError, ViewsBehind
from projections.rebuild import RebuildResult, rebuild
from projections.stall import Stall, StallReason
from projections.views import (
    COST_DIMENSIONS,
    VIEWS,
    CostSummary,
    ExecutionSummary,
    StepMarker,
    StepStats,
    StepSummary,
)

__all__ = [
    "COST_DIMENSIONS",
    "STATUSES",
    "VIEWS",
    "CostSummary",
    "ExecutionSummary",
    "ProjectionError",
    "Projections",
    "RebuildResult",
    "Stall",
    "StallReason",
    "StepMarker",
    "StepStats",
    "StepSummary",
    "ViewsBehind",
    "rebuild",
]
