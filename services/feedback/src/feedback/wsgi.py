"""`gunicorn feedback.wsgi:app`"""

from __future__ import annotations

from feedback.app import create_app
from koe_directory import DirectoryError
from koe_kit.config import ConfigError, exit_on_config_error
from koe_kit.logs import setup_logging

setup_logging("feedback")
try:
    app = create_app()
except ConfigError as exc:
    exit_on_config_error(exc)
except DirectoryError as exc:
    exit_on_config_error(ConfigError([f"KOE_DIVISIONS_FILE: {exc}"]))
