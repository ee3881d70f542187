"""The alert email as a division reads it (pure function, no I/O)."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

from notifier.compose import compose_alert_email, one_line

SENT_AT = datetime(2026, 11, 27, 3, 5, tzinfo=UTC)


def compose(event, directory, **options):
    data = event["data"]
    division = directory.owner(data["page"]["url"], data["page"]["division"])
    options.setdefault("mail_from", "koe <koe@city-tsu.example>")
    return compose_alert_email(data, division, sent_at=SENT_AT, **options)


def on_the_wire(message):
    """What a mail client gets: the bytes, parsed back."""
    return email.message_from_bytes(message.as_bytes(), policy=email.policy.default)


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
    assert "総務部 広報課 (ウェブサイト管理) ご担当者様" in mail.get_content()


def test_a_title_cannot_add_headers(make_alert, directory):
    event = make_alert(title="お知らせ\r\nBcc: evil@x\r\n\r\nbody")
    raw = compose(event, directory).as_bytes()
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["Bcc"] is None
    assert b"\nBcc:" not in raw
    assert sorted(mail.keys()) == sorted(
        ["Subject", "From", "To", "Date", "Message-ID", "Auto-Submitted"]
        + ["Content-Type", "Content-Transfer-Encoding", "MIME-Version"]
    )
    assert mail["Subject"] == "【koe】ページの評価が下がりました: お知らせ Bcc: evil@x body"


def test_long_titles_are_cut_and_controls_dropped(make_alert, directory):
    mail = on_the_wire(compose(make_alert(title="長" * 200 + "\x1b[31m"), directory))
    title = mail["Subject"].split(": ", 1)[1]
    assert title == "長" * 59 + "…"
    assert one_line("a\u2028b\u202ec\x00d\tz") == "a bcd z"
    untitled = on_the_wire(compose(make_alert(title=""), directory))
    assert untitled["Subject"].endswith(": (タイトルなし)")


def test_body_has_scores_with_n_dates_and_questions(make_alert, directory):
    event = make_alert()
    body = on_the_wire(compose(event, directory)).get_content()
    assert "総務部 デジタル改革推進課" in body
    assert "津市の自治体DX取組状況" in body
    assert "https://www.info.city.tsu.mie.jp/shisei/dx/1234.html" in body
    assert "わかりやすさ「このページの内容はわかりやすかったですか?」" in body
    assert "84.4点 (回答80件) → 27.5点 (回答20件)" in body
    assert "56.9ポイント低下" in body
    assert "2026年11月21日〜2026年11月27日" in body
    assert "2026年10月24日〜2026年11月20日" in body
    assert "Summary (English)" in body.split("--")[-1]
    assert "ダッシュボード" not in body


def test_japanese_number_conventions(make_alert, directory):
    event = make_alert()
    question = event["data"]["questions"][0]
    question["question"] = "findability"
    question["baseline"].update(yes=9000, neutral=1000, no=2345, n=12345, score=77.0)
    body = on_the_wire(compose(event, directory)).get_content()
    assert "見つけやすさ「このページは見つけやすかったですか?」" in body
    assert "77.0点 (回答12,345件)" in body


def test_dashboard_link_when_configured(make_alert, directory):
    event = make_alert()
    mail = compose(event, directory, dashboard_url="https://koe.city-tsu.example")
    assert "https://koe.city-tsu.example/pages/u-5f1c9a2d7e3b4c60" in mail.get_content()


def test_message_id_is_the_same_for_the_same_alert(make_alert, directory):
    event = make_alert()
    first = compose(event, directory)
    again = compose_alert_email(
        event["data"],
        directory.owner(event["data"]["page"]["url"]),
        mail_from="koe <koe@city-tsu.example>",
        sent_at=datetime(2026, 11, 28, tzinfo=UTC),
    )
    other = compose(make_alert(), directory)
    assert first["Message-ID"] == again["Message-ID"]
    assert first["Message-ID"] == f"<koe-alert-{event['id']}@city-tsu.example>"
    assert other["Message-ID"] != first["Message-ID"]
