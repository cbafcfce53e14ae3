"""DOT mounted under ``o/`` as its docs show, Django's login page, the protected API, a test hook."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import hooks, views

urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("api/echo/", views.Echo.as_view(), name="echo"),
    path("__test/stats", hooks.stats),  # test-only (a real deployment has no such thing)
]
