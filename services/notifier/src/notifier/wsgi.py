"""`gunicorn notifier.wsgi:app`"""

from koe_kit.config import ConfigError, exit_on_config_error
from notifier.app import create_app

try:
    app = create_app()
except ConfigError as exc:
    exit_on_config_error(exc)
