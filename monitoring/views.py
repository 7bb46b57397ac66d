"""The monitor pages: `/monitor/` (every line at a glance) and `/monitor/<code>/` (each signal's
status, chart and evidence, the side-by-side thumbnails, alerts, rules and actions).
Inspectors may look (read-only); supervisors act."""

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone
from django.utils.safestring import mark_safe

from core import selectors as core_selectors
from core.permissions import page_roles_required
from core.roles import INSPECTING, SUPERVISING, user_has_role
from monitoring import charts, selectors, services
from monitoring.models import Signal

HISTORY_HOURS = 24
STATUS_TEXT = {
    "ok": "ok",
    "warning": "warning",
    "drifted": "drifted",
    "insufficient_data": "not enough data",
}
PERCENT_SIGNALS = {Signal.PREDICTION_DRIFT, Signal.CONCEPT_DRIFT, Signal.YIELD}
CHART_TITLES = {
    Signal.DATA_DRIFT: "Largest image change (1 = drift threshold)",
    Signal.PREDICTION_DRIFT: "Share of captures the model was unsure of (deferred to humans)",
    Signal.CONCEPT_DRIFT: "Inspectors' override rate",
    Signal.YIELD: "Defect rate in the last hour",
}


@login_required
def overview(request):
    page_roles_required(request, *INSPECTING)
    rows = []
    for line in core_selectors.line_list():
        signals = services.line_report(line=line)["signals"]
        cells = [
            {
                "name": name,
                "status": signals.get(name, {}).get("status", "insufficient_data"),
                "summary": signals.get(name, {}).get("summary", ""),
            }
            for name, _ in Signal.choices
        ]
        for cell in cells:
            cell["text"] = STATUS_TEXT.get(cell["status"], cell["status"])
        rows.append({"line": line, "cells": cells})
    return render(
        request,
        "monitoring/overview.html",
        {
            "rows": rows,
            "signals": Signal.choices,
            "open_alerts": selectors.alerts(is_open=True)[:50],
        },
    )


def _markers(line, since):
    rollouts = [
        charts.Marker(
            e.created_at, f"rollout: {e.action} {e.model_version.name} v{e.model_version.version}"
        )
        for e in selectors.rollout_events(line=line, since=since)
    ]
    changes = [
        charts.Marker(c.changed_at, f"settings: {', '.join(c.changes)}")
        for c in selectors.line_settings_changes(line=line, since=since)
    ]
    return rollouts + changes


@login_required
def line_page(request, line_code: str):
    page_roles_required(request, *INSPECTING)
    line = core_selectors.line_get(code=line_code)
    report = services.line_report(line=line)
    since = timezone.now() - timedelta(hours=HISTORY_HOURS)
    markers = _markers(line, since)
    panels = []
    for name, label in Signal.choices:
        history = selectors.signal_history(line=line, signal=name, since=since)
        points = [
            charts.Point(p.evaluated_at, p.value, p.status, (p.band_low, p.band_high))
            for p in history
        ]
        signal = report["signals"].get(name, {})
        panels.append(
            {
                "name": name,
                "label": label,
                "signal": signal,
                "status_text": STATUS_TEXT.get(signal.get("status"), "not evaluated"),
                "chart": mark_safe(  # noqa: S308 - charts escape every text they draw
                    charts.time_series(
                        points, markers, title=CHART_TITLES[name], percent=name in PERCENT_SIGNALS
                    )
                ),
            }
        )
    yield_signal = report["signals"].get(Signal.YIELD, {})
    p_chart = yield_signal.get("p_chart") or {}
    supervisor = user_has_role(request.user, *SUPERVISING)
    context = {
        "line": line,
        "report": report,
        "panels": panels,
        "reference_thumbnails": (report.get("reference") or {}).get("capture_ids") or [],
        "recent_thumbnails": [str(c) for c in selectors.recent_capture_ids(line=line, limit=8)],
        "p_chart": mark_safe(  # noqa: S308
            charts.p_chart(
                p_chart.get("periods") or [],
                p_chart.get("center"),
                title="Defect rate per hour (p-chart)",
            )
        ),
        "pareto": mark_safe(  # noqa: S308
            charts.pareto_bars(
                ((yield_signal.get("pareto") or {}).get("entries") or []),
                title="Defect types marked by inspectors (24 h)",
            )
        ),
        "markers": markers,
        "supervisor": supervisor,
        "rules": selectors.line_rules(line=line) if supervisor else None,
        "deliveries": selectors.deliveries(line=line, limit=20) if supervisor else [],
        "actions": selectors.actions(line=line, limit=20) if supervisor else [],
        "rule_changes": selectors.rules_changes(line=line, limit=20) if supervisor else [],
        "alerts": selectors.alerts(line=line)[:20],
    }
    return render(request, "monitoring/line.html", context)
