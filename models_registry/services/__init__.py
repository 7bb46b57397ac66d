"""Every write of the registry, by topic (registry, rollout, training, evaluation, batch, jobs);
the names are re-exported here: `from models_registry import services`."""

from models_registry.services.batch import batch_prediction_start
from models_registry.services.edge import (
    edge_export_execute,
    edge_export_request,
    line_edge_model,
)
from models_registry.services.evaluation import (
    evaluation_execute,
    evaluation_request,
    evaluation_request_with_production,
)
from models_registry.services.jobs import jobs_reap
from models_registry.services.registry import (
    deployment_remove,
    deployment_set,
    git_commit,
    model_version_register,
    model_version_status_refresh,
)
from models_registry.services.rollout import (
    RAMP_STEPS,
    canary_check,
    rollback_target,
    rollout_canary_ramp,
    rollout_canary_rollback,
    rollout_canary_start,
    rollout_promote,
    rollout_rollback,
    rollout_shadow_start,
    rollout_shadow_stop,
)
from models_registry.services.training import (
    TRAINING_PRESETS,
    auto_retrain_check,
    training_run_cancel,
    training_run_execute,
    training_run_start,
)

__all__ = [
    "RAMP_STEPS",
    "TRAINING_PRESETS",
    "auto_retrain_check",
    "edge_export_execute",
    "edge_export_request",
    "line_edge_model",
    "batch_prediction_start",
    "canary_check",
    "deployment_remove",
    "deployment_set",
    "evaluation_execute",
    "evaluation_request",
    "evaluation_request_with_production",
    "git_commit",
    "jobs_reap",
    "model_version_register",
    "model_version_status_refresh",
    "rollback_target",
    "rollout_canary_ramp",
    "rollout_canary_rollback",
    "rollout_canary_start",
    "rollout_promote",
    "rollout_rollback",
    "rollout_shadow_start",
    "rollout_shadow_stop",
    "training_run_cancel",
    "training_run_execute",
    "training_run_start",
]
