from django.apps import AppConfig


class DigestConfig(AppConfig):
    name = "digest"
    verbose_name = "Digest"

    def ready(self):
        from anymail.signals import tracking

        from config import checks as deploy_checks  # noqa: F401  (registers the project's deploy checks)

        from . import checks  # noqa: F401  (registers the system checks)
        from .webhooks import record_tracking_event

        tracking.connect(record_tracking_event, dispatch_uid="digest.record_tracking_event")
