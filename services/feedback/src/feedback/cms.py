"""The city CMS's side of page ids: `python -m feedback.cms sign --page-id X --url U`
prints what a page's snippet carries so that koe believes its CMS id (pages.py).

KOE_CMS_KEY comes from the environment only, never from the command line (which
other users of the machine can read in the process list). A CMS computes the same
in its templates (README, "Embedding the survey", shows Python, PHP and Ruby).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from html import escape

from feedback.config import load_cms_sign_settings
from feedback.pages import page_sig
from koe_directory import canonical_url
from koe_directory.pages import PAGE_ID
from koe_kit.config import ConfigError


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feedback.cms")
    commands = parser.add_subparsers(dest="command", required=True)
    sign = commands.add_parser(
        "sign", help="print a page's signed id as snippet attributes (KOE_CMS_KEY from the env)"
    )
    sign.add_argument("--page-id", required=True, help="the CMS's id of the page")
    sign.add_argument("--url", required=True, help="the page's URL")
    args = parser.parse_args(argv)
    try:
        key = load_cms_sign_settings(env).cms_key
    except ConfigError as exc:
        print(f"koe: {exc}", file=sys.stderr)
        return 2
    if not PAGE_ID.match(args.page_id):
        print(f"--page-id {args.page_id!r} is not a page id ({PAGE_ID.pattern})", file=sys.stderr)
        return 2
    try:
        url = canonical_url(args.url)
    except ValueError as exc:
        print(f"--url {args.url!r}: {exc}", file=sys.stderr)
        return 2
    sig = page_sig(key, args.page_id, url)
    page_id = escape(args.page_id)
    print(f'data-koe-page-id="{page_id}" data-koe-page-sig="{sig}"')
    print(f'<input type="hidden" name="page_id" value="{page_id}">')
    print(f'<input type="hidden" name="page_sig" value="{sig}">')
    return 0


if __name__ == "__main__":
    sys.exit(main())
