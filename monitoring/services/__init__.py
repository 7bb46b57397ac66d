"""Every write of monitoring, by capability; the names are re-exported here:

- references: the line's data reference (training data, pinned captures, first captures)
- checks: the job that evaluates every line's signals, stores them and steps the alerts
- alerts: alerts opened and closed, told live, by signed webhook and by email
- rules: a line's audited alert rules
- actions: what a supervisor does about a drift (pin, label, retrain, lower the level)
"""

from monitoring.services.actions import (
    line_level_lower,
    window_label_tasks_open,
    window_retrain_start,
)
from monitoring.services.alerts import webhook_deliver, webhook_signature
from monitoring.services.checks import line_check, line_report, lines_check
from monitoring.services.references import reference_for_line, reference_pin
from monitoring.services.rules import rules_update

__all__ = [
    "line_check",
    "line_level_lower",
    "line_report",
    "lines_check",
    "reference_for_line",
    "reference_pin",
    "rules_update",
    "webhook_deliver",
    "webhook_signature",
    "window_label_tasks_open",
    "window_retrain_start",
]
