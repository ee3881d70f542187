"""The divisions' dashboard: sign-in, pages, a page's trends, the overview, alerts.

Server-rendered HTML, no JavaScript: sorting and filtering are links and GET
forms, charts are SVG drawn by the templates. Every view starts from the pages
the account may see (visibility.py); another division's page answers 404, the
same as a page that does not exist.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.datastructures import MultiDict

from aggregator.accounts import auth
from aggregator.accounts.services import authenticate
from aggregator.accounts.visibility import divisions_for, visible_page, visible_pages, waiting_pages
from aggregator.alerts import held as held_alerts
from aggregator.alerts import records as alert_records
from aggregator.dashboard import charts, csrf, funnel_plots, page_list
from aggregator.dashboard.access import (
    SESSION_KEY,
    _,
    current_account,
    directory,
    login_required,
    protect,
    safe_next,
    settings,
    signed_in_account,
    today,
)
from aggregator.dashboard.i18n import format_score
from aggregator.dashboard.list_cells import list_cells, spark_marks
from aggregator.edits.page_view import edit_views
from aggregator.query_args import whole_number
from aggregator.stats import figures as stats
from aggregator.stats import locale_split, trends
from aggregator.stats.scoring import WINDOWS
from koe_directory import QUESTION_KEYS
from koe_directory.catalogue import LOCALES, NAMES
from koe_directory.pages import PAGE_ID
from koe_kit.web import db_session

dashboard = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static/dashboard",
)
protect(dashboard)

SORTS = ("score", "n", "title")
ALERT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PAGE_SIZE = 100
ALERTS_PER_PAGE = 50


@dashboard.get("/")
def home():
    return redirect(url_for("dashboard.pages"))


# -- signing in and out ----------------------------------------------------------------------


@dashboard.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    next_path = safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_account() is not None:
            return redirect(next_path or url_for("dashboard.pages"))
        return render_template("dashboard/sign_in.html", next=next_path, error=None, email="")
    db = db_session()
    email = request.form.get("email", "")[:254]
    password = request.form.get("password", "")[:1024]
    client = auth.client_id(current_app.config["SECRET_KEY"], request.remote_addr or "unknown")
    now = datetime.now(UTC)
    wait = auth.retry_after(db, email, client, now)
    if wait is not None:
        page = render_template(
            "dashboard/sign_in.html",
            next=next_path,
            error="sign_in.throttled",
            email=email,
            minutes=max(1, -(-wait // 60)),
        )
        return page, 429, {"Retry-After": str(wait)}
    account = authenticate(db, email, password)
    if account is None:
        auth.record_failure(db, email, client, now)
        db.commit()
        # The email stays in the form: a clerk retypes only the password.
        page = render_template(
            "dashboard/sign_in.html", next=next_path, error="sign_in.failed", email=email
        )
        return page, 401
    auth.clear_failures(db, email, client)
    token = auth.start_session(db, account, now)
    db.commit()
    # A fresh cookie session: nothing set before sign-in (by anyone) carries over.
    language = session.get("lang")
    session.clear()
    if language:
        session["lang"] = language
    session[SESSION_KEY] = token
    csrf.rotate()
    return redirect(next_path or url_for("dashboard.pages"), 303)


@dashboard.post("/sign-out")
def sign_out():
    token = session.get(SESSION_KEY)
    if token:
        db = db_session()
        auth.end_session(db, token, datetime.now(UTC))
        db.commit()
    session.pop(SESSION_KEY, None)
    csrf.rotate()
    return redirect(url_for("dashboard.sign_in"), 303)


# -- pages -----------------------------------------------------------------------------------


def _sort_key(sort: str, window: str):
    def key(row: dict):
        figures = row["windows"][window]
        if sort == "title":
            return (0, (row["title"] or row["url"]).casefold())
        value = figures["score"] if sort == "score" else figures["n"]
        return (0, value) if value is not None else (1, 0)

    return key


def _trend_label(values: list[float | None]) -> str:
    return _(
        "trend.label",
        weeks=len(values),
        values=", ".join(format_score(v) for v in values),
    )


@dashboard.get("/pages")
@login_required
def pages():
    db, account = db_session(), signed_in_account()
    choices = divisions_for(directory(), account)
    department = request.args.get("department") or None
    division = request.args.get("division") or None
    text = (request.args.get("q") or "").strip()[:200]
    sort = request.args.get("sort") if request.args.get("sort") in SORTS else "score"
    order = "desc" if request.args.get("order") == "desc" else "asc"
    window = request.args.get("window") if request.args.get("window") in WINDOWS else "28d"
    locale = request.args.get("locale") if request.args.get("locale") in LOCALES else None
    codes = {
        d.code
        for d in choices
        if (department is None or d.department == department)
        and (division is None or d.code == division)
    }
    # Pages nobody answered for a long time leave the list unless asked for (page_list.py);
    # a search looks at every page.
    quiet_days = settings().page_quiet_days
    asked_quiet = request.args.get("quiet") == "1"
    with_quiet = asked_quiet or bool(text)
    query = page_list.Query(
        codes=codes,
        text=text,
        sort=sort,
        order=order,
        window=window,
        quiet_before=None if with_quiet else datetime.now(UTC) - timedelta(days=quiet_days),
        locale=locale,
    )
    as_of = today()
    wanted = whole_number(request.args.get("p"), 1, 10**9) or 1
    if page_list.current(db, as_of):
        total = page_list.count(db, query, directory())
        # The quiet pages left out, whatever their languages (as _from_daily_rows counts).
        unsplit = dataclasses.replace(query, locale=None)
        listed = total if locale is None else page_list.count(db, unsplit, directory())
        quiet = 0 if with_quiet else page_list.count(db, everyone(unsplit), directory()) - listed
        pages_total = max(1, -(-total // PAGE_SIZE))
        number = min(wanted, pages_total)
        shown = page_list.screen(
            db,
            query,
            as_of=as_of,
            directory=directory(),
            offset=(number - 1) * PAGE_SIZE,
            limit=PAGE_SIZE,
        )
    else:
        rows, quiet = _from_daily_rows(query, as_of)
        total = len(rows)
        pages_total = max(1, -(-total // PAGE_SIZE))
        number = min(wanted, pages_total)
        shown = rows[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    shown_ids = [r["id"] for r in shown]
    scores = trends.weekly_page_scores(db, shown_ids, as_of, locale=locale)
    return render_template(
        "dashboard/pages.html",
        rows=shown,
        cells=list_cells(shown, list(WINDOWS), window),
        total=total,
        owners={row["id"]: directory().owner(row["url"]) for row in shown},
        sparklines={
            page_id: (_trend_label(values), line, *spark_marks(line))
            for page_id, values in scores.items()
            for line in [charts.sparkline(values)]
        },
        open_alerts=alert_records.open_alert_counts(db, shown_ids),
        departments=sorted({d.department for d in choices if d.department}),
        divisions=choices,
        filters={
            "department": department,
            "division": division,
            "q": text,
            "quiet": asked_quiet,
            "locale": locale,
        },
        locales=LOCALES,
        locale_names=NAMES,
        quiet=quiet,
        quiet_days=quiet_days,
        sort=sort,
        order=order,
        window=window,
        windows=list(WINDOWS),
        as_of=as_of,
        number=number,
        pages_total=pages_total,
        waiting=waiting_pages(db) if account.is_admin else None,
        min_sources=settings().page_min_sources,
    )


def everyone(query: page_list.Query) -> page_list.Query:
    """The same list with the quiet pages kept."""
    return dataclasses.replace(query, quiet_before=None)


def _from_daily_rows(query: page_list.Query, as_of: date) -> tuple[list[dict], int]:
    """The whole list, summed from the daily rows and sorted here, and how many quiet
    pages it leaves out: the slow way, for the minutes after midnight before the
    consumer has moved the rollups (rollups.py)."""
    db, account = db_session(), signed_in_account()
    visible = visible_pages(db, directory(), account)
    wanted = [page_id for page_id, owner in visible.items() if owner.code in query.codes]
    kept = wanted
    if query.quiet_before is not None:
        kept = page_list.answered_since(db, wanted, query.quiet_before)
    rows = stats.list_pages(
        db, as_of=as_of, directory=directory(), page_ids=kept, locale=query.locale
    )
    if query.text:
        needle = query.text.casefold()
        rows = [
            r
            for r in rows
            if needle in (r["title"] or "").casefold() or needle in r["url"].casefold()
        ]
    # None scores go last whichever the order: a page nobody answered is no news.
    key = _sort_key(query.sort, query.window)
    known = [r for r in rows if key(r)[0] == 0]
    unknown = [r for r in rows if key(r)[0] == 1]
    known.sort(key=key, reverse=query.order == "desc")
    return known + unknown, len(wanted) - len(kept)


@dashboard.get("/pages/<page_id>")
@login_required
def page(page_id: str):
    db, account = db_session(), signed_in_account()
    found = visible_page(db, directory(), account, page_id) if PAGE_ID.match(page_id) else None
    if found is None:
        abort(404)
    _page, owner = found
    period = request.args.get("period") if request.args.get("period") in trends.PERIODS else None
    period = period or "daily"
    as_of = today()
    detail = stats.page_detail(
        db, page_id, as_of=as_of, days=trends.series_days(period), directory=directory()
    )
    assert detail is not None
    series = trends.question_series(detail["daily"], period)
    edits = edit_views(db, page_id, as_of)
    drawn = {q: charts.series_chart(series[q]) for q in QUESTION_KEYS}
    span = 1 if period == "daily" else 7
    return render_template(
        "dashboard/page.html",
        page=detail,
        owner=owner,
        period=period,
        periods=trends.PERIODS,
        charts=drawn,
        edits=edits,
        # Every question's chart has the same days: one set of edit marks serves all.
        edit_marks=charts.marks(drawn[QUESTION_KEYS[0]], [e.day for e in edits], span),
        questions=QUESTION_KEYS,
        windows=list(WINDOWS),
        alerts=alert_records.list_alerts(db, None, page_id=page_id),
        as_of=as_of,
        # Clerks see the scores only; what was left out of them is for admins.
        excess=stats.excess_by_window(db, page_id, as_of) if account.is_admin else None,
        cap=settings().count_per_source_day,
        locales=locale_split.page_locales(db, page_id, as_of),
        locale_names=NAMES,
    )


# -- overview --------------------------------------------------------------------------------


@dashboard.get("/overview")
@login_required
def overview():
    db, account = db_session(), signed_in_account()
    window = request.args.get("window") if request.args.get("window") in WINDOWS else "28d"
    full_table = request.args.get("table") == "all"
    as_of = today()
    figures = funnel_plots.figures_for(db, directory(), account, as_of, window)
    plots = funnel_plots.plots(figures, QUESTION_KEYS, full_table=full_table)
    return render_template(
        "dashboard/overview.html",
        held=held_alerts.held_counts(db)["waiting"] if account.is_admin else None,
        plots=plots,
        window=window,
        windows=list(WINDOWS),
        questions=QUESTION_KEYS,
        as_of=as_of,
        full_table=full_table,
    )


# -- alerts ----------------------------------------------------------------------------------


def _render_alerts(
    args: MultiDict[str, str],
    note_error: dict[str, str] | None = None,
    note_kept: dict[str, str] | None = None,
    status: int = 200,
):
    """The alerts list as `args` (show, page) ask for it. Open alerts by default: the
    list is the division's work to do; handled ones are the record, one link away.
    note_error and note_kept: a refused note's reason and text, by alert id."""
    db, account = db_session(), signed_in_account()
    show = args.get("show") or "open"
    show = show if show in alert_records.STATUSES else "open"
    page_ids = None if account.is_admin else list(visible_pages(db, directory(), account))
    counts = alert_records.alert_counts(db, page_ids)
    pages_total = max(1, -(-counts[show] // ALERTS_PER_PAGE))
    number = min(whole_number(args.get("page"), 1, 10**9) or 1, pages_total)
    first = (number - 1) * ALERTS_PER_PAGE
    alerts = alert_records.list_alerts(
        db, page_ids, status=show, offset=first, limit=ALERTS_PER_PAGE
    )
    page = render_template(
        "dashboard/alerts.html",
        alerts=alerts,
        show=show,
        shows=alert_records.STATUSES,
        counts=counts,
        first=first + 1,
        last=first + len(alerts),
        number=number,
        pages_total=pages_total,
        note_error=note_error or {},
        note_kept=note_kept or {},
        max_note=alert_records.MAX_NOTE_LENGTH,
        # An admin's list spans every division: each alert says whose page it is.
        owners={a.alert_id: directory().owner(a.page_url) for a in alerts}
        if account.is_admin
        else {},
    )
    return page, status


@dashboard.get("/alerts")
@login_required
def alerts():
    return _render_alerts(request.args)


@dashboard.post("/alerts/<alert_id>/handled")
@login_required
def alert_handled(alert_id: str):
    db, account = db_session(), signed_in_account()
    # The id as given, checked and recorded alike: a record can only be for an alert
    # the account may see.
    page_id = alert_records.alert_page(db, alert_id) if ALERT_ID.fullmatch(alert_id) else None
    if page_id is None or visible_page(db, directory(), account, page_id) is None:
        abort(404)
    note = request.form.get("note", "").strip()
    next_path = safe_next(request.form.get("next"))
    if len(note) > alert_records.MAX_NOTE_LENGTH:
        # The list the form was on (its filter and page), with the reason beside the form.
        target = urlsplit(next_path or "")
        on_list = target.path == url_for("dashboard.alerts")
        shown = MultiDict(parse_qsl(target.query) if on_list else [])
        return _render_alerts(shown, {alert_id: "alerts.note_too_long"}, {alert_id: note}, 422)
    alert_records.mark_handled(db, alert_id, by=account.email, note=note)
    db.commit()
    # The alert leaves the open list it was on: say what happened to it, and where it went.
    flash("alerts.done")
    return redirect(next_path or url_for("dashboard.alerts"), 303)


# -- alerts held for review (admins only) ----------------------------------------------------

HELD_PER_PAGE = 50
# What the admin did, in the words of the confirmation shown after it.
_DECISIONS = {"release": "released", "dismiss": "dismissed"}


def _admin():
    """The signed-in admin; anyone else gets the 404 of a page that does not exist, as
    for another division's page: held alerts are every division's, and unreviewed."""
    account = signed_in_account()
    if not account.is_admin:
        abort(404)
    return account


@dashboard.get("/held")
@login_required
def held():
    _admin()
    db = db_session()
    show = request.args.get("show") if request.args.get("show") in held_alerts.STATES else None
    show = show or "waiting"
    counts = held_alerts.held_counts(db)
    pages_total = max(1, -(-counts[show] // HELD_PER_PAGE))
    number = min(whole_number(request.args.get("page"), 1, 10**9) or 1, pages_total)
    return render_template(
        "dashboard/held.html",
        held=held_alerts.list_held(
            db, show, offset=(number - 1) * HELD_PER_PAGE, limit=HELD_PER_PAGE
        ),
        show=show,
        shows=held_alerts.STATES,
        counts=counts,
        number=number,
        pages_total=pages_total,
    )


@dashboard.get("/held/<alert_id>")
@login_required
def held_alert(alert_id: str):
    _admin()
    found = held_alerts.get_held(db_session(), alert_id) if ALERT_ID.fullmatch(alert_id) else None
    if found is None:
        abort(404)
    # The confirmation of what was just done, only if it is what the record says.
    done = request.args.get("done")
    if done not in (found.state, "already"):
        done = None
    return render_template("dashboard/held_alert.html", held=found, done=done)


@dashboard.post("/held/<alert_id>/release")
@login_required
def held_release(alert_id: str):
    return _decide_held(alert_id, "release")


@dashboard.post("/held/<alert_id>/dismiss")
@login_required
def held_dismiss(alert_id: str):
    return _decide_held(alert_id, "dismiss")


def _decide_held(alert_id: str, action: str):
    account = _admin()
    db = db_session()
    if not ALERT_ID.fullmatch(alert_id) or held_alerts.get_held(db, alert_id) is None:
        abort(404)
    decide = held_alerts.release if action == "release" else held_alerts.dismiss
    decided = decide(db, alert_id, by=account.email, now=datetime.now(UTC))
    db.commit()
    # The consumer's outbox publisher sends a released alert within seconds (outbox.py).
    done = _DECISIONS[action] if decided else "already"
    return redirect(url_for("dashboard.held_alert", alert_id=alert_id, done=done), 303)
