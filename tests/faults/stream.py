"""Citizens answering surveys in a thread while a fault test breaks something, and the
check that every accepted response was counted exactly once in the end."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

import requests

from koe_devkit.testing import wait_until
from koe_directory import canonical_url
from support import SITE, Koe, Solving

# Enough pages (the topic's key) that every partition of the feedback topic, and so
# every member of a consumer group, gets some.
PAGES = [canonical_url(f"{SITE}/kurashi/gomi/{n}.html") for n in range(12)]
ANSWERS = ["yes", "neutral", "no"]
# Longer than the API should ever make a citizen wait, even with its database gone:
# a request that takes this long is recorded as a hang.
REQUEST_TIMEOUT_S = 10


class Citizens:
    """Post responses one after another from a thread until `stop()`, keeping what the
    API answered: 202s per page (and the answers in them), every status, every hang."""

    def __init__(self, koe: Koe, pause_s: float = 0.0):
        self.koe = koe
        self.pause_s = pause_s
        self.accepted: Counter[str] = Counter()  # page url -> responses answered 202
        self.answered: Counter[str] = Counter()  # page url -> answers in those
        self.ids: list[str] = []  # the ids the API gave the 202s
        self.statuses: Counter[int] = Counter()
        self.answers: list[requests.Response] = []  # every non-202, to look into
        self.hangs = 0  # requests that got no answer within REQUEST_TIMEOUT_S
        self.broken = 0  # requests whose connection broke before an answer
        # Its own (a Session is not shared across threads); solves a challenge per answer.
        self.http = Solving()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    def start(self) -> Citizens:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(REQUEST_TIMEOUT_S * 2)
        assert not self._thread.is_alive(), "the citizens' thread is stuck"

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.accepted.values())

    def statuses_now(self) -> Counter[int]:
        with self._lock:
            return Counter(self.statuses)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            page = PAGES[i % len(PAGES)]
            answers = {"clarity": ANSWERS[i % 3]}
            if i % 2:
                answers["usefulness"] = ANSWERS[(i + 1) % 3]
            i += 1
            try:
                response = self.http.post(
                    self.koe.url("feedback", "/api/v1/feedback"),
                    json={"page_url": page, "answers": answers, "locale": "ja"},
                    timeout=REQUEST_TIMEOUT_S,
                )
            except requests.Timeout:
                self.hangs += 1
                continue
            except requests.ConnectionError:
                self.broken += 1  # e.g. gunicorn killed a worker stuck in the request
                continue
            with self._lock:
                self.statuses[response.status_code] += 1
                if response.status_code == 202:
                    self.accepted[page] += 1
                    self.answered[page] += len(answers)
                    self.ids.append(response.json()["id"])
                else:
                    self.answers.append(response)
            self._stop.wait(self.pause_s)


def wait_until_ready(koe: Koe) -> None:
    """Until the feedback and stats apps answer: on a busy machine a gunicorn worker may
    take many seconds to import its app, and a first request waits for that."""

    def ready(service: str) -> bool:
        try:
            return koe.http.get(koe.url(service, "/readyz"), timeout=2).status_code == 200
        except requests.RequestException:
            return False

    for service in ("feedback", "aggregator"):
        wait_until(lambda service=service: ready(service), what=f"{service} to be ready")


def all_time(koe: Koe) -> dict[str, dict]:
    """Each page's all-time figures in the stats API, by page url, following its cursor."""
    figures: dict[str, dict] = {}
    path: str | None = "/api/v1/pages?limit=1000"
    while path is not None:
        response = koe.stats(path)
        response.raise_for_status()
        body = response.json()
        figures |= {page["url"]: page["windows"]["all"] for page in body["pages"]}
        path = f"/api/v1/pages?limit=1000&cursor={body['next']}" if body["next"] else None
    return figures


def counted(koe: Koe) -> int:
    """Responses the stats API counts over every page."""
    return sum(window["n"] for window in all_time(koe).values())


def wait_until_counted(koe: Koe, citizens: Citizens, timeout_s: float = 60) -> None:
    wait_until(
        lambda: counted(koe) >= citizens.total,
        timeout_s=timeout_s,
        what=f"{citizens.total} responses counted",
    )


@dataclass
class Tally:
    lost: int  # responses answered 202 that the stats do not count
    doubled: int  # responses the stats count more than once
    wrong: list[str]  # every count that differs, page by page and question by question


def tally(
    koe: Koe,
    citizens: Citizens,
    stored: tuple[Counter[str], Counter[str]] | None = None,
) -> Tally:
    """The stats API against the 202s (or against `stored`, the responses and answers
    per page the feedback DB holds): per page n, per question n and answers in all."""
    accepted, answered = stored or (citizens.accepted, citizens.answered)
    result = Tally(0, 0, [])
    windows = all_time(koe)
    for url in sorted(set(windows) | set(accepted)):
        window = windows.get(url, {"n": 0, "questions": {}})
        questions = window["questions"]
        checks = {
            "n": (window["n"], accepted[url]),
            "clarity n": (questions.get("clarity", {}).get("n", 0), accepted[url]),
            "answers": (sum(q["n"] for q in questions.values()), answered[url]),
        }
        for what, (have, want) in checks.items():
            if have != want:
                result.wrong.append(f"{url} {what}: counted {have}, accepted {want}")
        result.lost += max(0, accepted[url] - window["n"])
        result.doubled += max(0, window["n"] - accepted[url])
    return result


def counted_once(koe: Koe, citizens: Citizens) -> Tally:
    """After a fault the API rode out without refusing anyone: every answer was a 202,
    none hung or broke, and the stats come to count each accepted response exactly once,
    per page and question. The tally, for the figures."""
    assert set(citizens.statuses) == {202}, f"the API answered {citizens.statuses}"
    assert citizens.hangs == citizens.broken == 0
    wait_until_counted(koe, citizens)
    result = tally(koe, citizens)
    assert result.wrong == []
    return result
