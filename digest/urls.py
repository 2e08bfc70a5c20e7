from django.urls import path, register_converter
from django.urls.converters import StringConverter

from . import views

app_name = "digest"


class TokenConverter(StringConverter):
    regex = r"[A-Za-z0-9_\-:.]{10,400}"


register_converter(TokenConverter, "token")

urlpatterns = [
    path("digest/<str:cadence>/<str:date>/", views.edition_page, name="edition"),
    path("d/<token:token>/", views.view_in_browser, name="view_in_browser"),
    path("vote/<token:token>/", views.feedback, name="feedback"),
]
