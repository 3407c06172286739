#!/bin/sh
# Entry point of the streaming replica (same image as the primary).
# On an empty data volume: wait for the primary, clone it with pg_basebackup
# -R (writes standby.signal and primary_conninfo) into the replication slot
# the primary's init script created, then hand over to the image's own entry
# point, which finds an initialised data directory and starts postgres as a
# hot standby.
set -eu

: "${PGDATA:=/var/lib/postgresql/data}"
: "${PRIMARY_HOST:?PRIMARY_HOST is not set}"
: "${PRIMARY_PORT:=5432}"
: "${POSTGRES_REPLICATION_USER:=replicator}"
: "${POSTGRES_REPLICATION_SLOT:=replica_1}"
: "${POSTGRES_REPLICATION_PASSWORD_FILE:?POSTGRES_REPLICATION_PASSWORD_FILE is not set}"

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 0700 "$PGDATA"
    # Alpine images carry su-exec, Debian ones gosu.
    if command -v su-exec >/dev/null 2>&1; then
        exec su-exec postgres "$0" "$@"
    fi
    exec gosu postgres "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    until pg_isready -q -h "$PRIMARY_HOST" -p "$PRIMARY_PORT"; do
        echo "replica: waiting for $PRIMARY_HOST:$PRIMARY_PORT"
        sleep 2
    done
    PGPASSFILE="$(mktemp)"
    printf '%s:%s:replication:%s:%s\n' "$PRIMARY_HOST" "$PRIMARY_PORT" "$POSTGRES_REPLICATION_USER" \
        "$(cat "$POSTGRES_REPLICATION_PASSWORD_FILE")" > "$PGPASSFILE"
    chmod 0600 "$PGPASSFILE"
    export PGPASSFILE
    echo "replica: cloning $PRIMARY_HOST:$PRIMARY_PORT with pg_basebackup"
    pg_basebackup -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$POSTGRES_REPLICATION_USER" \
        -D "$PGDATA" -X stream -S "$POSTGRES_REPLICATION_SLOT" -R --checkpoint=fast --progress
    # primary_conninfo written by -R names the pass file: keep the password
    # in the data directory (0600), not in a temporary file that goes away.
    cp "$PGPASSFILE" "$PGDATA/.pgpass_replication"
    chmod 0600 "$PGDATA/.pgpass_replication"
    rm -f "$PGPASSFILE"
    printf "primary_conninfo = 'host=%s port=%s user=%s passfile=%s application_name=%s'\n" \
        "$PRIMARY_HOST" "$PRIMARY_PORT" "$POSTGRES_REPLICATION_USER" \
        "$PGDATA/.pgpass_replication" "$(hostname)" >> "$PGDATA/postgresql.auto.conf"
    chmod 0700 "$PGDATA"
fi

exec docker-entrypoint.sh "$@"
