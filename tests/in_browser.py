"""Browser test helpers: Debian's Chromium driven by Playwright, axe-core run in the page.

Playwright cannot download its own browsers here (ENVIRONMENT.md), so it drives
/usr/bin/chromium; `make test` installs it with apt. axe-core comes from npm
(package.json), loaded into the page under test from node_modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google hosts
# that this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE_JS = Path(__file__).parents[1] / "node_modules" / "axe-core" / "axe.min.js"

PHONE = {"viewport": {"width": 320, "height": 640}, "device_scale_factor": 2, "is_mobile": True}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}


def axe_violations(page: Any, include: str | None = None) -> list[dict[str, Any]]:
    """Run axe-core (WCAG 2.x A and AA rules) in the page; its violations, each with its nodes.

    include: a CSS selector to check only that part of the page (the widget on a host page).
    """
    page.add_script_tag(path=str(AXE_JS))
    context = include or "document"
    return page.evaluate(
        """async (selector) => {
            const context = selector === "document" ? document : {include: [selector]};
            const result = await axe.run(context, {
                runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
            });
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => n.target.join(" ")),
            }));
        }""",
        context,
    )


class ServedApp:
    """A WSGI app served over http from a thread, for koe_devkit.testing.running()."""

    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.port}"

    def run(self) -> None:
        self.server.serve_forever(poll_interval=0.1)

    def stop(self, *_: object) -> None:
        self.server.shutdown()


def sign_in(page: Any, email: str, password: str) -> None:
    """Fill the dashboard's sign-in form and send it."""
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("form.sign-in button[type=submit]")
