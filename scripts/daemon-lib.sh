# Shared by registry.sh and prometheus.sh: run one local daemon with a pid file, wait for it, stop it.
# The sourcing script defines PIDFILE and log() first. Sourced, not run.

running() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

# daemon_launch LOGFILE COMMAND...: start COMMAND detached (setsid+nohup: it outlives the caller).
daemon_launch() {
  local logfile=$1
  shift
  setsid nohup "$@" </dev/null >>"$logfile" 2>&1 &
  echo $! >"$PIDFILE"
}

# daemon_wait TRIES CHECK LOGFILE READY_MESSAGE: poll CHECK every 0.5 s; on failure show the log, stop, exit 1.
daemon_wait() {
  local tries=$1 check=$2 logfile=$3 message=$4
  for _ in $(seq "$tries"); do
    if $check; then log "$message"; return; fi
    running || break
    sleep 0.5
  done
  log "ERROR: did not become ready; last lines of $logfile:" >&2
  tail -n 20 "$logfile" >&2 || true
  daemon_stop >/dev/null
  exit 1
}

# daemon_stop: TERM, up to 10 s to exit, then KILL.
daemon_stop() {
  if running; then
    local pid
    pid=$(cat "$PIDFILE")
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped (pid $pid)"
  else
    log "not running"
  fi
  rm -f "$PIDFILE"
}
