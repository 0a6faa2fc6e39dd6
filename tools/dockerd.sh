#!/usr/bin/env bash
# A Docker engine of its own, for the docker backend's tests and CI on a machine
# without one (as root; Debian's docker.io package):
#
#   eval "$(tools/dockerd.sh start /tmp/airlock-docker)"   # prints export DOCKER_HOST=unix://…/docker.sock
#   tools/dockerd.sh stop /tmp/airlock-docker
#
# Everything the engine keeps is under DIR: data-root (root/), exec-root (exec/),
# the socket (docker.sock), the pidfile (dockerd.pid) and the log (dockerd.log).
# No bridge and no iptables rules: containers use host networking, and the
# machine's firewall is left as it is. `start` is idempotent (an engine already
# answering there is reused); `stop` stops Airlock's session containers, then the
# engine by its pidfile, and waits until it has exited.
set -euo pipefail

usage() {
  echo "usage: $0 start|stop|status DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
action=$1
[ "$action" != start ] || mkdir -p -- "$2"
if [ ! -d "$2" ]; then
  echo "not running (no directory $2)"
  [ "$action" = stop ] && exit 0
  exit 1
fi
dir=$(cd -- "$2" && pwd)
sock="$dir/docker.sock"
pidfile="$dir/dockerd.pid"
log="$dir/dockerd.log"
export DOCKER_HOST="unix://$sock"

say() { printf 'dockerd.sh: %s\n' "$*" >&2; }

# The engine's pid when its pidfile names a live dockerd (not a zombie, not a reused pid), else nothing.
engine_pid() {
  local pid
  pid=$(cat -- "$pidfile" 2>/dev/null) || return 0
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || return 0
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 0
  echo "$pid"
}

# Whether the engine answers on its socket.
answers() {
  [ -S "$sock" ] || return 1
  if command -v docker >/dev/null 2>&1; then
    docker version >/dev/null 2>&1
  elif command -v curl >/dev/null 2>&1; then
    [ "$(curl -s --max-time 2 --unix-socket "$sock" http://localhost/_ping)" = OK ]
  fi
}

start() {
  if ! command -v dockerd >/dev/null 2>&1; then
    say "dockerd is not installed (apt-get install docker.io)"
    exit 1
  fi
  if [ ${#sock} -gt 100 ]; then
    say "$sock is too long for a Unix socket path; use a shorter DIR"
    exit 1
  fi
  local pid
  pid=$(engine_pid)
  if [ -z "$pid" ]; then
    rm -f -- "$pidfile"
    mkdir -p -- "$dir/root" "$dir/exec"
    # setsid: the engine outlives this script and is not in its process group (a ^C to CI stops it through `stop`).
    setsid dockerd --bridge=none --iptables=false --ip6tables=false \
      --data-root "$dir/root" --exec-root "$dir/exec" \
      -H "unix://$sock" --pidfile "$pidfile" >>"$log" 2>&1 </dev/null &
    say "starting dockerd (log: $log)"
  fi
  local waited=0
  until answers; do
    if [ -z "$(engine_pid)" ] && [ "$waited" -ge 4 ]; then
      say "dockerd exited before it answered; its log ends with:"
      tail -n 20 -- "$log" >&2 || true
      exit 1
    fi
    if [ "$waited" -ge 60 ]; then
      say "dockerd did not answer on $sock within 30 s; its log ends with:"
      tail -n 20 -- "$log" >&2 || true
      exit 1
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  echo "export DOCKER_HOST=unix://$sock"
}

stop() {
  local pid
  pid=$(engine_pid)
  if [ -z "$pid" ]; then
    say "no dockerd runs from $dir"
    return 0
  fi
  # Session containers still running get a clean Postgres shutdown before the engine goes.
  if command -v docker >/dev/null 2>&1 && answers; then
    local left
    left=$(docker ps -q --filter label=airlock.session 2>/dev/null || true)
    if [ -n "$left" ]; then
      say "stopping Airlock session containers: $(echo "$left" | tr '\n' ' ')"
      # shellcheck disable=SC2086 # one id per word
      docker stop -t 10 $left >/dev/null 2>&1 || true
    fi
  fi
  local containerd
  containerd=$(cat -- "$dir/exec/containerd/containerd.pid" 2>/dev/null || true)
  kill -TERM "$pid" 2>/dev/null || true
  local waited=0
  while [ -n "$(engine_pid)" ]; do
    if [ "$waited" -ge 60 ]; then
      say "dockerd ($pid) did not exit within 30 s of SIGTERM: killing it"
      kill -KILL "$pid" 2>/dev/null || true
      # The containerd it started would be left without it.
      [[ $containerd =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$containerd/comm" 2>/dev/null)" = containerd ] && { kill -KILL "$containerd" 2>/dev/null || true; }
      sleep 1
      break
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  say "dockerd ($pid) stopped"
}

case "$action" in
  start) start ;;
  stop) stop ;;
  status)
    pid=$(engine_pid)
    if [ -n "$pid" ] && answers; then
      echo "running: pid $pid, DOCKER_HOST=unix://$sock"
    elif [ -n "$pid" ]; then
      echo "starting or stuck: pid $pid does not answer on $sock"
      exit 1
    else
      echo "not running"
      exit 1
    fi
    ;;
  *) usage ;;
esac
