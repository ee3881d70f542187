"""The reverse proxy of docker-compose.yml, run for real: Debian's nginx with
deploy/nginx/koe.conf.template (rendered as the nginx image renders it), in front of
the two web apps under gunicorn with compose's commands and environment, TLS from a
certificate authority made for the test.

What it must do: end TLS, keep slow clients away from gunicorn's sync workers (a
slowloris that takes gunicorn down by itself does not take it down through nginx),
carry the dashboard's Secure session cookie through sign-in, and keep the dashboard
off the public listener.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from koe_devkit.local_broker import free_port, wait_for_port
from koe_devkit.testing import issue_certificate, make_ca, wait_until
from support import REPO
from test_compose import SERVICES, command, local_argv, local_env

TEMPLATE = REPO / "deploy/nginx/koe.conf.template"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PASSWORD = "a-long-enough-password"  # noqa: S105 - the test account's
SLOW_CLIENTS = 50


def render(template: str, env: dict[str, str]) -> str:
    """envsubst as the nginx image runs it: only ${NAME}s that are set are replaced."""
    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)\}", lambda m: env.get(m[1], m[0]), template)


@pytest.mark.integration
def test_compose_gives_the_proxy_every_name_its_template_uses():
    names = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", TEMPLATE.read_text(encoding="utf-8")))
    proxy = SERVICES["proxy"]
    assert names == set(proxy["environment"]), names ^ set(proxy["environment"])
    mounts = {v.split(":")[-2] for v in proxy["volumes"]}
    assert "/etc/nginx/templates/default.conf.template" in mounts
    # The proxy is the only koe container with published ports.
    published = sorted(n for n, s in SERVICES.items() if "ports" in s)
    assert published == ["mailpit", "prometheus", "proxy"]
    # The mail catcher's and Prometheus's UIs: this machine only.
    for name in ("mailpit", "prometheus"):
        assert SERVICES[name]["ports"][0].startswith("127.0.0.1:"), name
    # nginx's image tag is the version of Debian's nginx this test runs.
    version = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr
    assert proxy["image"] == f"nginx:{version.strip().rsplit('/', 1)[1]}", version


def make_certificates(folder: Path) -> Path:
    """A test CA and site.crt/site.key it signs for localhost; returns the CA's file."""
    ca = make_ca(folder, "koe-test-ca")
    cert, key = issue_certificate(folder, ca, "localhost", "DNS:localhost")
    cert.rename(folder / "site.crt")
    key.rename(folder / "site.key")
    return ca[0]


@dataclass
class Proxied:
    ca: Path
    public_port: int
    dashboard_port: int
    app_ports: dict[str, int]
    aggregator_env: dict[str, str]

    def public(self, path: str) -> str:
        return f"https://localhost:{self.public_port}{path}"

    def dashboard(self, path: str) -> str:
        return f"https://localhost:{self.dashboard_port}{path}"


def run_as_nobody() -> dict:
    """Unprivileged, as the test's brief asks, when the tests run as root."""
    return {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}


def start_nginx(scratch: Path, settings: dict[str, str]) -> subprocess.Popen:
    """Debian's nginx, unprivileged, with the template rendered for `settings`; the
    certificates are site.crt/site.key in `scratch`."""
    # The access log where nginx (nobody) may write it; compose's goes to stdout.
    settings = {**settings, "KOE_ACCESS_LOG": str(scratch / "access.log")}
    (scratch / "koe.conf").write_text(render(TEMPLATE.read_text("utf-8"), settings))
    # The nginx image's own main file, reduced to what an unprivileged nginx needs.
    temp = scratch / "temp"
    temp.mkdir()
    (scratch / "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\npid {scratch}/nginx.pid;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {temp}/body;\n"
        f"  proxy_temp_path {temp}/proxy;\n  fastcgi_temp_path {temp}/fastcgi;\n"
        f"  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n"
        f"  include {scratch}/koe.conf;\n}}\n"
    )
    shutil.chown(temp, 65534, 65534) if os.geteuid() == 0 else None
    for name in ("site.key", "site.crt"):
        os.chmod(scratch / name, 0o644)
    nginx = [NGINX, "-p", str(scratch), "-e", str(scratch / "error.log"),
             "-c", str(scratch / "nginx.conf")]  # fmt: skip
    if os.geteuid() == 0:
        shutil.chown(scratch, 65534, 65534)
    checked = subprocess.run([*nginx, "-t"], capture_output=True, text=True, **run_as_nobody())
    assert checked.returncode == 0, checked.stderr
    return subprocess.Popen(nginx, **run_as_nobody())


@pytest.fixture
def proxied(new_pg_database) -> Iterator[Proxied]:
    scratch = Path(tempfile.mkdtemp(prefix="koe-proxy-"))
    os.chmod(scratch, 0o755)  # noqa: S103 - nginx's workers (nobody) read the certs
    ca = make_certificates(scratch)
    databases = {db: new_pg_database() for db in ("koe_feedback", "koe_aggregator")}
    processes: list[subprocess.Popen] = []
    try:
        app_ports, envs = {}, {}
        for name in ("feedback-api", "aggregator-web"):
            env = local_env(name, None, None, databases, scratch)
            migrate = subprocess.run(
                local_argv(command(name.split("-")[0] + "-migrate"), None),
                env=env, cwd=REPO, capture_output=True, text=True,
            )  # fmt: skip
            assert migrate.returncode == 0, migrate.stderr
            app_ports[name] = free_port()
            argv = local_argv(command(name), app_ports[name])
            # One sync worker each: what the slowloris below has to hold.
            argv[argv.index("--workers") + 1] = "1"
            processes.append(subprocess.Popen(argv, env=env, cwd=REPO, stderr=subprocess.DEVNULL))
            envs[name] = env
        public_port, dashboard_port = free_port(), free_port()
        settings = {
            **SERVICES["proxy"]["environment"],
            "KOE_PUBLIC_HOST": "localhost",
            "KOE_DASHBOARD_HOST": "localhost",
            "KOE_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
            "KOE_PUBLIC_LISTEN": f"127.0.0.1:{public_port}",
            "KOE_DASHBOARD_LISTEN": f"127.0.0.1:{dashboard_port}",
            "KOE_FEEDBACK_UPSTREAM": f"127.0.0.1:{app_ports['feedback-api']}",
            "KOE_AGGREGATOR_UPSTREAM": f"127.0.0.1:{app_ports['aggregator-web']}",
        }
        for name in ("KOE_TLS", "KOE_DASHBOARD_TLS"):
            settings[f"{name}_CERT"] = str(scratch / "site.crt")
            settings[f"{name}_KEY"] = str(scratch / "site.key")
        processes.append(start_nginx(scratch, settings))
        for port in (*app_ports.values(), public_port, dashboard_port):
            wait_for_port("127.0.0.1", port, timeout_s=30)
        yield Proxied(ca, public_port, dashboard_port, app_ports, envs["aggregator-web"])
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)


def slow_clients(port: int, count: int, tls: ssl.SSLContext | None) -> list[socket.socket]:
    """`count` connections that each send half a request and then nothing (slowloris)."""
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        sock.sendall(b"POST /api/v1/feedback HTTP/1.1\r\nHost: localhost\r\nContent-Le")
        held.append(sock)
    return held


def honest_answers(url: str, tries: int, verify: str | bool) -> int:
    answered = 0
    for _ in range(tries):
        with contextlib.suppress(requests.RequestException):
            answered += requests.get(url, timeout=2, verify=verify).status_code == 200
    return answered


@pytest.mark.e2e
def test_tls_headers_and_the_public_listener_keeps_to_the_survey(proxied: Proxied):
    ca = str(proxied.ca)
    response = requests.get(proxied.public("/readyz"), timeout=10, verify=ca)
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "nginx/" not in response.headers.get("Server", "")
    # A client that does not trust the city's CA is refused the handshake.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(proxied.public("/readyz"), timeout=10)
    # The dashboard is not on the public listener, nor the metrics anywhere through it.
    assert requests.get(proxied.public("/sign-in"), timeout=10, verify=ca).status_code == 404
    for url in (proxied.public("/metrics"), proxied.dashboard("/metrics")):
        assert requests.get(url, timeout=10, verify=ca).status_code == 404


@pytest.mark.e2e
def test_a_slowloris_takes_gunicorn_down_but_not_gunicorn_behind_the_proxy(proxied: Proxied):
    ca = str(proxied.ca)
    tls = ssl.create_default_context(cafile=ca)
    direct = f"http://127.0.0.1:{proxied.app_ports['feedback-api']}/readyz"
    assert honest_answers(direct, 3, True) == 3

    # Through nginx: fifty slow clients, and honest requests still get their answers.
    held = slow_clients(proxied.public_port, SLOW_CLIENTS, tls)
    try:
        time.sleep(1)
        assert honest_answers(proxied.public("/readyz"), 15, ca) == 15
    finally:
        for sock in held:
            sock.close()

    # Straight to gunicorn (what compose published before the proxy): a few are enough.
    held = slow_clients(proxied.app_ports["feedback-api"], 4, None)
    try:
        time.sleep(1)
        assert honest_answers(direct, 3, True) == 0
    finally:
        for sock in held:
            sock.close()


@pytest.mark.e2e
def test_sign_in_through_the_proxy_keeps_the_secure_session_cookie(proxied: Proxied):
    # The runbook's first step, as compose runs it (aggregator-web's environment).
    created = subprocess.run(
        local_argv(["python", "-m", "aggregator.accounts", "create", "--email",
                    "admin@city.example", "--admin"], None),
        env=proxied.aggregator_env, cwd=REPO, input=PASSWORD + "\n",
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr

    http, ca = requests.Session(), str(proxied.ca)
    form = http.get(proxied.dashboard("/sign-in"), timeout=10, verify=ca).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    response = http.post(
        proxied.dashboard("/sign-in"),
        data={"email": "admin@city.example", "password": PASSWORD, "csrf_token": token},
        timeout=10,
        verify=ca,
    )
    assert response.status_code == 200 and urlsplit(response.url).path == "/pages"
    cookies = list(http.cookies)
    assert cookies and all(c.secure for c in cookies), [(c.name, c.secure) for c in cookies]
    # The cookie carries the session on: a page only a signed-in admin sees.
    again = http.get(proxied.dashboard("/pages"), timeout=10, verify=ca, allow_redirects=False)
    assert again.status_code == 200


def whole_answer(sock: socket.socket, request: bytes) -> bytes:
    """What the server sends back for `request` until it closes the connection."""
    sock.sendall(request)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


CLIENT = "127.0.0.77"  # a citizen's address, as the proxy sees it


@dataclass
class BareProxy:
    """nginx with the template and no app behind it: a request koe serves gets 502."""

    scratch: Path
    ca: Path
    http_port: int
    public_port: int
    dashboard_port: int

    def plain(self, host: str) -> bytes:
        with socket.create_connection(
            ("127.0.0.1", self.http_port), timeout=10, source_address=(CLIENT, 0)
        ) as sock:
            return whole_answer(sock, request_for(host))

    def over_tls(self, port: int, server_name: str, host: str) -> bytes:
        tls = ssl.create_default_context(cafile=str(self.ca))
        tls.check_hostname = server_name == "localhost"
        with (
            socket.create_connection(
                ("127.0.0.1", port), timeout=10, source_address=(CLIENT, 0)
            ) as raw,
            tls.wrap_socket(raw, server_hostname=server_name) as sock,
        ):
            return whole_answer(sock, request_for(host))


def request_for(host: str) -> bytes:
    return f"GET /readyz?page=1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


@pytest.fixture
def bare_proxy() -> Iterator[BareProxy]:
    scratch = Path(tempfile.mkdtemp(prefix="koe-proxy-"))  # nobody must reach it
    os.chmod(scratch, 0o755)  # noqa: S103 - nginx's workers (nobody) read the certs
    ca = make_certificates(scratch)
    proxy = BareProxy(scratch, ca, free_port(), free_port(), free_port())
    settings = {
        **SERVICES["proxy"]["environment"],
        "KOE_PUBLIC_HOST": "localhost",
        "KOE_DASHBOARD_HOST": "localhost",
        "KOE_HTTP_LISTEN": f"127.0.0.1:{proxy.http_port}",
        "KOE_PUBLIC_LISTEN": f"127.0.0.1:{proxy.public_port}",
        "KOE_DASHBOARD_LISTEN": f"127.0.0.1:{proxy.dashboard_port}",
        "KOE_FEEDBACK_UPSTREAM": f"127.0.0.1:{free_port()}",
        "KOE_AGGREGATOR_UPSTREAM": f"127.0.0.1:{free_port()}",
    }
    for name in ("KOE_TLS", "KOE_DASHBOARD_TLS"):
        settings[f"{name}_CERT"] = str(scratch / "site.crt")
        settings[f"{name}_KEY"] = str(scratch / "site.key")
    nginx = start_nginx(scratch, settings)
    try:
        for port in (proxy.http_port, proxy.public_port, proxy.dashboard_port):
            wait_for_port("127.0.0.1", port, timeout_s=30)
        yield proxy
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.e2e
def test_a_host_name_koe_does_not_serve_gets_no_answer(bare_proxy: BareProxy):
    """A scanner or a DNS name someone pointed at the city's address: nginx's first
    server would otherwise answer it (and pass any Host on to the apps)."""
    assert bare_proxy.plain("localhost").startswith(b"HTTP/1.1 308 ")  # to https
    assert bare_proxy.plain("evil.example") == b""
    for port in (bare_proxy.public_port, bare_proxy.dashboard_port):
        assert bare_proxy.over_tls(port, "localhost", "localhost").startswith(b"HTTP/1.1 502 ")
        # The right name for the certificate, another in the request: no answer.
        assert bare_proxy.over_tls(port, "localhost", "evil.example") == b""
        # Another name in the handshake: refused before any certificate is shown.
        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            bare_proxy.over_tls(port, "evil.example", "evil.example")


@pytest.mark.e2e
def test_the_access_log_keeps_the_clients_network_not_its_address(bare_proxy: BareProxy):
    bare_proxy.plain("localhost")
    bare_proxy.plain("evil.example")
    bare_proxy.over_tls(bare_proxy.public_port, "localhost", "localhost")
    log = bare_proxy.scratch / "access.log"
    wait_until(lambda: len(log.read_text().splitlines()) == 3, what="three access log lines")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert {line["client"] for line in lines} == {"127.0.0.0/24"}
    assert CLIENT not in log.read_text()
    # The path without its query (a page's URL may carry anything), and what happened.
    assert [(line["request"], line["status"]) for line in lines] == [
        ("GET /readyz", 308),
        ("GET /readyz", 444),
        ("GET /readyz", 502),
    ]
