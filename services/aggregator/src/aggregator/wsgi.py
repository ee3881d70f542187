"""`gunicorn aggregator.wsgi:app`"""

from aggregator.app import create_app
from koe_kit.config import ConfigError, exit_on_config_error
from koe_kit.logs import setup_logging

setup_logging("aggregator")
try:
    app = create_app()
except ConfigError as exc:
    exit_on_config_error(exc)
