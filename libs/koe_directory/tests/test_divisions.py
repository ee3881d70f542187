"""Who owns a page: the city's URL prefixes, else the fallback; never a code a client names."""

from __future__ import annotations

from pathlib import Path

from koe_directory import load_directory

DIRECTORY = load_directory(Path(__file__).resolve().parents[3] / "divisions.yaml")
SITE = "https://www.info.city.tsu.mie.jp"


def test_the_longest_url_prefix_owns_a_page():
    assert DIRECTORY.owner(f"{SITE}/shisei/dx/1234.html").code == "somu-dx"
    assert DIRECTORY.prefix_owner(f"{SITE}/kurashi/gomi/a.html").code == "kankyo-gomi"


def test_pages_no_prefix_covers_go_to_the_fallback():
    uncovered = f"{SITE}/kanko/event.html"
    assert DIRECTORY.prefix_owner(uncovered) is None
    assert DIRECTORY.owner(uncovered) is DIRECTORY.fallback
    assert DIRECTORY.owner("not a url") is DIRECTORY.fallback
