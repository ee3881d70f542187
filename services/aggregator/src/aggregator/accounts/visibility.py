"""Which pages a dashboard account may see: its division's, or all for an admin.

A page belongs to the division the notifier would email about it (the longest
URL prefix in divisions.yaml, else the fallback; never a code a client named),
so a clerk sees exactly the pages whose alerts reach them. Every dashboard
query starts from `visible_pages`; nothing about another division's page
leaves the database for the page being built. Nobody sees a page that is not
shown yet (too few sources answered it and the city's page list does not name
it, pages/registry.py): admins see how many are waiting.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, case, func, literal, select
from sqlalchemy.orm import Session

from aggregator.accounts.models import Account
from aggregator.pages.models import Page
from koe_directory import Directory, Division


def may_see(account: Account, division: Division) -> bool:
    return account.is_admin or account.division == division.code


def visible_pages(session: Session, directory: Directory, account: Account) -> dict[str, Division]:
    """page id → owning division, for every page the account may see."""
    rows = session.execute(select(Page.id, Page.url).where(Page.visible))
    visible = {}
    for page_id, url in rows:
        division = directory.owner(url)
        if may_see(account, division):
            visible[page_id] = division
    return visible


def visible_page(
    session: Session, directory: Directory, account: Account, page_id: str
) -> tuple[Page, Division] | None:
    """The page and its division, or None when it does not exist or is not the account's:
    the two look the same to the user, so a clerk cannot probe other divisions' pages."""
    page = session.get(Page, page_id)
    if page is None or not page.visible:
        return None
    division = directory.owner(page.url)
    return (page, division) if may_see(account, division) else None


def waiting_pages(session: Session) -> int:
    """How many pages are not shown yet: answered by too few sources, and not listed."""
    return session.scalar(select(func.count()).select_from(Page).where(~Page.visible)) or 0


def divisions_for(directory: Directory, account: Account) -> list[Division]:
    """The divisions the account may filter by (its own, or all and the fallback)."""
    every = [*directory.divisions.values(), directory.fallback]
    return [d for d in every if may_see(account, d)]


def owner_code(directory: Directory) -> ColumnElement[str]:
    """`directory.owner(pages.url).code` in SQL: the longest matching prefix's division,
    else the fallback's, so a list filters by division without reading every page."""
    prefixes = sorted(
        (
            (prefix, division.code)
            for division in directory.divisions.values()
            for prefix in division.url_prefixes
        ),
        key=lambda pair: len(pair[0]),
        reverse=True,
    )
    if not prefixes:
        return literal(directory.fallback.code)
    return case(
        *((Page.url.startswith(prefix, autoescape=True), code) for prefix, code in prefixes),
        else_=literal(directory.fallback.code),
    )
