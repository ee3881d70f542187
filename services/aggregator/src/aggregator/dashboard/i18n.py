"""The dashboard's words in Japanese (first) and English, and how numbers and dates read.

One table, looked up by key: a missing English entry falls back to Japanese,
and a missing key fails loudly in tests instead of showing a raw key to a clerk.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from koe_directory import QUESTIONS

LANGUAGES = ("ja", "en")
DEFAULT_LANGUAGE = "ja"

MESSAGES: dict[str, tuple[str, str]] = {
    # key: (ja, en)
    "app": ("koe ページ満足度", "koe page satisfaction"),
    "skip": ("本文へ移動", "Skip to content"),
    "nav": ("メインメニュー", "Main menu"),
    "nav.pages": ("ページ一覧", "Pages"),
    "nav.overview": ("全体図", "Overview"),
    "nav.alerts": ("アラート", "Alerts"),
    "signed_in_as": ("ログイン中", "Signed in as"),
    "sign_in": ("ログイン", "Sign in"),
    "sign_out": ("ログアウト", "Sign out"),
    "language": ("言語", "Language"),
    "email": ("メールアドレス", "Email"),
    "password": ("パスワード", "Password"),
    "sign_in.failed": (
        "メールアドレスまたはパスワードが違います。",
        "The email or the password is wrong.",
    ),
    "sign_in.throttled": (
        "ログインの失敗が続いたため、しばらく受け付けません。{minutes}分後にもう一度お試しください。",
        "Too many failed sign-ins. Please try again in {minutes} minutes.",
    ),
    "scope.admin": ("すべての課", "All divisions"),
    "window.7d": ("7日間", "7 days"),
    "window.28d": ("28日間", "28 days"),
    "window.all": ("全期間", "All time"),
    # The survey's questions by their short labels (koe_directory.survey).
    **{f"question.{q.key}": (q.short_ja, q.short_en) for q in QUESTIONS},
    "score": ("満足度", "Score"),
    "n": ("回答数", "Responses"),
    "n.short": ("n", "n"),
    "no_answers": ("回答なし", "no answers"),
    "page": ("ページ", "Page"),
    "url": ("URL", "URL"),
    "department": ("部", "Department"),
    "division": ("課", "Division"),
    "all": ("すべて", "All"),
    "search": ("キーワード", "Keyword"),
    "filter": ("絞り込む", "Filter"),
    "sort": ("並べ替え", "Sort by"),
    "sort.score": ("満足度", "Score"),
    "sort.n": ("回答数", "Responses"),
    "sort.title": ("タイトル", "Title"),
    "order.asc": ("昇順", "ascending"),
    "order.desc": ("降順", "descending"),
    "sort_window": ("並べ替えの期間", "Window to sort by"),
    "trend": ("推移", "Trend"),
    "trend.label": (
        "過去{weeks}週の週ごとの満足度: {values}",
        "Weekly score over the last {weeks} weeks: {values}",
    ),
    "alert": ("アラート", "Alerts"),
    "alert.open_count": ("未対応のアラート {count}件", "{count} open alerts"),
    "alert.open_count.one": ("未対応のアラート {count}件", "{count} open alert"),
    "pages.title": ("ページ一覧", "Pages"),
    "pages.count": ("{count}ページ", "{count} pages"),
    "pages.count.one": ("{count}ページ", "{count} page"),
    "pages.none": ("表示できるページはありません。", "No pages to show."),
    "pages.quiet": (
        "このほか{count}ページは、{days}日以上回答がないため一覧に表示していません"
        "(検索すると表示されます)。",
        "{count} more pages are not listed: nobody has answered them for {days} days "
        "or more (a search finds them).",
    ),
    "pages.quiet.one": (
        "このほか{count}ページは、{days}日以上回答がないため一覧に表示していません"
        "(検索すると表示されます)。",
        "{count} more page is not listed: nobody has answered it for {days} days "
        "or more (a search finds it).",
    ),
    "pages.quiet_show": ("これらも表示する", "Show them too"),
    "pages.quiet_filter": (
        "{days}日以上回答がないページも表示",
        "Also pages with no answers for {days} days",
    ),
    "pages.waiting": (
        "このほか{count}ページは、回答した送信元が{sources}より少なく、市のページ一覧にも"
        "ないため、まだ表示していません (管理者にのみ表示)。",
        "{count} more pages are not shown yet: fewer than {sources} sources answered them "
        "and the city's page list does not name them (shown to admins only).",
    ),
    "untitled": ("(タイトルなし)", "(untitled)"),
    "csv.pages": ("CSVでダウンロード (Excel用)", "Download CSV (for Excel)"),
    "csv.sjis": ("Shift_JIS版", "Shift_JIS version"),
    "csv.daily": ("日ごとの数値をCSVでダウンロード", "Download the daily figures as CSV"),
    "as_of": ("{date}時点", "as of {date}"),
    "detail.windows": ("期間ごとの満足度", "Score by window"),
    "detail.chart": ("質問ごとの推移", "Trend per question"),
    "detail.period": ("表示単位", "Period"),
    "period.daily": ("日ごと (28日間)", "Daily (28 days)"),
    "period.weekly": ("週ごと (12週間)", "Weekly (12 weeks)"),
    "chart.desc": (
        "点は満足度、縦線は95%信頼区間 (Wilson)、下の数字は回答数です。",
        "Dots are scores, vertical lines the 95% Wilson interval, "
        "the numbers below the response counts.",
    ),
    "chart.table": ("グラフの数値", "Chart data"),
    "interval": ("95%信頼区間", "95% interval"),
    "day": ("日付", "Day"),
    "week_of": ("週 (開始日)", "Week (starting)"),
    "detail.alerts": ("このページのアラート", "Alerts for this page"),
    "excess.title": ("集計に含めていない回答 (管理者のみ)", "Responses not counted (admins only)"),
    "excess.explain": (
        "同じ日に同じ送信元 (1つのIPアドレス) から、このページへ{cap}件を超えて届いた回答です。"
        "一人で満足度を動かせないよう、満足度・回答数・CSV・アラートには含めていません。"
        "職場や携帯電話の回線を大勢で共有している場合は、別々の人の回答が含まれることもあります。",
        "Responses to this page beyond {cap} from the same source (one IP address) on one "
        "day. So that one person cannot move the numbers, they are left out of scores, "
        "response counts, CSV files and alerts. Where many people share one connection "
        "(an office, a mobile carrier), they may include answers of different people.",
    ),
    "excess.n": ("回答数", "Responses"),
    "locales.title": ("回答した言語別", "By the language of the answers"),
    "locales.explain": (
        "アンケートをどの言語で表示して回答されたかの内訳です。外国籍の方やこどもにも伝わるページかを確かめられます。",
        "The answers by the language the survey was shown in: is the page clear to every resident?",
    ),
    "locales.locale": ("言語", "Language"),
    "locales.filter": ("回答した言語", "Language answered in"),
    "locales.every": ("すべての言語", "Every language"),
    "locales.shown": (
        "{language}で表示したアンケートへの回答だけの数値と推移です。",
        "Figures and trends of the answers given in {language} only.",
    ),
    "csv.locales": ("言語別のCSV", "CSV split by language"),
    "csv.locale": ("言語", "language"),
    "alerts.none": ("アラートはありません。", "No alerts."),
    "alerts.title": ("アラート", "Alerts"),
    "alerts.raised": ("発生", "Raised"),
    "alerts.kind": ("種類", "Kind"),
    "alerts.what": ("内容", "What happened"),
    "alerts.status": ("対応", "Handling"),
    "alerts.open": ("未対応", "Open"),
    "alerts.handled_by": ("対応済み ({who}、{when})", "Handled ({who}, {when})"),
    "alerts.note": ("対応内容のメモ", "Note on what was done"),
    "alerts.mark": ("対応済みにする", "Mark as handled"),
    "alerts.note_too_long": (
        "メモは{limit}文字以内にしてください。",
        "The note can have at most {limit} characters.",
    ),
    "alerts.done": (
        "アラートを対応済みにしました。「対応済み」の一覧で確認できます。",
        "The alert is marked as handled. It is now listed under Handled.",
    ),
    "alerts.show": ("表示するアラート", "Alerts to show"),
    "alerts.show.open": ("未対応", "Open"),
    "alerts.show.handled": ("対応済み", "Handled"),
    "alerts.show.all": ("すべて", "All"),
    "alerts.show.count": ("{label} ({count}件)", "{label} ({count})"),
    "alerts.range": ("{total}件中 {first}〜{last}件目", "{first}–{last} of {total}"),
    "pager": ("ページ送り", "Pages of the list"),
    "pager.first": ("最初のページ", "First page"),
    "pager.prev": ("前のページ", "Previous page"),
    "pager.next": ("次のページ", "Next page"),
    "pager.last": ("最後のページ", "Last page"),
    "pager.position": ("{number} / {total}ページ", "Page {number} of {total}"),
    "kind.drop": ("低下", "Drop"),
    "kind.recovery": ("回復", "Recovery"),
    "alerts.change": (
        "{question}: {before} (n={n_before}) → {after} (n={n_after})",
        "{question}: {before} (n={n_before}) → {after} (n={n_after})",
    ),
    "alerts.chart": (
        "(判定: 直近の日ほど重い加重スコア {weighted}、実効 {effective_n} 件。"
        "基準から {limit} ポイント以上の低下で通知)",
        "(judged on: the recent days' weighted score {weighted}, effective n {effective_n}; "
        "a drop of {limit} points or more below the reference alerts)",
    ),
    "alerts.windows": (
        "比較: {baseline_start}〜{baseline_end} と {recent_start}〜{recent_end}",
        "Compared: {baseline_start}–{baseline_end} with {recent_start}–{recent_end}",
    ),
    "overview.title": ("全体図 (ファンネルプロット)", "Overview (funnel plot)"),
    "overview.intro": (
        "各点が1ページです。横軸は回答数、縦軸は満足度。"
        "線の外にあるページは、回答数を考えても全体の平均と明らかに違います。"
        "線の内側なら、違いは回答が少ないことによるばらつきの範囲です。",
        "Each dot is a page: responses across, score up. A page outside the lines differs "
        "from the overall mean by more than its number of answers explains; inside, the "
        "difference is within the chance variation of a small sample.",
    ),
    "overview.window": ("期間", "Window"),
    "overview.mean": ("平均 {mean}", "mean {mean}"),
    "overview.limits95": ("95%管理限界", "95% control limits"),
    "overview.limits998": ("99.8%管理限界", "99.8% control limits"),
    "overview.status": ("判定", "Verdict"),
    "status.low3": ("明らかに低い (99.8%の線より下)", "Clearly low (below 99.8% limit)"),
    "status.low2": ("低め (95%の線より下)", "Low (below 95% limit)"),
    "status.within": ("ばらつきの範囲", "Within chance variation"),
    "status.high2": ("高め (95%の線より上)", "High (above 95% limit)"),
    "status.high3": ("明らかに高い (99.8%の線より上)", "Clearly high (above 99.8% limit)"),
    "overview.dense": (
        "外れたページ {shown} 件を点で、ほかの {dense} 件を濃淡で示しています。",
        "{shown} pages outside the limits are drawn as dots, the other {dense} as shading.",
    ),
    "overview.cell": ("このあたりに {count} ページ", "{count} pages here"),
    "overview.full_table": ("全ページの表", "Table of every page"),
    "overview.nodata": ("この期間の回答はありません。", "No answers in this window."),
    "nav.held": ("確認待ちのアラート", "Alerts held for review"),
    "held.title": ("確認待ちのアラート", "Alerts held for review"),
    "held.intro": (
        "回答した送信元が少ない、1つの送信元に偏っている、または1日に集中している回答だけで"
        "出たアラートは、課へメールせずにここで止めています。内容を確かめ、本当の変化と"
        "判断したら「送信する」、1人の操作や一時的な集中によるものなら「破棄する」を"
        "押してください。",
        "Alerts whose evidence came from too few sources, mostly from one source, or mostly "
        "on one day are not emailed to the division but held here. Check each one: press "
        "Send if the change looks real, Dismiss if it looks like one person's doing or a "
        "passing burst.",
    ),
    "held.source_note": (
        "送信元とは、1日の間の1つのIPアドレスのことです (アドレスそのものは保存していません)。",
        "A source is one network address on one day (koe never keeps the address itself).",
    ),
    "held.show": ("表示する一覧", "Show"),
    "held.show.waiting": ("確認待ち", "Waiting"),
    "held.show.released": ("送信済み", "Sent"),
    "held.show.dismissed": ("破棄済み", "Dismissed"),
    "held.none": ("該当するアラートはありません。", "No alerts here."),
    "held.reason.few_sources": ("回答した送信元が少なすぎます", "Too few sources"),
    "held.reason.one_source": ("1つの送信元に偏っています", "Mostly one source"),
    "held.reason.burst": ("1日に集中しています", "A burst on one day"),
    "held.reason.one_source_decides": (
        "1つの送信元の回答で低下と判定されています",
        "One source decides the drop",
    ),
    "held.explain.few_sources": (
        "この期間に回答した送信元は{sources}件で、必要な{min}件に足りません。"
        "少数の人 (あるいは1人) の回答だけで満足度が動いた可能性があります。",
        "Only {sources} sources answered in this window, fewer than the {min} needed: a few "
        "people, or one, may have moved the score.",
    ),
    "held.explain.one_source": (
        "1つの送信元からの回答が、この期間の回答の{share}を占めています (上限は{limit})。"
        "1人の回答で満足度が動いた可能性があります。",
        "One source sent {share} of this window's answers (the limit is {limit}): one person "
        "may have moved the score.",
    ),
    "held.explain.one_source_decides": (
        "最も多く回答した1つの送信元 (この期間の回答の{share}) の回答を除くと、"
        "満足度の低下は通知の基準に届きません。1人の回答で低下と判定された可能性があります。",
        "Without the answers of its largest source ({share} of this window's answers) the "
        "drop does not reach the level that sends an email: one person may have decided it.",
    ),
    "held.explain.burst": (
        "{day}の1日に、この期間の回答の{share}が集中しています (上限は{limit})。"
        "リンクの拡散や自動送信など、一時的な集中の可能性があります。",
        "{share} of this window's answers came on one day, {day} (the limit is {limit}): a "
        "link shared somewhere, or a script, may be behind it.",
    ),
    "held.window": ("判定した期間", "Window judged"),
    "held.window.value": ("{start}〜{end}", "{start}–{end}"),
    "held.n": ("集計した回答数", "Responses counted"),
    "held.sources": ("送信元の数", "Sources"),
    "held.largest": ("最も多い送信元の割合", "Largest source's share"),
    "held.busiest": ("最も多い日の割合", "Busiest day's share"),
    "held.busiest.value": ("{share} ({day})", "{share} ({day})"),
    "held.figures": ("判定に使った数値", "The figures judged"),
    "held.per_day": ("日ごとの回答", "Responses per day"),
    "held.alert": ("アラートの内容", "The alert"),
    "held.release": ("送信する", "Send"),
    "held.dismiss": ("破棄する", "Dismiss"),
    "held.release.help": ("課へメールで知らせます (1回だけ)。", "Emails the division, once."),
    "held.dismiss.help": ("メールせず、記録だけを残します。", "Keeps the record; emails nobody."),
    "held.done.released": (
        "送信しました。数秒のうちに課へメールが送られます。",
        "Sent: the division will be emailed within seconds.",
    ),
    "held.done.dismissed": (
        "破棄しました。このアラートはメールされません。",
        "Dismissed: this alert will not be emailed.",
    ),
    "held.done.already": (
        "このアラートはすでに判断されています。",
        "This alert was already decided.",
    ),
    "held.state.waiting": ("確認待ち", "Waiting for review"),
    "held.state.released": ("送信済み ({who}、{when})", "Sent ({who}, {when})"),
    "held.state.dismissed": ("破棄済み ({who}、{when})", "Dismissed ({who}, {when})"),
    "held.details": ("詳しく見る", "Details"),
    "held.overview": (
        "確認待ちのアラートが{count}件あります。",
        "{count} alerts are held for review.",
    ),
    "held.overview.one": (
        "確認待ちのアラートが{count}件あります。",
        "{count} alert is held for review.",
    ),
    "held.back": ("確認待ちの一覧へ戻る", "Back to the held alerts"),
    "error.404": ("ページが見つかりません", "Page not found"),
    "error.404.text": (
        "このページは存在しないか、表示する権限がありません。",
        "This page does not exist or you may not see it.",
    ),
    "error.400": ("リクエストを処理できません", "The request could not be handled"),
    "error.400.text": (
        "フォームの有効期限が切れた可能性があります。ページを開き直してもう一度お試しください。",
        "The form may have expired. Please reload the page and try again.",
    ),
    "error.429": ("しばらくお待ちください", "Please wait"),
    "back": ("ページ一覧へ戻る", "Back to the pages"),
    "list.sep": ("、", ", "),
    "edits.title": ("編集の効果 (編集前後の比較)", "Did the edit help? (before and after)"),
    "edits.explain": (
        "ページの更新日が変わった日を編集として記録し、その前の28日間と後の28日間の回答を"
        "設問ごとに比べます (編集の日の回答はどちらにも含めません)。"
        "差の95%信頼区間が0をまたがず、5ポイント以上の差があるときに「良くなりました」"
        "「悪くなりました」と判定します。どちらかの回答が10件未満のときは判定しません。",
        "An edit is the day the page's last-modified date changed. The answers of the 28 days "
        "before it and of the 28 days after it are compared per question (the day itself is in "
        "neither). Better or worse means the 95% interval of the change excludes 0 and the "
        "change is at least 5 points; with fewer than 10 answers on either side there is no "
        "verdict.",
    ),
    "edits.heading": (
        "{day}の編集 (それまでの更新日: {previous})",
        "Edit of {day} (last-modified date before it: {previous})",
    ),
    "edits.by.sources": (
        "更新日は5つ以上の送信元からの回答で確認",
        "Date confirmed by answers from 5 or more sources",
    ),
    "edits.by.list": ("更新日は市のページ一覧による", "Date from the city's page list"),
    "edits.windows": ("編集前 {before}、編集後 {after}", "Before {before}, after {after}"),
    "edits.outcome.better": ("良くなりました", "Better"),
    "edits.outcome.worse": ("悪くなりました", "Worse"),
    "edits.outcome.unclear": ("はっきりした変化はありません", "No clear change"),
    "edits.outcome.too_few": ("回答が少なく判断できません", "Too few answers to tell"),
    "edits.pending": (
        "編集後の28日間が終わった{day}に判定し、担当課へメールでお知らせします。"
        "下の表は途中経過です。",
        "Judged on {day}, when the 28 days after the edit are over, and emailed to the "
        "division. The table shows the figures so far.",
    ),
    "edits.so_far": ("途中経過", "So far"),
    "edits.question": ("設問", "Question"),
    "edits.before": ("編集前 (28日間)", "Before (28 days)"),
    "edits.after": ("編集後 (28日間)", "After (28 days)"),
    "edits.change": ("差 (ポイント)", "Change (points)"),
    "edits.verdict": ("判定", "Verdict"),
    "edits.mark": ("編集", "Edit"),
    "edits.marked": (
        "縦の破線は、このページの編集 ({days}) です。",
        "The dashed vertical lines are the page's edits ({days}).",
    ),
    "edits.see": ("編集前後の比較を見る", "See before and after"),
}


def translate(lang: str, key: str, **values: object) -> str:
    ja, en = MESSAGES[key]
    text = en if lang == "en" and en else ja
    return text.format(**values) if values else text


def format_date(value: date | datetime | None, lang: str, zone: ZoneInfo | None = None) -> str:
    """2026年11月27日 in Japanese, 27 Nov 2026 in English; datetimes in the city's zone."""
    if value is None:
        return ""
    time = ""
    if isinstance(value, datetime):
        if zone is not None:
            value = value.astimezone(zone)
        time = f" {value:%H:%M}"
        value = value.date()
    if lang == "en":
        return f"{value.day} {value:%b %Y}{time}"
    return f"{value.year}年{value.month}月{value.day}日{time}"


def format_number(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def format_share(value: float | None) -> str:
    """A share of 0–1 as a whole percentage; a dash when there was nothing to share."""
    if value is None:
        return "–"
    return f"{value * 100:.0f}%"


def format_change(value: float | None) -> str:
    """A change in points with its sign (a true minus sign, as printed tables use)."""
    if value is None:
        return "–"
    return f"{value:+,.1f}".replace("-", "\u2212")


def format_score(value: float | None) -> str:
    """One decimal, as the stats API rounds; a dash when nobody answered."""
    if value is None:
        return "–"
    return f"{value:,.1f}"
