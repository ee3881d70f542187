from koe_kit.alembic_env import run_migrations

run_migrations()
