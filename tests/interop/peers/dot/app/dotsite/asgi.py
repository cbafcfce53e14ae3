"""The ASGI application uvicorn serves (Django's own entry point, as ``startproject`` writes it)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dotsite.settings")

application = get_asgi_application()
