#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the store tests, the replica tests and
# the benchmarks. Never for production: fsync is off.
#
#   bash scripts/pg.sh start DIR [PORT]  # create (or start) a cluster; prints its URL
#   bash scripts/pg.sh stop DIR          # pg_ctl stop -m fast (no error if stopped)
#   bash scripts/pg.sh kill DIR          # pg_ctl stop -m immediate (a crash, as far
#                                        # as PostgreSQL is concerned)
#   bash scripts/pg.sh restart DIR       # stop if running, start again, same port
#   bash scripts/pg.sh url DIR           # prints the URL
#   bash scripts/pg.sh destroy DIR       # stop and rm -rf DIR
#
# stdout carries exactly one line, for start/restart/url: the URL without
# password, postgres://clawgate@127.0.0.1:PORT/postgres. Everything else
# goes to stderr. The superuser is `clawgate`; its random password is in
# DIR/password (mode 0600, owned by whoever ran `start`) and is never
# printed. PORT defaults to a free loopback port.
#
# Layout of DIR (owned by the server's user):
#   data/        the cluster (initdb)
#   server.log   the server's log
#   port         the TCP port, for restart/url
#   password     the superuser's password (owned by the invoking user)
#   .s.PGSQL.*   the unix socket (local connections are trusted)
#
# initdb refuses to run as root, so as root the server runs as the
# `postgres` system user when it exists, else as `nobody` (runuser). As any
# other user it runs as that user.
set -euo pipefail

die() { echo "pg.sh: $*" >&2; exit 1; }

usage() {
  echo "usage: pg.sh start DIR [PORT] | stop DIR | kill DIR | restart DIR | url DIR | destroy DIR" >&2
  exit 2
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# The newest installed server's bin directory; installs PostgreSQL when
# there is none (Debian/Ubuntu).
pg_bindir() {
  local initdb
  initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$initdb" ]; then
    echo "pg.sh: installing PostgreSQL (apt-get install postgresql)" >&2
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$initdb" ] || die "apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb exists"
  fi
  dirname "$initdb"
}

# The unprivileged user that runs a new cluster.
server_user_for_new() {
  if [ "$(id -u)" != 0 ]; then
    id -un
  elif getent passwd postgres >/dev/null 2>&1; then
    echo postgres
  else
    echo nobody
  fi
}

# Runs a command as USER (runuser when root, directly otherwise), from /
# so that initdb/pg_ctl never trip over an unreadable working directory.
run_as() {
  local user=$1; shift
  if [ "$(id -u)" = 0 ]; then
    (cd / && runuser -u "$user" -- "$@")
  else
    (cd / && "$@")
  fi
}

url_for() { echo "postgres://clawgate@127.0.0.1:$1/postgres"; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Sets DIR (absolute), DATA, LOG, and for an existing cluster USER and PORT.
load_dir() {
  [ -n "${1:-}" ] || usage
  DIR=$(realpath -m -- "$1")
  DATA=$DIR/data
  LOG=$DIR/server.log
  USER_=""
  PORT=""
  if [ -f "$DATA/PG_VERSION" ]; then
    USER_=$(stat -c %U -- "$DATA")
    [ -f "$DIR/port" ] || die "$DIR/port is missing (was $DIR made by pg.sh start?)"
    PORT=$(cat -- "$DIR/port")
  fi
}

require_cluster() {
  [ -n "$USER_" ] || die "no cluster in $DIR (run: pg.sh start $DIR PORT)"
}

is_running() {
  # pg_ctl status: 0 running, 3 not running, 4 no data directory.
  run_as "$USER_" "$BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

log_tail() {
  if [ -r "$LOG" ]; then
    echo "---- last lines of $LOG ----" >&2
    tail -n 40 -- "$LOG" >&2 || true
    echo "----" >&2
  fi
}

# Starts the existing cluster and waits (30 s at most) until it accepts
# TCP connections on 127.0.0.1:PORT.
start_server() {
  if ! run_as "$USER_" "$BIN/pg_ctl" start -D "$DATA" -l "$LOG" -w -t 30 >&2; then
    log_tail
    die "PostgreSQL did not start in $DIR (port $PORT)"
  fi
  local i
  for i in $(seq 1 60); do
    if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -d postgres -U clawgate -t 1; then
      return 0
    fi
    sleep 0.5
  done
  log_tail
  die "PostgreSQL in $DIR started but does not accept connections on 127.0.0.1:$PORT"
}

stop_server() { # MODE
  if is_running; then
    run_as "$USER_" "$BIN/pg_ctl" stop -D "$DATA" -m "$1" -w -t 60 >&2 \
      || { log_tail; die "pg_ctl stop -m $1 failed in $DIR"; }
  fi
}

cmd_start() {
  load_dir "${1:-}"
  local want_port=${2:-}
  if [ -n "$want_port" ]; then
    case $want_port in *[!0-9]*|"") die "PORT must be a number: $want_port" ;; esac
  fi
  if [ -n "$USER_" ]; then
    # An existing cluster: print its URL, starting it first if it is down.
    if [ -n "$want_port" ] && [ "$want_port" != "$PORT" ]; then
      die "$DIR holds a cluster on port $PORT, not $want_port"
    fi
    is_running || start_server
    url_for "$PORT"
    return 0
  fi

  PORT=${want_port:-$(free_port)}
  USER_=$(server_user_for_new)
  # The unix socket path must fit in sun_path (107 bytes).
  [ "${#DIR}" -le 80 ] || die "DIR is too long for a unix socket path: $DIR"

  mkdir -p -- "$DIR"
  if [ "$(id -u)" = 0 ]; then
    chown -- "$USER_:" "$DIR"
  fi
  chmod 0755 -- "$DIR"
  run_as "$USER_" test -w "$DIR" -a -x "$DIR" \
    || die "user $USER_ cannot write $DIR (is a parent directory closed to it?)"

  # The password: generated here, handed to initdb through a file only the
  # server's user can read, deleted right after. DIR/password belongs to
  # the invoking user (so root-run tests read it), mode 0600.
  local password pwtmp
  password=$(openssl rand -hex 24 2>/dev/null || python3 -c 'import secrets; print(secrets.token_hex(24))')
  [ -n "$password" ] || die "could not generate a password"
  (umask 077 && printf '%s' "$password" >"$DIR/password")
  chmod 0600 -- "$DIR/password"
  pwtmp=$DIR/.initdb-pwfile
  (umask 077 && printf '%s\n' "$password" >"$pwtmp")
  if [ "$(id -u)" = 0 ]; then chown -- "$USER_:" "$pwtmp"; fi
  unset password
  echo "$PORT" >"$DIR/port"

  if ! run_as "$USER_" "$BIN/initdb" -D "$DATA" -U clawgate --pwfile="$pwtmp" \
      --auth-local=trust --auth-host=scram-sha-256 \
      --encoding=UTF8 --locale=C >"$DIR/initdb.log" 2>&1; then
    rm -f -- "$pwtmp"
    cat -- "$DIR/initdb.log" >&2 || true
    die "initdb failed in $DATA"
  fi
  rm -f -- "$pwtmp"

  # Speed over durability: this cluster is thrown away.
  run_as "$USER_" tee -a "$DATA/postgresql.conf" >/dev/null <<EOF

# ---- scripts/pg.sh (throwaway test cluster) ----
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 200
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
log_min_messages = warning
log_connections = off
EOF
  run_as "$USER_" tee "$DATA/pg_hba.conf" >/dev/null <<'EOF'
# scripts/pg.sh: trust on the unix socket (in DIR), a password over TCP.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
EOF

  start_server
  url_for "$PORT"
}

cmd_stop() { load_dir "${1:-}"; [ -n "$USER_" ] || return 0; stop_server fast; }
cmd_kill() { load_dir "${1:-}"; [ -n "$USER_" ] || return 0; stop_server immediate; }

cmd_restart() {
  load_dir "${1:-}"
  require_cluster
  stop_server fast
  start_server
  url_for "$PORT"
}

cmd_url() {
  load_dir "${1:-}"
  require_cluster
  url_for "$PORT"
}

cmd_destroy() {
  load_dir "${1:-}"
  [ -e "$DIR" ] || return 0
  case $DIR in /|/tmp|/var|/var/tmp|/root|/home|"$HOME") die "refusing to remove $DIR" ;; esac
  if [ -n "$USER_" ]; then
    # The data is thrown away: no need for a clean shutdown.
    stop_server immediate
  elif [ -n "$(ls -A -- "$DIR")" ] && [ ! -f "$DIR/port" ]; then
    die "refusing to remove $DIR: it does not look like a pg.sh directory"
  fi
  rm -rf -- "$DIR"
}

[ $# -ge 1 ] || usage
command=$1; shift
case $command in
  start|stop|kill|restart|url|destroy) ;;
  *) usage ;;
esac
if [ "$command" != url ]; then
  BIN=$(pg_bindir)
fi
case $command in
  start)   [ $# -ge 1 ] && [ $# -le 2 ] || usage; cmd_start "$@" ;;
  stop)    [ $# -eq 1 ] || usage; cmd_stop "$1" ;;
  kill)    [ $# -eq 1 ] || usage; cmd_kill "$1" ;;
  restart) [ $# -eq 1 ] || usage; cmd_restart "$1" ;;
  url)     [ $# -eq 1 ] || usage; cmd_url "$1" ;;
  destroy) [ $# -eq 1 ] || usage; cmd_destroy "$1" ;;
esac
