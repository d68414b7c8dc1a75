"""Build the token service from the settings (the web app holds one lazily: ``backend/app.py``).

Defaults: the SQLite file ``tokens.db`` in the data directory: ``DATA_DIR``, else the
platform's per-user data directory as platformdirs names it - Linux and the BSDs
``$XDG_DATA_HOME/portkeeper``, else ``~/.local/share/portkeeper``; macOS
``~/Library/Application Support/portkeeper``; Windows
``%LOCALAPPDATA%\\portkeeper``. A per-user directory outside the repository keeps the
database and the development key out of version control and out of ``git clean``, and is
shared by every worker and checkout of the user.
"""

from __future__ import annotations

from pathlib import Path

from backend.services.integrations.keys import KeyRing, configured_keys, development_key
from backend.services.integrations.store import TokenStore
from backend.services.integrations.unified_token_service import UnifiedTokenService
from backend.settings import Settings, load_settings
from utils.errors import InvalidValue

APP_DIR_NAME = "portkeeper"
DB_FILE_NAME = "tokens.db"


def data_dir(settings: Settings) -> Path:
    """Where the SQLite store and the development key live."""
    if settings.data_dir is not None:
        return settings.data_dir.expanduser().absolute()
    import platformdirs

    # appauthor=False: no vendor folder on Windows. The XDG rules (a relative
    # XDG_DATA_HOME is ignored) hold from platformdirs 4.11.8 on: requirements.txt.
    found = Path(platformdirs.user_data_dir(APP_DIR_NAME, appauthor=False))
    if not found.is_absolute():  # "~/..." left unexpanded: no home directory
        raise InvalidValue(
            "DATA_DIR is not set and this user has no home directory: expected DATA_DIR=PATH"
        )
    return found


def key_ring(settings: Settings) -> KeyRing:
    """Configured keys; in development without any, the data directory's generated key."""
    secret = settings.token_encryption_keys
    keys = configured_keys(
        secret.get_secret_value() if secret is not None else None,
        production=settings.app_env == "production",
    )
    return KeyRing(keys or [development_key(data_dir(settings))])


def token_store(settings: Settings) -> TokenStore:
    """``DATABASE_URL`` if set, else the SQLite file in the data directory."""
    timeout = settings.token_store_timeout
    if settings.database_url is not None:
        return TokenStore(settings.database_url.get_secret_value(), timeout=timeout)
    return TokenStore(f"sqlite:///{data_dir(settings) / DB_FILE_NAME}", timeout=timeout)


def token_service(settings: Settings | None = None) -> UnifiedTokenService:
    """The service the settings describe (InvalidValue for a bad or missing setting)."""
    settings = settings or load_settings()
    return UnifiedTokenService(
        token_store(settings), key_ring(settings), skew=float(settings.token_refresh_skew)
    )
