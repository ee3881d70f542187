"""The alert emails as a division reads them (pure functions, no I/O): both parts
parsed back from the bytes a mail client gets."""

from __future__ import annotations

import base64
import email
import email.policy
import json
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path

from notifier.compose import (
    compose_alert_email,
    compose_digest_email,
    one_line,
)

SENT_AT = datetime(2026, 11, 27, 3, 5, tzinfo=UTC)
RECOVERED = (
    Path(__file__).resolve().parents[3]
    / "schemas/examples/koe.alerts.recovered.v1/clarity-recovered.json"
)
DASHBOARD = "https://koe.city-tsu.example"


def compose(event, directory, **options):
    page = event["data"]["page"]
    division = directory.owner(page["url"])
    options.setdefault("mail_from", "koe <koe@city-tsu.example>")
    return compose_alert_email(event, division, sent_at=SENT_AT, **options)


def on_the_wire(message):
    """What a mail client gets: the bytes, parsed back."""
    return email.message_from_bytes(message.as_bytes(), policy=email.policy.default)


class _Text(HTMLParser):
    """The text a reader sees in the HTML part, and the links they can follow."""

    def __init__(self):
        super().__init__()
        self.chunks: list[str] = []
        self.links: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.links.extend(v for k, v in attrs if k == "href")

    def handle_data(self, data):
        self.chunks.append(data)


def parts(mail):
    """(text part, seen HTML text, HTML parser, raw HTML) of a parsed mail."""
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(preferencelist=("plain",)).get_content()
    html = mail.get_body(preferencelist=("html",)).get_content()
    parser = _Text()
    parser.feed(html)
    return text, " ".join("".join(parser.chunks).split()), parser, html


def test_subject_is_japanese_and_names_the_page(make_alert, directory):
    mail = on_the_wire(compose(make_alert(), directory))
    assert mail["Subject"] == "【koe】ページの評価が下がりました: 津市の自治体DX取組状況"
    assert mail["From"] == "koe <koe@city-tsu.example>"
    assert mail["Date"].datetime == SENT_AT


def test_recipients_are_the_owning_divisions(make_alert, directory):
    mail = on_the_wire(compose(make_alert(), directory))
    assert [a.addr_spec for a in mail["To"].addresses] == ["digital-kaikaku@city-tsu.example"]
    unowned = make_alert(url="https://www.info.city.tsu.mie.jp/kanko/1.html", division=None)
    mail = on_the_wire(compose(unowned, directory))
    assert [a.addr_spec for a in mail["To"].addresses] == ["webmaster@city-tsu.example"]
    text, seen, _parser, _html = parts(mail)
    for body in (text, seen):
        assert "総務部 広報課 (ウェブサイト管理) ご担当者様" in body
        # The fallback is told why it got the mail, and how to give the page an owner.
        assert "担当課のないページです" in body
        assert "url_prefixes にページのURL" in body
    owned = parts(on_the_wire(compose(make_alert(), directory)))[0]
    assert "担当課のないページ" not in owned


def test_a_title_cannot_add_headers(make_alert, directory):
    event = make_alert(title="お知らせ\r\nBcc: evil@x\r\n\r\nbody")
    raw = compose(event, directory).as_bytes()
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["Bcc"] is None
    assert b"\nBcc:" not in raw
    assert sorted(mail.keys()) == sorted(
        ["Subject", "From", "To", "Date", "Message-ID", "Auto-Submitted"]
        + ["Content-Type", "MIME-Version"]
    )
    assert mail["Subject"] == "【koe】ページの評価が下がりました: お知らせ Bcc: evil@x body"


def test_an_encoded_word_in_a_title_cannot_add_headers_either(make_alert, directory):
    # RFC 2047 words carrying CR LF: the email package would decode them into real breaks.
    crlf = base64.b64encode(b"x\r\nReply-To: evil@x\r\n\r\nfake body").decode()
    for title in (f"=?utf-8?b?{crlf}?=", "=?utf-8?q?x=0D=0AReply-To:_evil@x?="):
        raw = compose(make_alert(title=title), directory).as_bytes()
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        assert mail["Reply-To"] is None and b"\nReply-To:" not in raw, title
        assert "\n" not in mail["Subject"] and "=?" not in mail["Subject"]
        # Shown as the text it is, the equals sign full-width.
        assert mail["Subject"].split(": ", 1)[1].startswith("＝?utf-8?")


def test_markup_in_a_title_is_text_in_html_and_absent_from_headers(make_alert, directory):
    event = make_alert(title="<script>alert(1)</script>")
    mail = on_the_wire(compose(event, directory, dashboard_url=DASHBOARD))
    text, seen, parser, html = parts(mail)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" in seen  # shown to the reader as the title it is
    assert "script" not in parser.tags
    for name, value in mail.items():
        assert "<script" not in str(value).lower(), name
    assert mail["Subject"].endswith(": ＜script＞alert(1)＜/script＞")
    # The plain text part is not markup: a mail client shows it as it is.
    assert "ページ: <script>alert(1)</script>" in text


def test_long_titles_are_cut_and_controls_dropped(make_alert, directory):
    mail = on_the_wire(compose(make_alert(title="長" * 200 + "\x1b[31m"), directory))
    title = mail["Subject"].split(": ", 1)[1]
    assert title == "長" * 59 + "…"
    assert one_line("a\u2028b\u202ec\x00d\tz") == "a bcd z"
    untitled = on_the_wire(compose(make_alert(title=""), directory))
    assert untitled["Subject"].endswith(": (タイトルなし)")


def test_drop_email_says_what_dropped_with_n_interval_link_and_contact(make_alert, directory):
    event = make_alert()
    mail = on_the_wire(compose(event, directory, dashboard_url=DASHBOARD))
    text, seen, parser, _html = parts(mail)
    dashboard = f"{DASHBOARD}/pages/u-5f1c9a2d7e3b4c60"
    for body in (text, seen):
        assert "総務部 デジタル改革推進課 ご担当者様" in body
        assert "評価が下がりました" in body
        assert "津市の自治体DX取組状況" in body
        assert "https://www.info.city.tsu.mie.jp/shisei/dx/1234.html" in body
        assert "このページの内容はわかりやすかったですか？" in body
        assert "2026年11月21日〜2026年11月27日" in body
        assert "2026年10月24日〜2026年11月20日" in body
        assert "回答80件" in body and "回答20件" in body
        assert "74.9〜90.7点" in body and "12.8〜49.4点" in body
        assert "56.9ポイント" in body
        # Whom the mail is for, without the division's own phone and address read back to it.
        assert "担当課として koe に登録されている総務部 デジタル改革推進課へ" in body
        assert "059-229-3118" not in body
        assert "digital-kaikaku@city-tsu.example" not in body
    assert "84.4点 (回答80件) → 27.5点 (回答20件)" in text
    assert "95%信頼区間: 74.9〜90.7点 → 12.8〜49.4点" in text
    assert "今回の内訳: わかりやすかった 4件 / ふつう 3件 / わかりにくかった 13件" in text
    assert f"ダッシュボード: {dashboard}" in text
    assert dashboard in parser.links
    assert "https://www.info.city.tsu.mie.jp/shisei/dx/1234.html" in parser.links
    summary = text.split("\n--\n")[-1]
    assert "Summary (English): satisfaction with this page dropped." in summary
    assert "clarity: 84.4 (n=80, 95% CI 74.9-90.7) -> 27.5 (n=20, 95% CI 12.8-49.4)" in summary


def test_no_dashboard_link_unless_configured(make_alert, directory):
    text, seen, parser, _ = parts(on_the_wire(compose(make_alert(), directory)))
    assert "ダッシュボード" not in text and "ダッシュボード" not in seen
    assert parser.links == ["https://www.info.city.tsu.mie.jp/shisei/dx/1234.html"]


def test_japanese_number_conventions(make_alert, directory):
    event = make_alert()
    question = event["data"]["questions"][0]
    question["question"] = "findability"
    question["baseline"].update(yes=9000, neutral=1000, no=2345, n=12345, score=77.0)
    question["baseline"]["interval"] = {"low": 76.3, "high": 77.7}
    text, seen, _, _ = parts(on_the_wire(compose(event, directory)))
    assert "見つけやすさ「このページは見つけやすかったですか？」" in text
    assert "77.0点 (回答12,345件)" in text
    assert "回答12,345件" in seen


def test_an_alert_without_interval_still_reads(make_alert, directory):
    """Alerts raised before the optional interval field existed."""
    event = make_alert()
    for side in ("recent", "baseline"):
        del event["data"]["questions"][0][side]["interval"]
    text, _, _, _ = parts(on_the_wire(compose(event, directory)))
    assert "84.4点 (回答80件) → 27.5点 (回答20件)" in text
    assert "信頼区間" not in text.split("点数は")[0]


def test_recovery_email(directory):
    event = json.loads(RECOVERED.read_text(encoding="utf-8"))
    mail = on_the_wire(compose(event, directory, dashboard_url=DASHBOARD))
    assert mail["Subject"] == "【koe】ページの評価が回復しました: 津市の自治体DX取組状況"
    assert mail["Message-ID"] == f"<koe-alert-{event['id']}@city-tsu.example>"
    text, seen, parser, _ = parts(mail)
    assert (
        "下がる前 84.4点 (回答80件) → お知らせ時 27.5点 (回答20件) → 現在 85.4点 (回答24件)" in text
    )
    assert "現在の95%信頼区間: 66.5〜94.5点" in text
    assert "現在の期間: 2026年12月2日〜2026年12月8日" in text
    assert "\n\n\n" not in text  # paragraphs apart by one blank line, never two
    for body in (text, seen):
        assert "下がる前の水準に戻りました" in body
        assert "059-229-3118" not in body
    assert f"{DASHBOARD}/pages/u-5f1c9a2d7e3b4c60" in parser.links
    assert "Summary (English): this page is back to its baseline." in text


def test_digest_lists_every_page_without_user_text_in_headers(make_alert, directory):
    recovered = json.loads(RECOVERED.read_text(encoding="utf-8"))
    first = make_alert(title="<b>ごみの出し方</b>")
    second = make_alert(url="https://www.info.city.tsu.mie.jp/shisei/dx/99.html")
    second["data"]["page"]["title"] = "電子申請の手引き"
    division = directory.divisions["somu-dx"]
    mail = on_the_wire(
        compose_digest_email(
            [first, recovered, second],
            division,
            day=date(2026, 11, 27),
            mail_from="koe <koe@city-tsu.example>",
            sent_at=SENT_AT,
            dashboard_url=DASHBOARD,
        )
    )
    assert mail["Subject"] == "【koe】ページ評価のまとめ 2026年11月27日: 低下 2件・回復 1件"
    assert mail["Message-ID"] == "<koe-digest-somu-dx-2026-11-27@city-tsu.example>"
    text, seen, parser, html = parts(mail)
    dropped, _, back = text.partition("==== 評価が回復したページ ====")
    assert "[1] ページ: <b>ごみの出し方</b>" in dropped
    assert "[2] ページ: 電子申請の手引き" in dropped
    assert "[1] ページ: 津市の自治体DX取組状況" in back
    assert "&lt;b&gt;ごみの出し方&lt;/b&gt;" in html and "b" not in parser.tags
    assert "<b>ごみの出し方</b>" in seen
    assert "059-229-3118" not in text and "059-229-3118" not in seen
    assert "koe's daily digest for 2026-11-27: 2 dropped, 1 recovered." in text
    assert "\n\n\n" not in text.partition("\n--\n")[0]


def test_message_id_is_the_same_for_the_same_alert(make_alert, directory):
    event = make_alert()
    first = compose(event, directory)
    again = compose_alert_email(
        event,
        directory.owner(event["data"]["page"]["url"]),
        mail_from="koe <koe@city-tsu.example>",
        sent_at=datetime(2026, 11, 28, tzinfo=UTC),
    )
    other = compose(make_alert(), directory)
    assert first["Message-ID"] == again["Message-ID"]
    assert first["Message-ID"] == f"<koe-alert-{event['id']}@city-tsu.example>"
    assert other["Message-ID"] != first["Message-ID"]


EDIT_REVIEWED = (
    Path(__file__).resolve().parents[3]
    / "schemas/examples/koe.alerts.edit.reviewed.v1/clarity-better.json"
)


def test_edit_report_says_the_outcome_with_numbers_per_question(directory):
    event = json.loads(EDIT_REVIEWED.read_text(encoding="utf-8"))
    mail = on_the_wire(compose(event, directory, dashboard_url=DASHBOARD))
    text, seen, parser, _html = parts(mail)

    assert mail["Subject"] == "【koe】ページ更新の効果: 良くなりました: 津市の自治体DX取組状況"
    assert mail["To"] == "digital-kaikaku@city-tsu.example"
    assert mail["Message-ID"] == f"<koe-alert-{event['id']}@city-tsu.example>"
    for shown in (text, seen):
        assert "2026年11月3日にページが更新されてから4週間" in shown
        assert "それまでの更新日: 2026年4月1日" in shown
        assert "2026年10月6日〜2026年11月2日" in shown and "2026年11月4日〜2026年12月1日" in shown
        assert "+38.1ポイント (95%信頼区間 +22.4〜+53.8)" in shown  # clarity
        assert "回答が少なく判断できません" in shown  # usefulness: 5 before, none after
        assert "回答なし" in shown
    assert "38.6点 (回答44件) → 更新後 76.7点 (回答45件)" in text
    assert "はっきりした変化はありません" in text  # findability
    assert f"{DASHBOARD}/pages/u-5f1c9a2d7e3b4c60#edits" in parser.links
    assert "Summary (English): four weeks after the page was edited on 2026-11-03: better." in text
    assert "clarity: 38.6 (n=44, 95% CI 25.7-53.4) -> 76.7 (n=45" in text
    # Paragraphs apart by one blank line, never two (SMTP's line ends).
    assert "\r\n\r\n\r\n" not in text
    assert "判定していません。\r\n\r\n点数は" in text
