#!/bin/sh
# Run by the postgres image when its data volume is new (docker-entrypoint-initdb.d):
# koe's databases and roles (roles.sql), then each role's password from .env.
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -v prefix=koe \
    -f /koe-postgres/roles.sql
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v owner="${KOE_DB_OWNER_PASSWORD:?}" -v feedback="${KOE_FEEDBACK_DB_PASSWORD:?}" \
    -v aggregator="${KOE_AGGREGATOR_DB_PASSWORD:?}" -v notifier="${KOE_NOTIFIER_DB_PASSWORD:?}" <<'SQL'
ALTER ROLE koe_owner PASSWORD :'owner';
ALTER ROLE koe_feedback_app PASSWORD :'feedback';
ALTER ROLE koe_aggregator_app PASSWORD :'aggregator';
ALTER ROLE koe_notifier_app PASSWORD :'notifier';
SQL
