#!/bin/sh
# Runs once, on the primary's first start (docker-entrypoint-initdb.d), as
# the postgres user with a temporary server listening on the socket only.
# Creates the replication role and the replica's physical slot and lets the
# role connect for replication from the compose network.
set -eu

REPL_USER="${POSTGRES_REPLICATION_USER:-replicator}"
REPL_PASSWORD="$(cat "${POSTGRES_REPLICATION_PASSWORD_FILE:?POSTGRES_REPLICATION_PASSWORD_FILE is not set}")"
SLOT="${POSTGRES_REPLICATION_SLOT:-replica_1}"

# psql variables (:'name') quote the values: no SQL built from the password.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v repl_user="$REPL_USER" -v repl_password="$REPL_PASSWORD" -v slot="$SLOT" <<'SQL'
SELECT format('CREATE ROLE %I WITH REPLICATION LOGIN PASSWORD %L', :'repl_user', :'repl_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'repl_user') \gexec
SELECT pg_create_physical_replication_slot(:'slot')
WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = :'slot');
SQL

# The image's pg_hba.conf ends with "host all all all scram-sha-256", which
# does not cover the replication pseudo-database.
printf 'host replication %s all scram-sha-256\n' "$REPL_USER" >> "$PGDATA/pg_hba.conf"
