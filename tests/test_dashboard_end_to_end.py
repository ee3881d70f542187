"""The dashboard on the real stack (`make run`'s processes): an answer given on a city page
shows up for the division's clerk, in the list and in the CSV, and for nobody else."""

from __future__ import annotations

import csv
import io
import re

import pytest

from koe_devkit.testing import wait_until
from koe_directory.pages import canonical_url, page_id_for_url
from support import DX_PAGE, SITE

pytestmark = pytest.mark.e2e


def test_a_clerk_sees_their_pages_answers_on_the_dashboard_and_in_the_csv(koe_factory):
    koe = koe_factory()
    gomi_url = f"{SITE}/kurashi/gomi/5678.html"
    for page_url, title in ((DX_PAGE, "津市の自治体DX取組状況"), (gomi_url, "ごみの出し方")):
        answer = koe.submit(page_url=page_url, page_title=title, answers={"clarity": "yes"})
        assert answer.status_code == 202, answer.text
    dx_id, gomi_id = (page_id_for_url(canonical_url(u)) for u in (DX_PAGE, gomi_url))
    wait_until(lambda: koe.page_n(dx_id) == 1 and koe.page_n(gomi_id) == 1, what="the stats")
    koe.create_account("clerk@somu.example", "somu-dx")
    http = koe.signed_in("clerk@somu.example")

    listing = http.get(koe.url("aggregator", "/pages"), timeout=10).text
    assert re.findall(r'<tr data-page-id="([^"]+)"', listing) == [dx_id]
    assert 'data-window="7d" data-score="100.0" data-n="1"' in listing
    assert http.get(koe.url("aggregator", f"/pages/{gomi_id}"), timeout=10).status_code == 404
    exported = http.get(koe.url("aggregator", "/export/pages.csv"), timeout=10)
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert [(r[0], r[1], r[8]) for r in rows[1:]] == [(dx_id, "津市の自治体DX取組状況", "1")] * 3
