"""Dashboard accounts: who may sign in (services.py, auth.py), which pages they
see (visibility.py), and `python -m aggregator.accounts` (cli.py)."""
