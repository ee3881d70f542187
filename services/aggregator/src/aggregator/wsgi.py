"""`gunicorn aggregator.wsgi:app`"""

from aggregator.app import create_app
from koe_kit.config import ConfigError, exit_on_config_error

try:
    app = create_app()
except ConfigError as exc:
    exit_on_config_error(exc)
