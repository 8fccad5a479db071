#!/bin/sh
# postern on a DiskStation without Docker: the boot-up script for DSM's Task Scheduler (docs/install.md).
#
#   Control Panel > Task Scheduler > Create > Triggered Task > User-defined script
#     Event: Boot-up;  User: root (ports under 1024) or a user of its own owning POSTERN_HOME (ports over 1023)
#     Run command:  sh /volume1/postern/dsm-task.sh start
#
# It starts a small supervisor in the background and returns: the supervisor runs postern, restarts it when it
# exits (after 1 s, doubling to at most 60 s while it keeps failing quickly), and writes postern's output to a log
# file rotated by size. Plain POSIX sh (DSM's ash/busybox): no arrays, no [[ ]], no local, no pipes to lose an
# exit code.
#
#   sh dsm-task.sh start | stop | restart | status | run   (run: the supervisor in the foreground)
#
# Files, under POSTERN_HOME (default: this script's directory):
#   postern           the static binary (postern-aarch64 or postern-x86_64 from `make static`, renamed)
#   postern.env       KEY=value lines (COOKIE_SECRET, IDP_CLIENT_SECRET, POLICY...); '#' comments; the value is
#                     taken literally to the end of the line (no quotes, no $ expansion), as Docker's --env-file
#   postern.yaml      optional: the YAML configuration (`--config`); the environment wins over it
#   log/postern.log   postern's log; rotated at LOG_MAX_BYTES into postern.log.1 ... postern.log.LOG_KEEP
#   run/              the supervisor's pid file
# LOG_MAX_BYTES (default 1048576) and LOG_KEEP (default 3) may be set in postern.env too.

set -u

here=$(cd "$(dirname "$0")" && pwd)
POSTERN_HOME=${POSTERN_HOME:-$here}
BIN=$POSTERN_HOME/postern
ENV_FILE=$POSTERN_HOME/postern.env
CONFIG=$POSTERN_HOME/postern.yaml
LOG_DIR=$POSTERN_HOME/log
LOG=$LOG_DIR/postern.log
RUN_DIR=$POSTERN_HOME/run
PID_FILE=$RUN_DIR/supervisor.pid

say() {
  printf '%s dsm-task: %s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$*" >>"$LOG"
}

# KEY=value lines into the environment, literally. Lines that are not NAME=... are reported and skipped.
load_env() {
  [ -f "$ENV_FILE" ] || return 0
  n=0
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line=${line%"$(printf '\r')"}
    case $line in
      '' | '#'*) continue ;;
    esac
    name=${line%%=*}
    case $name in
      "$line" | '' | [0-9]* | *[!A-Za-z0-9_]*)
        say "$ENV_FILE line $n is not NAME=value; skipped"
        continue
        ;;
    esac
    # shellcheck disable=SC2163 # the line is NAME=value: export exactly that
    export "$line"
  done <"$ENV_FILE"
}

# Copy-and-truncate: postern keeps its O_APPEND descriptor, so it writes on at the start of the emptied file.
rotate() {
  [ -f "$LOG" ] || return 0
  size=$(wc -c <"$LOG" 2>/dev/null || echo 0)
  [ "$size" -ge "${LOG_MAX_BYTES:-1048576}" ] || return 0
  i=${LOG_KEEP:-3}
  while [ "$i" -gt 1 ]; do
    prev=$((i - 1))
    [ -f "$LOG.$prev" ] && mv -f "$LOG.$prev" "$LOG.$i"
    i=$prev
  done
  cp -f "$LOG" "$LOG.1" && : >"$LOG"
}

supervise() {
  mkdir -p "$LOG_DIR" "$RUN_DIR"
  load_env
  if [ ! -x "$BIN" ]; then
    say "$BIN is missing or not executable; not started"
    exit 1
  fi
  set -- "$BIN"
  [ -f "$CONFIG" ] && set -- "$BIN" --config "$CONFIG"
  echo $$ >"$PID_FILE"

  child=''
  rotator=''
  stopping=0
  trap 'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT HUP
  (
    trap - TERM INT HUP
    while sleep 60; do rotate; done
  ) &
  rotator=$!

  delay=1
  while [ "$stopping" = 0 ]; do
    rotate
    started=$(date +%s)
    say "starting $*"
    "$@" >>"$LOG" 2>&1 </dev/null &
    child=$!
    # A trapped signal interrupts wait; wait again for the real exit status.
    wait "$child"
    rc=$?
    while kill -0 "$child" 2>/dev/null; do
      wait "$child"
      rc=$?
    done
    child=''
    [ "$stopping" = 0 ] || break
    ran=$(($(date +%s) - started))
    # A run of a minute or more was a real run: start the back-off again.
    [ "$ran" -ge 60 ] && delay=1
    say "postern exited with status $rc after ${ran}s; restarting in ${delay}s"
    sleep "$delay"
    delay=$((delay * 2))
    [ "$delay" -le 60 ] || delay=60
  done
  kill "$rotator" 2>/dev/null
  say "stopped"
  rm -f "$PID_FILE"
}

running_pid() {
  [ -f "$PID_FILE" ] || return 1
  pid=$(cat "$PID_FILE" 2>/dev/null)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
  if pid=$(running_pid); then
    echo "postern supervisor already running (pid $pid); log $LOG"
    return 0
  fi
  mkdir -p "$LOG_DIR" "$RUN_DIR"
  nohup sh "$0" run >/dev/null 2>&1 </dev/null &
  echo "postern supervisor started (pid $!); log $LOG"
}

stop() {
  if ! pid=$(running_pid); then
    echo "postern supervisor not running"
    return 0
  fi
  kill -TERM "$pid"
  i=0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 20 ]; do
    sleep 1
    i=$((i + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "postern supervisor (pid $pid) did not stop within 20 s" >&2
    return 1
  fi
  echo "postern stopped"
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  restart) stop && start ;;
  status)
    if pid=$(running_pid); then
      echo "postern supervisor running (pid $pid); log $LOG"
    else
      echo "postern supervisor not running"
      exit 3
    fi
    ;;
  run) supervise ;;
  *)
    echo "usage: sh $0 start|stop|restart|status|run" >&2
    exit 2
    ;;
esac
