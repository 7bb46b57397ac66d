"""How deployed models fared on a line's captures: inspectors' overrides of a canary and a
shadow model's agreement. The registry shows this evidence and acts on it (canary rollback).

The captures and the inspectors' decisions belong to `inspection`, which imports the registry
and never the other way round. So the registry declares what it needs here, and `inspection`
supplies the reader at start-up (`inspection.apps.InspectionConfig.ready` calls `connect` with
`inspection.selectors`, whose `canary_record` and `shadow_agreement` join decisions with
deployments). Without a reader (the registry alone) there is no evidence: zero counts.
"""

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class CanaryRecord:
    compared: int  # human decisions on captures the canary acted on, with a model verdict
    overrides: int

    @property
    def override_percent(self) -> float | None:
        return round(100 * self.overrides / self.compared, 1) if self.compared else None


@dataclass(frozen=True)
class AgreementBucket:
    start: Any  # datetime of the bucket's first hour
    shadow_predictions: int
    compared_with_production: int
    agree_with_production: int
    compared_with_humans: int
    agree_with_humans: int

    @staticmethod
    def _percent(part: int, whole: int) -> float | None:
        return round(100 * part / whole, 1) if whole else None

    @property
    def production_percent(self) -> float | None:
        return self._percent(self.agree_with_production, self.compared_with_production)

    @property
    def human_percent(self) -> float | None:
        return self._percent(self.agree_with_humans, self.compared_with_humans)


class EvidenceReader(Protocol):
    def canary_record(self, *, deployment: Any) -> CanaryRecord: ...

    def shadow_agreement(
        self, *, line: Any, model_version: Any, bucket_hours: int = 1, last: int = 5000
    ) -> list[AgreementBucket]: ...


_reader: EvidenceReader | None = None


def connect(reader: EvidenceReader) -> None:
    global _reader
    _reader = reader


def canary_record(*, deployment: Any) -> CanaryRecord:
    """How often inspectors went against the canary's verdicts since it was deployed."""
    return _reader.canary_record(deployment=deployment) if _reader else CanaryRecord(0, 0)


def shadow_agreement(
    *, line: Any, model_version: Any, bucket_hours: int = 1, last: int = 5000
) -> list[AgreementBucket]:
    """The shadow model's verdicts next to the acting model's and the inspectors', per time
    bucket (newest first), over its last `last` shadow predictions on the line."""
    if _reader is None:
        return []
    return _reader.shadow_agreement(
        line=line, model_version=model_version, bucket_hours=bucket_hours, last=last
    )
