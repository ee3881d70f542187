"""`make run` stops on Ctrl-C even when a script started it with SIGINT ignored
(a shell runs background jobs so), not only on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import time
    from koe_devkit.local_stack import stop_on_signals

    stop_on_signals()
    try:
        print("ready", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    """
)


@pytest.mark.integration
def test_sigint_stops_the_stack_although_the_parent_ignored_it():
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        stdout=subprocess.PIPE,
        text=True,
        # What `sh -c 'make run &'` does to the background job.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=10)
    finally:
        process.kill()
    assert out == "stopping\n"
    assert process.returncode == 0
