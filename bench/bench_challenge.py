"""What the proof of work at the JSON API's door costs (feedback.challenges), in one run:

1. a citizen: widget.js solving koe's challenge in Chromium on the demo page, at the
   default KOE_CHALLENGE_MAX_NUMBER, from the first hash to the last (median, p95);
2. a script: ALTCHA's own Python solver on the same challenges, one core, and a plain
   hashlib loop that hashes the salt once (what a script writer would do). A script
   solves faster than a browser (no promise per hash, no page to keep responsive), and
   native code faster still: the work slows scripts, it does not stop them;
3. koe: ingest accepted/s and CPU ms per accepted response under gunicorn and wrk,
   with the challenge (each answer spends a proof; the GET that issues one measured
   apart and added) against a checkout of the code without it (--before; by default
   the newest commit in this history without feedback/challenges.py, as a temporary
   git worktree).

Numbers and ratios only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import altcha
import psutil

from bench_ingest import BODY, MOST_PER_SECOND, asks_proof, gunicorn, proof_pool, wrk
from common import REPO, code_env, free_port, migrate, percentile, pg_database, process

sys.path.insert(0, str(REPO / "tests"))
from in_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from support import CHALLENGE_KEY, LIFTED_BUDGETS  # noqa: E402

CHALLENGES = "services/feedback/src/feedback/challenges.py"
DEFAULT_MAX_NUMBER = 100_000
# In the page before widget.js runs: the time of every SHA-256 it asks crypto.subtle for.
COUNT_DIGESTS = """
window.koeDigests = [];
const digest = crypto.subtle.digest.bind(crypto.subtle);
crypto.subtle.digest = (algorithm, data) => {
    window.koeDigests.push(performance.now());
    return digest(algorithm, data);
};
"""


def feedback_env(database_url: str, site: str, checkout: Path | None = None) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "KOE_ALLOWED_ORIGINS": site,
        "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
        "KOE_CHALLENGE_KEY": CHALLENGE_KEY,
        "KOE_CLIENT_KEY": "bench-client-key-" + "x" * 32,  # code before the challenge
        # wrk is one address, one source: its budgets must not refuse the load.
        **LIFTED_BUDGETS,
        "KOE_RATE_LIMIT_MAX": "1000000",
        "KOE_TRUSTED_PROXIES": "1",
        **code_env("feedback", checkout),
    }


# -- 1. the citizen's browser -----------------------------------------------------------


def browser_solves(solves: int, workers: int) -> list[tuple[float, int]]:
    """(seconds from first hash to last, hashes) of `solves` answers on the demo page."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    site = f"http://127.0.0.1:{port}"
    found = []
    with pg_database() as url:
        migrate("feedback", url)
        env = feedback_env(url, site)
        server = process(gunicorn("feedback.wsgi:app", port, workers), env, port)
        with server, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for n in range(solves):
                context = browser.new_context(user_agent=f"Mozilla/5.0 bench {n}")
                context.add_init_script(COUNT_DIGESTS)
                page = context.new_page()
                page.goto(f"{site}/demo/tsu-dx")
                page.wait_for_selector("#koe-feedback[data-koe-ready]", state="attached")
                page.get_by_label("わかりやすかった", exact=True).check()
                page.get_by_role("button", name="送信").click()
                page.locator("#koe-thanks").wait_for(state="visible", timeout=120_000)
                digests = page.evaluate("window.koeDigests")
                found.append(((digests[-1] - digests[0]) / 1000, len(digests)))
                context.close()
            browser.close()
    return found


# -- 2. a script --------------------------------------------------------------------------


def python_solves(solves: int, max_number: int, fast: bool) -> list[tuple[float, int]]:
    """(seconds, hashes) of ALTCHA's Python solver (or, `fast`, a hashlib loop that hashes
    the salt once and copies that state) on challenges as koe issues them."""
    found = []
    for _ in range(solves):
        challenge = altcha.create_challenge_v1(
            algorithm="SHA-256",
            max_number=max_number,
            salt_length=12,
            hmac_key=CHALLENGE_KEY,
            salt="",
            number=None,
            expires=datetime.now(UTC) + timedelta(minutes=20),
            params={"page": "0" * 32},
        )
        started = time.perf_counter()
        number = fast_solve(challenge) if fast else altcha.solve_challenge_v1(challenge).number
        found.append((time.perf_counter() - started, number + 1))
    return found


def fast_solve(challenge: altcha.ChallengeV1) -> int:
    salted = hashlib.sha256(challenge.salt.encode())
    target = bytes.fromhex(challenge.challenge)
    for number in range(challenge.max_number + 1):
        attempt = salted.copy()
        attempt.update(str(number).encode())
        if attempt.digest() == target:
            return number
    raise RuntimeError("a challenge koe issued has a solution")


# -- 3. koe's side ------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children so far (gunicorn and its workers)."""
    parent = psutil.Process(pid)
    total = 0.0
    for proc in [parent, *parent.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def get_wrk(url: str, seconds: int, connections: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"requests": requests, "errors": int(non2xx.group(1)) if non2xx else 0}


def ingest(checkout: Path | None, args) -> dict:
    """Accepted/s and CPU ms per accepted answer of one checkout's feedback API."""
    proofs = proof_pool(MOST_PER_SECOND * args.seconds) if asks_proof(checkout) else None
    port = free_port()
    with pg_database() as url:
        migrate("feedback", url, checkout)
        env = feedback_env(url, "https://www.info.city.tsu.mie.jp", checkout)
        with process(gunicorn("feedback.wsgi:app", port, args.workers), env, port) as server:
            api = f"http://127.0.0.1:{port}/api/v1/feedback"
            before = cpu_s(server.pid)
            posted = wrk(api, args.seconds, args.connections, proofs)
            used = cpu_s(server.pid) - before
            accepted = posted["rps"] * args.seconds  # wrk's rate over its duration
            result = {
                "accepted_per_s": posted["rps"],
                "refused": posted["errors"],
                "cpu_ms": 1000 * used / max(accepted - posted["errors"], 1),
                "issue_cpu_ms": 0.0,
            }
            if proofs is not None:
                # Each accepted answer needs a challenge first: what issuing one costs.
                query = f"?page_url={BODY['page_url']}"
                before = cpu_s(server.pid)
                issued = get_wrk(f"{api}/challenge{query}", args.seconds, args.connections)
                result["issue_cpu_ms"] = 1000 * (cpu_s(server.pid) - before) / issued["requests"]
                result["issued_per_s"] = issued["requests"] / args.seconds
    return result


@contextlib.contextmanager
def without_challenge(given: Path | None) -> Iterator[tuple[Path, str]]:
    """A checkout without the challenge: `given`, or a temporary worktree of the newest
    commit of this history that has no feedback/challenges.py."""
    if given is not None:
        yield given, str(given)
        return
    commits = subprocess.run(
        ["git", "-C", str(REPO), "rev-list", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.split()
    commit = next(
        c
        for c in commits
        if not subprocess.run(
            ["git", "-C", str(REPO), "ls-tree", c, CHALLENGES], capture_output=True, text=True
        ).stdout
    )
    folder = Path(tempfile.mkdtemp(prefix="koe-without-challenge-"))
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), commit],
        capture_output=True,
        check=True,
    )
    try:
        yield folder, commit[:10]
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)],
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


def summary(found: list[tuple[float, int]]) -> str:
    seconds = [s for s, _ in found]
    rate = sum(h for _, h in found) / sum(seconds)
    return (
        f"median {1000 * statistics.median(seconds):6.0f} ms, "
        f"p95 {1000 * percentile(seconds, 95):6.0f} ms, {rate:10,.0f} hashes/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--browser-solves", type=int, default=30)
    parser.add_argument("--python-solves", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=15, help="of wrk per measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--before", type=Path, help="a checkout without the challenge")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench: needs wrk (apt-get install -y wrk)")

    browser = browser_solves(args.browser_solves, args.workers)
    script = python_solves(args.python_solves, DEFAULT_MAX_NUMBER, fast=False)
    fast = python_solves(args.python_solves, DEFAULT_MAX_NUMBER, fast=True)
    with_it = ingest(None, args)
    with without_challenge(args.before) as (checkout, name):
        without = ingest(checkout, args)

    print(f"proof of work at KOE_CHALLENGE_MAX_NUMBER={DEFAULT_MAX_NUMBER:,} (SHA-256)")
    print(f"  Chromium, widget.js ({len(browser)} answers): {summary(browser)}")
    print(f"  Python, altcha, 1 core ({len(script)} solves): {summary(script)}")
    print(f"  Python, hashlib loop, 1 core ({len(fast)} solves): {summary(fast)}")
    browser_s = statistics.median(s for s, _ in browser)
    script_s = statistics.median(s for s, _ in fast)
    print(
        f"  a script solves {browser_s / script_s:.1f}x faster than a citizen's browser:"
        f" {1 / script_s:.0f} answers/s per core at most"
    )
    print(
        f"ingest, gunicorn --workers {args.workers}, wrk -c {args.connections}"
        f" for {args.seconds}s each, PostgreSQL"
    )
    for label, r in ((f"without ({name})", without), ("with the challenge", with_it)):
        print(
            f"  {label:34} {r['accepted_per_s']:7.0f} accepted/s"
            f"  {r['cpu_ms'] + r['issue_cpu_ms']:6.2f} CPU ms per accepted"
            f" (issuing {r['issue_cpu_ms']:.2f})  refused {r['refused']}"
        )
    print(
        f"  ratio with/without: {with_it['accepted_per_s'] / without['accepted_per_s']:.2f}x"
        " accepted/s, "
        f"{(with_it['cpu_ms'] + with_it['issue_cpu_ms']) / without['cpu_ms']:.2f}x"
        " CPU ms per accepted"
    )


if __name__ == "__main__":
    main()
