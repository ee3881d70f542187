"""The divisions' dashboard: server-rendered HTML, charts and CSV, its words in
two languages, CSRF, and what every dashboard request goes through (access.py)."""
