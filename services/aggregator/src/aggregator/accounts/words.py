"""What `python -m aggregator.accounts` says, in Japanese (first) and English: its prompts,
what it did, and why an account cannot be made or changed (AccountError's reasons)."""

from __future__ import annotations

LANGUAGES = ("ja", "en")

WORDS: dict[str, tuple[str, str]] = {
    # key: (ja, en)
    "prompt.password": ("パスワード: ", "Password: "),
    "prompt.again": ("確認のため、もう一度: ", "Again, to confirm: "),
    "prompt.differ": (
        "2回の入力が一致しません。もう一度入力してください。",
        "The two entries differ. Please type them again.",
    ),
    "error.gave_up": (
        "{tries}回とも受け付けられなかったため、中止しました。",
        "Stopped after {tries} tries.",
    ),
    "home": (
        "{home} の divisions.yaml と var/ を使います (KOE_HOME で変えられます)。",
        "Using divisions.yaml and var/ in {home} (KOE_HOME changes it).",
    ),
    "no_divisions": ("担当課一覧を読めません: {error}", "cannot read divisions: {error}"),
    "no_database": (
        "データベースを読めません ({error})。koe を一度起動したか "
        "(python -m aggregator.migrate でも作れます)、DATABASE_URL が正しいかを確かめてください。",
        "cannot read the database ({error}). Has koe run once here "
        "(python -m aggregator.migrate makes it too), and is DATABASE_URL right?",
    ),
    "scope.admin": ("管理者", "admin"),
    "scope.division": ("課 {code}", "division {code}"),
    "created": ("{email} を作成しました ({scope})", "created {email} ({scope})"),
    "password_changed": ("{email} のパスワードを変更しました", "password changed for {email}"),
    "still_disabled": (" (アカウントは停止中のままです)", " (the account stays disabled)"),
    "disabled": ("{email} を停止しました", "disabled {email}"),
    "disabled_already": ("{email} はすでに停止中です", "{email} was disabled already"),
    "enabled": ("{email} を再開しました", "enabled {email}"),
    "not_disabled": ("{email} は停止されていません", "{email} was not disabled"),
    "deleted": (
        "{email} を削除しました "
        "(対応済みにしたアラート{handled}件の記録には、このメールアドレスが残ります)",
        "deleted {email} ({handled} handled alerts keep its email)",
    ),
    "error.not_email": (
        "{email!r} はメールアドレスではありません",
        "{email!r} is not an email address",
    ),
    "error.who": (
        "--division 課のコード か --admin のどちらかを指定してください",
        "give either --division CODE or --admin",
    ),
    "error.unknown_division": (
        "課のコード {division!r} は divisions.yaml にありません (あるもの: {known})",
        "unknown division {division!r} (divisions.yaml has: {known})",
    ),
    "error.short_password": (
        "パスワードは{length}文字以上にしてください",
        "the password needs at least {length} characters",
    ),
    "error.exists": (
        "{email} のアカウントはすでにあります (変更は set-password で)",
        "an account for {email} exists already (use set-password)",
    ),
    "error.no_account": ("{email} のアカウントはありません", "no account for {email}"),
}


def say(lang: str, key: str, **values: object) -> str:
    ja, en = WORDS[key]
    return (en if lang == "en" else ja).format(**values)
