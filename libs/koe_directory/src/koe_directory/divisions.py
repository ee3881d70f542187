"""divisions.yaml: each division's code, name, addresses, phone and the URL
prefixes of the pages it owns, plus a fallback for pages nobody owns."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from pathlib import Path

import yaml

from koe_directory.pages import canonical_url

CODE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DELIVERIES = ("immediate", "daily")
FALLBACK = "fallback"  # the fallback division's code


class DirectoryError(ValueError):
    """divisions.yaml is missing or malformed; the message says where."""


@dataclass(frozen=True)
class Division:
    code: str
    name: str
    department: str
    emails: tuple[str, ...]
    phone: str = ""
    fax: str = ""
    url_prefixes: tuple[str, ...] = ()
    # "immediate": an email per alert; "daily": one digest a day at digest_hour
    # (0-23, city time) listing every alert since the last one.
    delivery: str = "immediate"
    digest_hour: int = 8

    @property
    def is_fallback(self) -> bool:
        """Whether this is the fallback: it gets the pages no division's prefix covers."""
        return self.code == FALLBACK


@dataclass(frozen=True)
class Directory:
    divisions: dict[str, Division]
    fallback: Division

    def knows(self, code: str) -> bool:
        return code in self.divisions

    def owner(self, page_url: str) -> Division:
        """The division a page's alerts go to: the longest URL prefix of divisions.yaml,
        else the fallback.

        Only the city decides: a division code a snippet names arrives in a public POST,
        and one person must not be able to move a page (its history, its alerts and
        who may mark them handled) to another division by naming one (issue 11).
        """
        return self.prefix_owner(page_url) or self.fallback

    def prefix_code(self, page_url: str) -> str | None:
        """The code of the division whose URL prefix covers the page; None for the
        fallback's pages (what koe's events and stats API call a page's division)."""
        owner = self.prefix_owner(page_url)
        return owner.code if owner is not None else None

    def prefix_owner(self, page_url: str) -> Division | None:
        """The division whose longest URL prefix covers the page, if any."""
        try:
            url = canonical_url(page_url)
        except ValueError:
            return None
        best: tuple[int, Division] | None = None
        for division in self.divisions.values():
            for prefix in division.url_prefixes:
                if url.startswith(prefix) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), division)
        return best[1] if best else None


def load_directory(path: str | Path) -> Directory:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DirectoryError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise DirectoryError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("divisions"), list):
        raise DirectoryError(f"{path}: needs a 'divisions' list and a 'fallback'")
    divisions: dict[str, Division] = {}
    for index, entry in enumerate(raw["divisions"]):
        division = _division(entry, f"{path}: divisions[{index}]")
        if division.code == FALLBACK:
            # Its pages would read as unowned in every mail and on the dashboard.
            raise DirectoryError(f"{path}: divisions[{index}].code {FALLBACK!r} is the fallback's")
        if division.code in divisions:
            raise DirectoryError(f"{path}: divisions[{index}].code {division.code!r} repeats")
        divisions[division.code] = division
    if "fallback" not in raw:
        raise DirectoryError(f"{path}: fallback is required (where unowned pages' alerts go)")
    fallback = _division({"code": FALLBACK, **raw["fallback"]}, f"{path}: fallback")
    return Directory(divisions, fallback)


def _division(entry: object, where: str) -> Division:
    if not isinstance(entry, dict):
        raise DirectoryError(f"{where}: must be a mapping")
    code = str(entry.get("code", ""))
    if not CODE.match(code):
        raise DirectoryError(f"{where}.code: letters, digits, '-' or '_', 1-64 characters")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise DirectoryError(f"{where}.name: required")
    emails = entry.get("emails")
    if not isinstance(emails, list) or not emails:
        raise DirectoryError(f"{where}.emails: at least one address")
    for email in emails:
        _check_email(str(email), f"{where}.emails")
    prefixes = []
    for prefix in entry.get("url_prefixes", []) or []:
        try:
            prefixes.append(canonical_url(str(prefix)))
        except ValueError as exc:
            raise DirectoryError(f"{where}.url_prefixes: {prefix!r} {exc}") from None
    delivery = entry.get("delivery", "immediate")
    if delivery not in DELIVERIES:
        raise DirectoryError(f"{where}.delivery: one of {', '.join(DELIVERIES)}")
    digest_hour = entry.get("digest_hour", 8)
    if (
        isinstance(digest_hour, bool)
        or not isinstance(digest_hour, int)
        or not 0 <= digest_hour < 24
    ):
        raise DirectoryError(f"{where}.digest_hour: an hour from 0 to 23 (city time)")
    return Division(
        code=code,
        name=name.strip(),
        department=str(entry.get("department", "")).strip(),
        emails=tuple(str(e) for e in emails),
        phone=str(entry.get("phone", "")).strip(),
        fax=str(entry.get("fax", "")).strip(),
        url_prefixes=tuple(prefixes),
        delivery=delivery,
        digest_hour=digest_hour,
    )


def _check_email(email: str, where: str) -> None:
    try:
        address = Address(addr_spec=email)
    except (HeaderParseError, ValueError, IndexError):
        address = None
    if address is None or not address.domain or "\n" in email or "\r" in email:
        raise DirectoryError(f"{where}: {email!r} is not an email address")
