"""bffgate: a backend-for-frontend token gateway.

The browser holds only HttpOnly, sealed cookies; bffgate holds the tokens, adds
``Authorization: Bearer`` to every proxied call and refreshes tokens once per session.

    from bffgate import Settings, create_app
    app = create_app(Settings(remote_api="https://api.example.com", etls_access=..., etls_refresh=...))
"""

from .app import create_app
from .config import Settings, load_settings
from .errors import BffError, ConfigError

__all__ = ["BffError", "ConfigError", "Settings", "__version__", "create_app", "load_settings"]

__version__ = "0.1.0"
