"""`gunicorn notifier.wsgi:app`"""

from koe_kit.config import ConfigError, exit_on_config_error
from koe_kit.logs import setup_logging
from notifier.app import create_app

setup_logging("notifier")
try:
    app = create_app()
except ConfigError as exc:
    exit_on_config_error(exc)
