"""`make run`: koe on one machine without Docker, and the same launcher for the
end-to-end tests.

Starts whatever the environment does not already point at: a Kafka-protocol
broker (Tansu, memory-only) unless KAFKA_BOOTSTRAP_SERVERS is set, an SMTP sink
keeping every mail under var/mail/ unless SMTP_HOST is set, SQLite databases
under var/ unless <SERVICE>_DATABASE_URL is set; then creates the topics,
migrates each service's database, and runs every koe process (the web apps
under gunicorn). Ctrl-C (or SIGTERM) stops everything it started.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from koe_devkit.local_broker import LocalBroker, wait_for_port
from koe_kit.metrics import MULTIPROC_ENV

SERVICES = ("feedback", "aggregator", "notifier")
DEFAULT_PORTS = {"feedback": 8000, "aggregator": 8001, "notifier": 8002}
GUNICORN_CONFIG = "python:koe_kit.gunicorn_conf"

# Tansu answers a JoinGroup only after about half the rebalance timeout
# (ENVIRONMENT.md); with kafka-python's 300 s default a consumer would sit
# for minutes. Only applied when we start Tansu ourselves.
TANSU_TIMINGS = {
    "KAFKA_MAX_POLL_INTERVAL_MS": "3000",
    "KAFKA_SESSION_TIMEOUT_MS": "3000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
}


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    cwd: Path | None = None


@dataclass
class LocalStack:
    """Every koe process, started from one environment mapping."""

    env: dict[str, str]
    var_dir: Path
    processes: dict[str, Process] = field(default_factory=dict)
    broker: LocalBroker | None = None
    sink: subprocess.Popen[bytes] | None = None
    token_generated: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], var_dir: Path) -> LocalStack:
        return cls(dict(env), var_dir)

    # -- infrastructure -------------------------------------------------------------

    def start_infrastructure(self) -> None:
        self._refuse_taken_ports()
        self.var_dir.mkdir(parents=True, exist_ok=True)
        (self.var_dir / "log").mkdir(exist_ok=True)
        if not self.env.get("KAFKA_BOOTSTRAP_SERVERS"):
            broker_port = int(self.env.get("KOE_BROKER_PORT", "9092"))
            self.broker = LocalBroker(broker_port, self.var_dir / "log" / "broker.log").start()
            self.env["KAFKA_BOOTSTRAP_SERVERS"] = self.broker.bootstrap
            for name, value in TANSU_TIMINGS.items():
                self.env.setdefault(name, value)
        if not self.env.get("SMTP_HOST"):
            smtp_port = self.env.get("SMTP_PORT", "1025")
            self.sink = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "koe_devkit.smtp_sink",
                    "--port",
                    smtp_port,
                    "--dir",
                    str(self.var_dir / "mail"),
                ],
                stdout=subprocess.DEVNULL,
            )
            wait_for_port("127.0.0.1", int(smtp_port))
            self.env["SMTP_HOST"] = "127.0.0.1"
            self.env["SMTP_PORT"] = smtp_port
        if not self.env.get("KOE_API_TOKEN"):
            self.env["KOE_API_TOKEN"] = self._local_secret("api-token")
            self.token_generated = True
        if not self.env.get("KOE_CHALLENGE_KEY"):
            # The feedback API's key that signs proof-of-work challenges.
            self.env["KOE_CHALLENGE_KEY"] = self._local_secret("challenge-key")
        if not self.env.get("KOE_SECRET_KEY"):
            # The dashboard's session-cookie key; kept, so sign-ins survive a restart.
            self.env["KOE_SECRET_KEY"] = self._local_secret("secret-key")
        # make run serves plain http: a Secure cookie would never come back to it.
        self.env.setdefault("KOE_DASHBOARD_SECURE_COOKIES", "false")
        self.env.setdefault(
            "KOE_ALLOWED_ORIGINS",
            "http://localhost:{0},http://127.0.0.1:{0},https://www.info.city.tsu.mie.jp".format(
                self.port("feedback")
            ),
        )
        # /embed and /demo name where widget.js comes from: here, this machine's app.
        self.env.setdefault("KOE_PUBLIC_URL", f"http://127.0.0.1:{self.port('feedback')}")
        for argv, env in self.setup_commands():
            self._run(argv, env)

    def _refuse_taken_ports(self) -> None:
        """Stop, naming each variable, when another program listens on a port that a
        process of ours is to listen on. Were it started anyway, our broker or sink would
        fail to bind and exit, and koe would quietly send its events or its mail (citizens'
        answers, alert emails) to whatever else answers there."""
        wanted = {f"KOE_{service.upper()}_PORT": self.port(service) for service in SERVICES}
        how = {name: "or set it to a free port" for name in wanted}
        if not self.env.get("KAFKA_BOOTSTRAP_SERVERS"):
            wanted["KOE_BROKER_PORT"] = int(self.env.get("KOE_BROKER_PORT", "9092"))
            how["KOE_BROKER_PORT"] = (
                "or set it to a free port; to use that broker, set KAFKA_BOOTSTRAP_SERVERS"
            )
        if not self.env.get("SMTP_HOST"):
            wanted["SMTP_PORT"] = int(self.env.get("SMTP_PORT", "1025"))
            how["SMTP_PORT"] = "or set it to a free port; to use that server, set SMTP_HOST"
        taken = [name for name, port in wanted.items() if not _free("127.0.0.1", port)]
        if taken:
            lines = [
                f"  {name}={wanted[name]}: stop what listens there, {how[name]}" for name in taken
            ]
            raise SystemExit(
                "koe: another program already listens on a port make run would use:\n"
                + "\n".join(lines)
            )

    def setup_commands(self) -> list[tuple[list[str], dict[str, str]]]:
        """The one-shot commands before the services start (compose's `setup` job)."""
        commands = [([sys.executable, "-m", "koe_kit.topics"], dict(self.env))]
        for service in SERVICES:
            commands.append(
                ([sys.executable, "-m", f"{service}.migrate"], self.service_env(service))
            )
        return commands

    def _local_secret(self, name: str) -> str:
        """A secret kept under var/ so it survives restarts of `make run`."""
        path = self.var_dir / name
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
            path.chmod(0o600)
        return path.read_text(encoding="utf-8").strip()

    def port(self, service: str) -> int:
        return int(self.env.get(f"KOE_{service.upper()}_PORT", DEFAULT_PORTS[service]))

    def service_env(self, service: str) -> dict[str, str]:
        env = dict(self.env)
        env["DATABASE_URL"] = self.env.get(
            f"{service.upper()}_DATABASE_URL", f"sqlite:///{self.var_dir / service}.db"
        )
        return env

    @staticmethod
    def _run(argv: list[str], env: Mapping[str, str]) -> None:
        result = subprocess.run(argv, env=dict(env), capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"koe: {' '.join(argv)} failed:\n{result.stderr or result.stdout}")

    # -- koe processes --------------------------------------------------------------

    def define_processes(self) -> None:
        workers = self.env.get("KOE_WEB_WORKERS", "2")
        for service in SERVICES:
            env = self.service_env(service)
            # Each app's workers share their metrics through files (koe_kit.metrics).
            env[MULTIPROC_ENV] = str(self.var_dir / "metrics" / service)
            port = self.port(service)
            self.processes[f"{service}-web"] = Process(
                f"{service}-web",
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-c",
                    GUNICORN_CONFIG,
                    f"{service}.wsgi:app",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    workers,
                    "--graceful-timeout",
                    "10",
                ],
                env,
                port,
            )
        self.processes["feedback-relay"] = Process(
            "feedback-relay",
            [sys.executable, "-m", "feedback.relay"],
            self.service_env("feedback"),
        )
        self.processes["aggregator-consumer"] = Process(
            "aggregator-consumer",
            [sys.executable, "-m", "aggregator.consumer"],
            self.service_env("aggregator"),
        )
        self.processes["notifier-consumer"] = Process(
            "notifier-consumer",
            [sys.executable, "-m", "notifier.consumer"],
            self.service_env("notifier"),
        )
        # Each loop touches a heartbeat file of its own, as in compose, so
        # `python -m koe_kit.heartbeat` tells whether it still turns.
        for name in ("feedback-relay", "aggregator-consumer", "notifier-consumer"):
            self.processes[name].env["KOE_HEARTBEAT_FILE"] = str(self.heartbeat_file(name))

    def heartbeat_file(self, name: str) -> Path:
        return self.var_dir / f"{name}.heartbeat"

    def start(self, name: str) -> None:
        process = self.processes[name]
        log = open(self.var_dir / "log" / f"{name}.log", "ab")  # noqa: SIM115
        process.popen = subprocess.Popen(
            process.argv, env=process.env, stdout=log, stderr=log, cwd=process.cwd
        )
        log.close()

    def start_copy(self, name: str, copy: str) -> None:
        """Start another copy of process `name` as `copy` (a second consumer group member,
        say), with a log and heartbeat file of its own; stop() stops it too."""
        original = self.processes[name]
        env = dict(original.env)
        if "KOE_HEARTBEAT_FILE" in env:
            env["KOE_HEARTBEAT_FILE"] = str(self.heartbeat_file(copy))
        self.processes[copy] = Process(copy, original.argv, env, cwd=original.cwd)
        self.start(copy)

    def start_all(self) -> None:
        self.define_processes()
        for name in self.processes:
            self.start(name)
        for process in self.processes.values():
            if process.port:
                wait_for_port("127.0.0.1", process.port, timeout_s=30)
                _wait_for_an_answer(process.port)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        popen = self.processes[name].popen
        if popen and popen.poll() is None:
            popen.send_signal(sig)
            popen.wait(timeout=30)

    def dead(self) -> list[str]:
        return [n for n, p in self.processes.items() if p.popen and p.popen.poll() is not None]

    def stop(self) -> None:
        for process in self.processes.values():
            if process.popen and process.popen.poll() is None:
                process.popen.terminate()
        for process in self.processes.values():
            if process.popen:
                try:
                    process.popen.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.popen.kill()
        if self.sink:
            self.sink.terminate()
            self.sink.wait(timeout=10)
        if self.broker:
            self.broker.stop()


def _free(host: str, port: int) -> bool:
    """Whether a server of ours could listen on host:port now (a port left in TIME_WAIT
    by an earlier run counts as free, as it does for gunicorn and the broker)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _wait_for_an_answer(port: int, timeout_s: float = 120.0) -> None:
    """Wait until a web app answers /healthz. gunicorn listens before its workers have
    loaded the app, and on a busy machine that takes seconds: a first request (a
    test's, a user's) would sit in the listen queue meanwhile and could time out."""
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{port}/healthz"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f}s")
        time.sleep(0.1)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both stop the stack, tidily. SIGINT is set explicitly: a shell
    script that starts us in the background (`make run &`) leaves SIGINT ignored, and
    Python then keeps it ignored instead of raising KeyboardInterrupt."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def main() -> None:
    var_dir = Path(os.environ.get("KOE_VAR_DIR", "var")).resolve()
    stack = LocalStack.from_env(os.environ, var_dir)
    stop_on_signals()
    try:
        stack.start_infrastructure()
        stack.start_all()
        _print_banner(stack)
        while True:
            dead = stack.dead()
            if dead:
                print(
                    f"koe: {', '.join(dead)} stopped unexpectedly; see {var_dir}/log/",
                    file=sys.stderr,
                )
                raise SystemExit(1)
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nkoe: stopping…")
    finally:
        stack.stop()


def _print_banner(stack: LocalStack) -> None:
    env = stack.env
    print(
        f"""
koe is running (Ctrl-C stops everything).

  feedback API     http://127.0.0.1:{stack.port("feedback")}/api/v1/feedback
  survey demo      http://127.0.0.1:{stack.port("feedback")}/demo
  stats API        http://127.0.0.1:{stack.port("aggregator")}/api/v1/pages
  dashboard        http://127.0.0.1:{stack.port("aggregator")}/pages
                   sign-ins are made with (password from the prompt):
                   DATABASE_URL={stack.service_env("aggregator")["DATABASE_URL"]} \\
                   {sys.executable} -m aggregator.accounts create --email you@city.example --admin
  notifier health  http://127.0.0.1:{stack.port("notifier")}/healthz
  Kafka            {env["KAFKA_BOOTSTRAP_SERVERS"]}
  SMTP             {env["SMTP_HOST"]}:{env["SMTP_PORT"]}  (mail kept in {stack.var_dir}/mail/)
  logs             {stack.var_dir}/log/
""",
        flush=True,
    )
    if stack.token_generated:
        # Printed only when we made it: a token the operator set stays theirs.
        print(
            f"""  stats API token  {env["KOE_API_TOKEN"]}  (kept in {stack.var_dir}/api-token)
    curl -H "Authorization: Bearer {env["KOE_API_TOKEN"]}" \\
         http://127.0.0.1:{stack.port("aggregator")}/api/v1/pages
""",
            flush=True,
        )


if __name__ == "__main__":
    main()
