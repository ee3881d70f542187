"""gunicorn hooks for koe's web apps: `gunicorn -c python:koe_kit.gunicorn_conf <pkg>.wsgi:app`.

They keep prometheus_client's multiprocess mode honest (see koe_kit.metrics):
the directory of per-worker files is emptied when gunicorn starts, so a restart
does not add the previous run's counts, and a dead worker's live gauges are
dropped so /metrics does not report it forever.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

# Multiprocess metrics are gunicorn's business alone, so the folder is chosen here, in
# the master, before any worker imports the apps (workers inherit the environment).
# Were it in the container's environment, every one-off command in that container
# (`docker compose run --rm aggregator-web python -m aggregator.accounts ...`) would
# find it set on a fresh, empty /tmp, and prometheus_client would fail to write its
# first file. Set before anything imports prometheus_client (koe_kit.metrics does),
# which picks its multiprocess mode when first imported.
# A folder of its own per gunicorn (make run names one per app instead).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="koe-metrics-")

from koe_kit.metrics import MULTIPROC_ENV  # noqa: E402

# gunicorn 27's control socket defaults to one path under $HOME: several apps on a
# machine (make run) would fight over it, and the image's home is read-only. koe
# does not use it.
control_socket_disable = True


def _service() -> str:
    """The app's package ("feedback" for feedback.wsgi:app), as its own logs name it."""
    return next((a.split(".", 1)[0] for a in sys.argv if a.endswith(".wsgi:app")), "gunicorn")


# gunicorn's own lines (start, workers booting and dying, timeouts) as JSON too, so
# one log pipeline reads every line. gunicorn merges this over its defaults key by
# key, so each key is given whole. No access log: the apps log each request.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "koe_kit.logs.JsonFormatter", "service": _service()}},
    # gunicorn names the client of a request it refuses itself: only its network stays.
    "filters": {"addresses": {"()": "koe_kit.logs.AddressFilter"}},
    "handlers": {
        "error_console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["addresses"],
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
    },
    "root": {"level": "INFO", "handlers": []},
}


def on_starting(_server: Any) -> None:
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        directory = Path(path)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)


def child_exit(_server: Any, worker: Any) -> None:
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
