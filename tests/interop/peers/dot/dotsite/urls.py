"""DOT mounted under ``o/`` as its docs show, Django's login page, the protected API and the test hooks."""

from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from . import hooks, views

urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("api/echo/", views.Echo.as_view(), name="echo"),
    # Test-only hooks (a real deployment has none of these).
    path("__test/stats", hooks.stats),
    path("__test/reset", csrf_exempt(hooks.reset)),
    path("__test/expire-access", csrf_exempt(hooks.expire_access)),
    path("__test/revoke-refresh", csrf_exempt(hooks.revoke_refresh)),
]
