#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, without containers: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok, which runs fake GPU nodes (hack/cluster/nodes.yaml)
# and moves the pods bound to them through their lifecycle (hack/cluster/kwok-stages.yaml).
#
#   bash hack/cluster.sh up          start it (a fast no-op when it is already up and healthy)
#   bash hack/cluster.sh down        stop the processes it started (by pid) and remove its state
#   bash hack/cluster.sh status      report each component; exit status 0 only when healthy
#   bash hack/cluster.sh kubeconfig  print the admin kubeconfig's path
#   bash hack/cluster.sh lockfile    print the lock file that serialises up and down on this folder
#
# Environment:
#   TELECHAT_CLUSTER_DIR   state folder (default <repo>/.cluster): kubeconfig, ports.env, pids/, logs/,
#                          etcd/, pki/. Separate folders give separate clusters.
#   TELECHAT_TOOLS_DIR     a folder to take binaries from before .tools/bin (see hack/tools.sh)
#   TELECHAT_PORT_<NAME>   fix a port instead of picking a free one: ETCD, ETCD_PEER, APISERVER,
#                          CONTROLLER_MANAGER, SCHEDULER, KWOK
#   TELECHAT_CLUSTER_TIMEOUT  seconds each step may take before `up` gives up (default 120)
#   TELECHAT_CLUSTER_LOCKED=1 the caller already holds the lock file (flock), e.g. tests/conftest.py
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
dir=$(realpath -m "${TELECHAT_CLUSTER_DIR:-$root/.cluster}")
timeout=${TELECHAT_CLUSTER_TIMEOUT:-120}

# Start order; `down` stops them in reverse.
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubectl)
marker=$dir/.telechat-cluster
kubeconfig=$dir/kubeconfig
pki=$dir/pki
service_cidr=10.96.0.0/16
pod_cidr=10.244.0.0/16

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }

now() { printf '%s' "${EPOCHREALTIME/./}"; }  # microseconds
elapsed() { local us=$(( $(now) - $1 )); printf '%d.%01d s' $((us / 1000000)) $((us % 1000000 / 100000)); }

bin_path() {
  if [ -n "${TELECHAT_TOOLS_DIR:-}" ] && [ -x "$TELECHAT_TOOLS_DIR/$1" ]; then
    printf '%s' "$TELECHAT_TOOLS_DIR/$1"
  elif [ -x "$root/.tools/bin/$1" ]; then
    printf '%s' "$root/.tools/bin/$1"
  else
    return 1
  fi
}

check_tools() {
  local b missing=()
  for b in "${binaries[@]}"; do
    bin_path "$b" >/dev/null || missing+=("$b")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    die "missing binaries: ${missing[*]} (looked in ${TELECHAT_TOOLS_DIR:+$TELECHAT_TOOLS_DIR and }$root/.tools/bin).
  Build or link them with \`make tools\`, or put them in one folder and set TELECHAT_TOOLS_DIR=/that/folder."
  fi
  for b in openssl python3 curl setsid flock; do
    command -v "$b" >/dev/null 2>&1 || die "missing command on PATH: $b"
  done
}

kubectl() { "$(bin_path kubectl)" --kubeconfig "$kubeconfig" "$@"; }

# --- processes -------------------------------------------------------------------------------------

pid_of() { [ -f "$dir/pids/$1.pid" ] && cat "$dir/pids/$1.pid"; }

# A pid counts as ours only while it runs and its command line names a path in this cluster folder
# (pids get reused; zombies waiting for init to reap them count as stopped).
is_ours() {
  local pid=$1 state
  [ -r "/proc/$pid/cmdline" ] || return 1
  state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null) || return 1
  [ "$state" != Z ] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qF -- "$dir/"
}

alive() { local pid; pid=$(pid_of "$1") && is_ours "$pid"; }

start() {
  local name=$1; shift
  # setsid: the component outlives this script and ignores the caller's terminal signals.
  # Not a process group leader here, so setsid execs in place and $! is the component's pid.
  # 9>&-: the component must not inherit the lock's descriptor, or it would hold the lock for its lifetime.
  setsid "$@" 9>&- >"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/$name.pid"
}

stop_one() {
  local name=$1 pid waited=0
  pid=$(pid_of "$name") || return 0
  if is_ours "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    while is_ours "$pid" && [ $waited -lt 100 ]; do sleep 0.1; waited=$((waited + 1)); done
    if is_ours "$pid"; then
      log "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      waited=0
      while is_ours "$pid" && [ $waited -lt 50 ]; do sleep 0.1; waited=$((waited + 1)); done
      is_ours "$pid" && log "WARNING: $name (pid $pid) is still running"
    fi
  fi
  rm -f "$dir/pids/$name.pid"
}

stop_all() {
  local i
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do stop_one "${components[i]}"; done
}

# --- failure reporting -------------------------------------------------------------------------------

# fail <component> <message>: show the component's log, stop what was started, keep the logs.
fail() {
  trap - ERR
  local name=$1 msg=$2 logf="$dir/logs/$1.log"
  printf '[cluster] ERROR: %s: %s\n' "$name" "$msg" >&2
  if [ -f "$logf" ]; then
    printf '[cluster] last lines of %s:\n' "$logf" >&2
    tail -n 25 "$logf" | sed 's/^/    /' >&2
    if grep -qiE 'address already in use|bind: address' "$logf"; then
      printf '[cluster] %s could not bind its port (see ports in %s/ports.env); another process holds it.\n' \
        "$name" "$dir" >&2
    fi
  fi
  log "stopping what was started; logs stay in $dir/logs (\`bash hack/cluster.sh down\` removes them)"
  stop_all
  rm -f "$dir/ready"
  exit 1
}

# wait_for <component> <what> <command...>: poll until the command succeeds, the component dies or time is up.
wait_for() {
  local name=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    alive "$name" || fail "$name" "exited while waiting for $what"
    [ $SECONDS -lt $deadline ] || fail "$name" "no $what after ${timeout} s"
    sleep 0.2
  done
}

# --- health ----------------------------------------------------------------------------------------------

# shellcheck source=/dev/null
load_ports() { [ -f "$dir/ports.env" ] && source "$dir/ports.env"; }

https_ok() { curl -sf --max-time 3 -k "https://127.0.0.1:$1$2"; }
apiserver_ready() {
  curl -sf --max-time 3 -k -H "Authorization: Bearer $(cat "$pki/admin.token")" \
    "https://127.0.0.1:$APISERVER_PORT/readyz" | grep -qx ok
}
etcd_ok() { curl -sf --max-time 3 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
kwok_ok() { curl -sf --max-time 3 "http://127.0.0.1:$KWOK_PORT/healthz" | grep -qx ok; }

healthy() {
  local c
  [ -f "$dir/ready" ] && load_ports || return 1
  for c in "${components[@]}"; do alive "$c" || return 1; done
  apiserver_ready
}

# --- up ----------------------------------------------------------------------------------------------

pick_ports() {
  python3 - "$@" <<'PY'
import os
import socket
import sys

held = []
for name in sys.argv[1:]:
    var = "TELECHAT_PORT_" + name
    wanted = os.environ.get(var, "")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", int(wanted) if wanted else 0))
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not a port number"
        sys.exit(f"[cluster] ERROR: port {wanted} for {name.lower()} ({var}) cannot be used on 127.0.0.1: {reason}")
    held.append(sock)  # keep every socket bound until all are chosen, so no two names get one port
    print(f"{name}_PORT={sock.getsockname()[1]}")
PY
}

make_pki() {
  mkdir -p "$pki/apiserver" "$pki/kube-controller-manager" "$pki/kube-scheduler"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  openssl rand -hex 24 >"$pki/admin.token"
  printf '%s,admin,admin,"system:masters"\n' "$(cat "$pki/admin.token")" >"$pki/tokens.csv"
  chmod 600 "$pki/sa.key" "$pki/admin.token" "$pki/tokens.csv"
}

write_kubeconfig() {
  local ca
  ca=$(base64 -w0 <"$pki/apiserver/apiserver.crt")
  (umask 077 && : >"$kubeconfig.tmp")
  cat >"$kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: telechat-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $ca
users:
- name: admin
  user:
    token: $(cat "$pki/admin.token")
contexts:
- name: telechat-local
  context:
    cluster: telechat-local
    user: admin
    namespace: default
current-context: telechat-local
EOF
  mv "$kubeconfig.tmp" "$kubeconfig"
}

nodes_ready() {
  local out
  out=$(kubectl get nodes -o \
    'jsonpath={range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.spec.taints}{"\n"}{end}')
  [ "$(grep -c . <<<"$out")" -ge 4 ] || return 1
  # Ready, and the node lifecycle controller has lifted the not-ready taint, so pods can land at once.
  ! grep -v '^[^ ]* True $' <<<"$out" | grep -q .
}

create_nodes() {
  kubectl create -f "$here/cluster/nodes.yaml" >/dev/null
  # Status is kept on create today; should a release drop it, put it back through the subresource.
  if [ -z "$(kubectl get node gpu-h100-0 -o 'jsonpath={.status.capacity.nvidia\.com/gpu}')" ]; then
    log "node create dropped status.capacity; replacing the status subresource"
    kubectl replace --subresource=status -f "$here/cluster/nodes.yaml" >/dev/null
  fi
}

cmd_up() {
  local t0 t
  t0=$(now)
  if [ -d "$dir" ]; then
    if healthy; then
      log "already up and healthy ($(elapsed "$t0") to check): KUBECONFIG=$kubeconfig"
      return 0
    fi
    log "found a cluster in $dir that is not healthy; cleaning it and starting again"
    cmd_down_locked
  fi
  check_tools
  # From here on an unexpected failure stops whatever was started (fail keeps the logs).
  set -E
  trap 'fail cluster.sh "unexpected failure at hack/cluster.sh line $LINENO (see the messages above)"' ERR

  mkdir -p "$dir/pids" "$dir/logs" "$dir/etcd"
  chmod 700 "$dir/etcd"
  : >"$marker"
  pick_ports ETCD ETCD_PEER APISERVER CONTROLLER_MANAGER SCHEDULER KWOK >"$dir/ports.env" || {
    rm -rf "$dir"
    exit 1
  }
  load_ports
  make_pki

  t=$(now)
  start etcd "$(bin_path etcd)" --name=telechat-local --data-dir="$dir/etcd" --unsafe-no-fsync \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="telechat-local=http://127.0.0.1:$ETCD_PEER_PORT" \
    --log-level=warn
  wait_for etcd "/health" etcd_ok
  log "etcd ready on 127.0.0.1:$ETCD_PORT ($(elapsed "$t"))"

  t=$(now)
  start kube-apiserver "$(bin_path kube-apiserver)" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --cert-dir="$pki/apiserver" \
    --token-auth-file="$pki/tokens.csv" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range="$service_cidr" \
    --allow-privileged=true \
    --disable-admission-plugins=ServiceAccount \
    --endpoint-reconciler-type=none \
    --profiling=false
  wait_for kube-apiserver "/readyz" apiserver_ready
  write_kubeconfig
  log "kube-apiserver ready on https://127.0.0.1:$APISERVER_PORT ($(elapsed "$t"))"

  t=$(now)
  # No --authentication/authorization-kubeconfig: this apiserver has no client CA, so the
  # extension-apiserver-authentication ConfigMap they read never appears; /healthz is served without them.
  start kube-controller-manager "$(bin_path kube-controller-manager)" \
    --kubeconfig="$kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$CONTROLLER_MANAGER_PORT" \
    --cert-dir="$pki/kube-controller-manager" \
    --leader-elect=false --controllers='*' --cluster-name=telechat-local \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/apiserver/apiserver.crt" \
    --kube-api-qps=100 --kube-api-burst=200 \
    --profiling=false
  start kube-scheduler "$(bin_path kube-scheduler)" \
    --kubeconfig="$kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
    --cert-dir="$pki/kube-scheduler" \
    --leader-elect=false
  start kwok "$(bin_path kwok)" \
    --kubeconfig="$kubeconfig" --config="$here/cluster/kwok-stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds=40 --cidr="$pod_cidr" \
    --server-address="127.0.0.1:$KWOK_PORT"
  create_nodes || fail kube-apiserver "creating the nodes in $here/cluster/nodes.yaml failed"
  wait_for kube-controller-manager "/healthz" https_ok "$CONTROLLER_MANAGER_PORT" /healthz
  wait_for kube-scheduler "/healthz" https_ok "$SCHEDULER_PORT" /healthz
  wait_for kwok "/healthz" kwok_ok
  log "controller-manager, scheduler and kwok healthy ($(elapsed "$t"))"

  t=$(now)
  wait_for kwok "4 Ready nodes without taints" nodes_ready
  # The service-account controller making the default ServiceAccount shows the controllers run.
  wait_for kube-controller-manager "the default ServiceAccount" kubectl get serviceaccount default -n default
  log "nodes ready ($(elapsed "$t")):"
  local columns='NAME:.metadata.name,GPUS:.status.allocatable.nvidia\.com/gpu,CPU:.status.allocatable.cpu'
  columns+=',MEMORY:.status.allocatable.memory,PRODUCT:.metadata.labels.nvidia\.com/gpu\.product'
  kubectl get nodes -o custom-columns="$columns" | sed 's/^/    /' >&2
  : >"$dir/ready"
  trap - ERR
  log "up in $(elapsed "$t0"). export KUBECONFIG=$kubeconfig"
}

# --- down / status ---------------------------------------------------------------------------------------

cmd_down_locked() {
  if [ ! -d "$dir" ]; then
    return 0
  fi
  [ -f "$marker" ] || die "$dir exists but was not made by this script (no $marker); not touching it"
  stop_all
  rm -rf "$dir"
}

cmd_down() {
  local t0
  t0=$(now)
  if [ ! -d "$dir" ]; then
    log "nothing to stop: $dir does not exist"
    return 0
  fi
  cmd_down_locked
  log "stopped and removed $dir ($(elapsed "$t0"))"
}

cmd_status() {
  local c pid state rc=0
  if [ ! -d "$dir" ]; then
    log "down: $dir does not exist"
    return 1
  fi
  load_ports || true
  for c in "${components[@]}"; do
    pid=$(pid_of "$c") || pid=-
    if alive "$c"; then state=running; else state=DEAD; rc=1; fi
    printf '  %-24s pid %-8s %s\n' "$c" "$pid" "$state" >&2
  done
  if [ -f "$dir/ready" ]; then state=complete; else state=INCOMPLETE; rc=1; fi
  printf '  %-24s %s\n' "startup" "$state" >&2
  if [ $rc -eq 0 ] && apiserver_ready; then
    printf '  %-24s https://127.0.0.1:%s ready\n' "apiserver" "$APISERVER_PORT" >&2
    kubectl get nodes 2>&1 | sed 's/^/    /' >&2 || true
    log "healthy. export KUBECONFIG=$kubeconfig"
  else
    log "not healthy; \`bash hack/cluster.sh up\` cleans and restarts it. Logs: $dir/logs"
    rc=1
  fi
  return $rc
}

lock=${TMPDIR:-/tmp}/telechat-cluster-$(printf '%s' "$dir" | sha1sum | cut -c1-12).lock

# Components started by the first version of this script inherited the lock's descriptor (fd 9) and so
# hold the lock while they run; such a cluster must still be reusable and stoppable.
lock_held_by_components() {
  local c pid
  for c in "${components[@]}"; do
    pid=$(pid_of "$c") || continue
    is_ours "$pid" && [ "$(readlink "/proc/$pid/fd/9" 2>/dev/null)" = "$lock" ] && return 0
  done
  return 1
}

# Serialise up and down on one cluster folder (tests and the demo may start it at the same time).
with_lock() {
  if [ "${TELECHAT_CLUSTER_LOCKED:-}" = 1 ]; then
    "$@"
    return
  fi
  exec 9>"$lock"
  if ! flock -w 1 9; then
    if lock_held_by_components; then
      log "the lock is held by this cluster's own processes (started by an older hack/cluster.sh); going on"
    else
      log "waiting for another hack/cluster.sh working on $dir (lock $lock)"
      flock -w 600 9 || die "another hack/cluster.sh has held $lock for over 600 s"
    fi
  fi
  "$@"
}

case "${1:-}" in
  up) with_lock cmd_up ;;
  down) with_lock cmd_down ;;
  status) cmd_status ;;
  kubeconfig) printf '%s\n' "$kubeconfig" ;;
  lockfile) printf '%s\n' "$lock" ;;
  *)
    printf 'usage: %s up|down|status|kubeconfig|lockfile\n' "$0" >&2
    exit 2
    ;;
esac
