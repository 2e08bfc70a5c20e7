from django.urls import path

from . import views

app_name = "subscriptions"

urlpatterns = [
    path("", views.signup, name="signup"),
    path("subscribe/", views.signup, name="subscribe"),
    path("subscribe/check-your-inbox/", views.check_inbox, name="check_inbox"),
    path("subscribe/resend/", views.resend, name="resend"),
    path("confirm/<str:token>/", views.confirm, name="confirm"),
    path("preferences/<str:token>/", views.preferences, name="preferences"),
    path("preferences/<str:token>/pause/", views.pause, name="pause"),
    path("preferences/<str:token>/resume/", views.resume, name="resume"),
    path("preferences/<str:token>/my-data/", views.my_data, name="my_data"),
    path("preferences/<str:token>/delete/", views.delete, name="delete"),
    path("preferences/<str:token>/new-link/", views.new_link, name="new_link"),
    path("preferences/<str:token>/address/", views.change_address, name="change_address"),
    path("new-address/<str:token>/", views.confirm_new_address, name="confirm_new_address"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
