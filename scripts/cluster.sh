#!/usr/bin/env bash
# Starts, stops or shows a local three-node keyward cluster on loopback: TLS from a fresh
# cluster CA, encrypted gossip, one shared KEK file. Everything lives under $KEYWARD_RUN_DIR
# (default .run/cluster). Used by `make run` / `make stop`; tests and the chaos suite reuse
# the same layout.
#
#   scripts/cluster.sh start   # build if needed, create certs/keys once, start n1..n3
#   scripts/cluster.sh stop    # stop the nodes (data is kept; `start` resumes it)
#   scripts/cluster.sh status  # which nodes run
#   scripts/cluster.sh clean   # stop and delete everything
#
# KEYWARD_SERVER_ARGS adds flags to every node's `keyward server` (split on spaces).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
run="${KEYWARD_RUN_DIR:-$root/.run/cluster}"
bin="${KEYWARD_BIN:-$root/bin/keyward}"
nodes=(n1 n2 n3)
base="${KEYWARD_BASE_PORT:-8200}" # node i uses base+10i (API), +1 (Raft), +2 (gossip), +3 (pprof)
api_port() { echo $((base + 10 * $1)); }
raft_port() { echo $((base + 1 + 10 * $1)); }
gossip_port() { echo $((base + 2 + 10 * $1)); }

setup() {
  mkdir -p "$run" && chmod 700 "$run"
  if [ ! -f "$run/tls/ca.pem" ]; then
    "$bin" tls ca create --dir "$run/tls" --name ca >/dev/null
    for n in "${nodes[@]}"; do
      "$bin" tls cert create --ca "$run/tls/ca.pem" --ca-key "$run/tls/ca-key.pem" --dir "$run/tls" \
        --name "$n" --ip 127.0.0.1 --dns localhost >/dev/null
    done
  fi
  [ -f "$run/gossip.key" ] || (umask 077 && head -c 32 /dev/urandom | base64 > "$run/gossip.key")
}

start() {
  [ -x "$bin" ] || go build -o "$bin" ./cmd/keyward
  setup
  local join="" extra=()
  read -ra extra <<<"${KEYWARD_SERVER_ARGS:-}"
  for i in "${!nodes[@]}"; do join+="${join:+,}127.0.0.1:$(raft_port "$i")"; done
  for i in "${!nodes[@]}"; do
    local n="${nodes[$i]}"
    if [ -f "$run/$n.pid" ] && kill -0 "$(cat "$run/$n.pid")" 2>/dev/null; then continue; fi
    # The gossip key goes through the environment, not argv, so `ps` does not show it.
    KEYWARD_GOSSIP_KEY="$(cat "$run/gossip.key")" "$bin" server --node-id "$n" --data-dir "$run/$n" \
      --http-addr "127.0.0.1:$(api_port "$i")" --raft-addr "127.0.0.1:$(raft_port "$i")" \
      --gossip-addr "127.0.0.1:$(gossip_port "$i")" \
      --bootstrap-expect 3 --join "$join" \
      --tls-cert "$run/tls/$n.pem" --tls-key "$run/tls/$n-key.pem" --tls-ca "$run/tls/ca.pem" \
      --kek-file "$run/kek.key" ${KEYWARD_AUDIT_ROOT:+--audit-dir "$KEYWARD_AUDIT_ROOT/$n"} \
      ${KEYWARD_PPROF:+--pprof-addr 127.0.0.1:$((base + 3 + 10 * i))} "${extra[@]}" >>"$run/$n.log" 2>&1 &
    echo $! > "$run/$n.pid"
  done
  for i in "${!nodes[@]}"; do
    local url="https://127.0.0.1:$(api_port "$i")/v1/sys/health?standbyok"
    for _ in $(seq 1 150); do
      curl -sf --cacert "$run/tls/ca.pem" "$url" >/dev/null 2>&1 && break
      sleep 0.2
    done
    curl -sf --cacert "$run/tls/ca.pem" "$url" >/dev/null || { echo "node ${nodes[$i]} did not become ready; see $run/${nodes[$i]}.log" >&2; exit 1; }
  done
  if [ ! -s "$run/admin.token" ]; then
    local url="https://127.0.0.1:$(api_port 0)/v1/sys/init"
    (umask 077 && curl -sf --cacert "$run/tls/ca.pem" -X POST "$url" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p' > "$run/admin.token")
    [ -s "$run/admin.token" ] || { echo "init failed; see $run/n1.log" >&2; exit 1; }
  fi
  cat <<MSG
keyward: three-node cluster running (TLS on; logs and data in $run)

  n1  https://127.0.0.1:$(api_port 0)   n2  https://127.0.0.1:$(api_port 1)   n3  https://127.0.0.1:$(api_port 2)
  CA file: $run/tls/ca.pem

Try it:
  export PATH="$root/bin:\$PATH"
  export KEYWARD_ADDR=https://127.0.0.1:$(api_port 0) KEYWARD_CACERT=$run/tls/ca.pem
  export KEYWARD_TOKEN=\$(cat $run/admin.token)   # the admin token from init
  printf 's3cr3t' | keyward secret put prod/payments/db-password
  keyward secret get prod/payments/db-password
  keyward secret get prod/payments/db-password --addr https://127.0.0.1:$(api_port 2)   # any node answers
  keyward cluster peers
  keyward cluster status

Stop it with: make stop
MSG
}

stop() {
  for n in "${nodes[@]}"; do
    [ -f "$run/$n.pid" ] || continue
    pid="$(cat "$run/$n.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$run/$n.pid"
  done
  echo "keyward: cluster stopped (data kept in $run)"
}

status() {
  for n in "${nodes[@]}"; do
    if [ -f "$run/$n.pid" ] && kill -0 "$(cat "$run/$n.pid")" 2>/dev/null; then echo "$n running (pid $(cat "$run/$n.pid"))"; else echo "$n stopped"; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  clean) stop; rm -rf "$run" ;;
  *) echo "usage: $0 start|stop|status|clean" >&2; exit 2 ;;
esac
