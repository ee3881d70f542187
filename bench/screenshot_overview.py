"""Screenshots of the overview of a big city (issue 13) into docs/screenshots/.

Fills PostgreSQL as bench_read_side.py does (N pages x D days, long tail), renders
/overview as an admin through the app, inlines its stylesheet and has Chromium
(headless) photograph it, on a desktop and a phone width.

Usage: python bench/screenshot_overview.py [--pages 10000] [--days 730]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aggregator.accounts.services import create_account  # noqa: E402
from aggregator.app import create_app  # noqa: E402
from aggregator.migrate import migrate  # noqa: E402
from bench_read_side import ADMIN, PASSWORD, bench_settings, fill, signed_in_client  # noqa: E402
from common import REPO, pg_database  # noqa: E402
from koe_directory import load_directory  # noqa: E402
from koe_kit.db import session_factory, transaction  # noqa: E402

SIZES = {"desktop": (1280, 2400), "phone": (390, 3000)}
CSS = REPO / "services/aggregator/src/aggregator/dashboard/static/dashboard.css"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=730)
    args = parser.parse_args()
    with pg_database() as url:
        migrate(url)
        settings = bench_settings(url)
        fill(url, args.pages, args.days, datetime.now(settings.timezone).date())
        app = create_app(settings)
        with transaction(session_factory(app.extensions["koe.engine"])) as session:
            directory = load_directory(REPO / "divisions.yaml")
            create_account(session, directory, email=ADMIN, password=PASSWORD, admin=True)
        client = signed_in_client(app)
        page = client.get("/overview").get_data(as_text=True)
        print(f"overview at N={args.pages:,}: {len(page.encode()) / 1e3:.0f} KB")
        app.extensions["koe.engine"].dispose()
    # The stylesheet inline: the file is opened without the app's static route.
    page = page.replace("</head>", f"<style>{CSS.read_text()}</style></head>", 1)
    with tempfile.TemporaryDirectory() as work:
        html = Path(work) / "overview.html"
        html.write_text(page, encoding="utf-8")
        for name, (width, height) in SIZES.items():
            out = REPO / f"docs/screenshots/overview-{args.pages // 1000}k-pages-{name}.png"
            subprocess.run(  # noqa: S603 (our own arguments)
                [
                    "chromium",
                    "--headless",
                    "--no-sandbox",
                    "--hide-scrollbars",
                    f"--user-data-dir={work}/profile",
                    f"--window-size={width},{height}",
                    f"--screenshot={out}",
                    html.as_uri(),
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
            print(f"  {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
