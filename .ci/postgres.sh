# Source this file: `postgres_start` runs a throwaway PostgreSQL server for the integration tests
# (initdb in a temporary folder, as the `postgres` user when run as root, listening on 127.0.0.1
# only, on a free port, password authentication) and exports CRITERIA_TEST_POSTGRES_URL;
# `postgres_stop` stops it and removes the folder.

postgres_bindir() {
    local dir
    for dir in "$(pg_config --bindir 2>/dev/null)" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
    done
    return 1
}

postgres_start() {
    local bindir port password as_postgres=()
    if ! bindir=$(postgres_bindir); then
        echo "PostgreSQL server binaries not found: installing the Debian package" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        bindir=$(postgres_bindir) || { echo "no initdb/pg_ctl after installing postgresql" >&2; return 1; }
    fi
    CRITERIA_PG_DIR=$(mktemp -d)
    if [ "$(id -u)" = 0 ]; then  # initdb refuses to run as root
        chown postgres "$CRITERIA_PG_DIR"
        as_postgres=(runuser -u postgres --)
    fi
    CRITERIA_PG_CTL=("${as_postgres[@]}" "$bindir/pg_ctl" -D "$CRITERIA_PG_DIR/data")
    password=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    echo "$password" > "$CRITERIA_PG_DIR/pwfile"
    chmod 600 "$CRITERIA_PG_DIR/pwfile"
    [ "$(id -u)" = 0 ] && chown postgres "$CRITERIA_PG_DIR/pwfile"
    "${as_postgres[@]}" "$bindir/initdb" -D "$CRITERIA_PG_DIR/data" -U criteria --pwfile="$CRITERIA_PG_DIR/pwfile" \
        --auth-host=scram-sha-256 --auth-local=scram-sha-256 >"$CRITERIA_PG_DIR/initdb.log" 2>&1 \
        || { cat "$CRITERIA_PG_DIR/initdb.log" >&2; return 1; }
    "${CRITERIA_PG_CTL[@]}" -l "$CRITERIA_PG_DIR/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $CRITERIA_PG_DIR -c max_connections=200 -c fsync=off" start >/dev/null \
        || { cat "$CRITERIA_PG_DIR/server.log" >&2; return 1; }
    export CRITERIA_TEST_POSTGRES_URL="postgresql://criteria:$password@127.0.0.1:$port/postgres"
    echo "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $CRITERIA_PG_DIR)" >&2
}

postgres_stop() {
    if [ -n "${CRITERIA_PG_DIR:-}" ]; then
        "${CRITERIA_PG_CTL[@]}" -m fast stop >/dev/null 2>&1 || true
        rm -rf "$CRITERIA_PG_DIR"
        unset CRITERIA_PG_DIR CRITERIA_TEST_POSTGRES_URL
    fi
}
