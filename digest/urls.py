from django.urls import path, register_converter
from django.urls.converters import StringConverter

from . import views

app_name = "digest"


class TokenConverter(StringConverter):
    regex = r"[A-Za-z0-9_\-:.]{10,400}"


register_converter(TokenConverter, "token")

urlpatterns = [
    path("digest/", views.archive, name="archive"),
    path("digest/<str:cadence>/<str:date>/", views.edition_page, name="edition"),
    path("d/<token:token>/", views.view_in_browser, name="view_in_browser"),
    path("feed/<token:token>/", views.subscriber_feed, name="feed"),
    path("vote/<token:token>/<int:paper_id>/<str:choice>/", views.vote, name="vote"),
]
