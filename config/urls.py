from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from django.contrib import admin
from django.urls import include, path

from config import admin_login, health
from config.esp_webhooks import anymail_webhook, checked
from digest.dashboard import dashboard_view

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("healthz/deep", health.healthz_deep, name="healthz_deep"),
    path("admin/dashboard/", admin.site.admin_view(dashboard_view), name="paperboy_dashboard"),
    path("admin/login/", admin_login.login),  # rate-limited; before admin.site.urls
    path("admin/", admin.site.urls),
    path(  # before the other ESPs' webhooks: Mailgun's tracking is served without importing them
        "anymail/mailgun/tracking/", checked(MailgunTrackingWebhookView).as_view(), name="mailgun_tracking_webhook"
    ),
    path("anymail/<path:rest>", anymail_webhook),  # anymail's other webhooks, imported on first use
    path("", include("digest.urls")),
    path("", include("subscriptions.urls")),
]
