#!/usr/bin/env bash
# Starts a private, throw-away PostgreSQL cluster for the tests and prints
# the DSN on stdout (everything else goes to stderr).
#   scripts/start-postgres.sh start DIR [PORT]   -> prints postgres://... DSN
#     (no PORT: the first of 55432-55531 nothing listens on, so that a
#     second cluster on the same machine does not collide)
#   scripts/start-postgres.sh stop DIR
# The cluster lives entirely in DIR (data, socket, log); nothing is written to
# /etc or /var. As root, the server runs as the 'postgres' system user, since
# PostgreSQL refuses to run as root.
set -euo pipefail

cmd="${1:-}"; dir="${2:-}"; port="${3:-}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2
fi
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bindir" ]; then
  echo "start-postgres: PostgreSQL server binaries not found (install the postgresql package)" >&2; exit 1
fi

run() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# in_use PORT: does anything accept connections on 127.0.0.1:PORT?
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case "$cmd" in
start)
  if [ -z "$port" ]; then
    for p in $(seq 55432 55531); do
      if ! in_use "$p"; then port=$p; break; fi
    done
    [ -n "$port" ] || { echo "start-postgres: no free port in 55432-55531" >&2; exit 1; }
  fi
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    run "$bindir/initdb" -D "$dir/data" -U confidant --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  run "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >&2 \
    || { cat "$dir/server.log" >&2; exit 1; }
  run "$bindir/createdb" -h 127.0.0.1 -p "$port" -U confidant confidant_test 2>/dev/null || true
  echo "postgres://confidant@127.0.0.1:$port/confidant_test?sslmode=disable"
  ;;
stop)
  if [ -f "$dir/data/postmaster.pid" ]; then
    run "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
  fi
  ;;
*)
  echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
