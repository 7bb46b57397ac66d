from django.apps import AppConfig


class InspectionConfig(AppConfig):
    name = "inspection"
    verbose_name = "Inspection"

    def ready(self) -> None:
        # The registry shows and acts on evidence it cannot read itself (see its module).
        from inspection import selectors
        from models_registry import evidence

        evidence.connect(selectors)
