"""Celery entry points of monitoring: the beat job over every line, and webhook delivery."""

from celery import shared_task

from monitoring.services import alerts, checks

WEBHOOK_RETRIES = 6  # with backoff: about 1, 2, 4, 8, 16, 32 s (capped at 10 min), then failed


@shared_task(name="monitoring.lines_check", acks_late=True, soft_time_limit=50, time_limit=58)
def lines_check() -> int:
    """Beat, every minute: every line's signals (idempotent: a line with nothing new is
    skipped)."""
    return len(checks.lines_check()["lines"])


@shared_task(
    name="monitoring.webhook_deliver",
    bind=True,
    acks_late=True,
    soft_time_limit=25,  # the POST itself times out after 10 s
    time_limit=30,
    autoretry_for=(alerts.WebhookFailed,),
    retry_backoff=True,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=WEBHOOK_RETRIES,
)
def webhook_deliver(self, delivery_id: int) -> str | None:
    final = self.request.retries >= WEBHOOK_RETRIES
    delivery = alerts.webhook_deliver(delivery_id=delivery_id, final_attempt=final)
    return delivery.status if delivery else None
