"""Who owns a page: the city's URL prefixes first, a snippet's code only where none covers it."""

from __future__ import annotations

from pathlib import Path

from koe_directory import load_directory

DIRECTORY = load_directory(Path(__file__).resolve().parents[3] / "divisions.yaml")
SITE = "https://www.info.city.tsu.mie.jp"


def test_the_longest_url_prefix_owns_a_page_whatever_code_an_event_claims():
    dx_page = f"{SITE}/shisei/dx/1234.html"
    assert DIRECTORY.owner(dx_page).code == "somu-dx"
    # An event from before the feedback API refused such claims cannot move it either.
    assert DIRECTORY.owner(dx_page, "kankyo-gomi").code == "somu-dx"
    assert DIRECTORY.prefix_owner(f"{SITE}/kurashi/gomi/a.html").code == "kankyo-gomi"


def test_a_code_decides_pages_no_prefix_covers_and_the_fallback_the_rest():
    uncovered = f"{SITE}/kanko/event.html"
    assert DIRECTORY.prefix_owner(uncovered) is None
    assert DIRECTORY.owner(uncovered, "kankyo-gomi").code == "kankyo-gomi"
    assert DIRECTORY.owner(uncovered) is DIRECTORY.fallback
    assert DIRECTORY.owner(uncovered, "no-such-division") is DIRECTORY.fallback
    assert DIRECTORY.owner("not a url", "somu-dx").code == "somu-dx"
