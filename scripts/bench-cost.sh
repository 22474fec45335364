#!/usr/bin/env bash
# What authentication and audit cost: `keyward bench` against a fresh three-node cluster of this
# tree and of a reference commit that predates both (issue 4, point 7), in alternating rounds,
# then the median of each and their ratio. The same bench client (this tree's) drives both.
#
#   scripts/bench-cost.sh [ROUNDS]      # default 4 rounds
#
# Environment: REF (reference commit, default e4f16fe: the last one without auth and audit),
# WORKLOAD (stale | read | write | mix, default stale), CONC (clients, default 64),
# DUR (measured time per run, default 10s), KEYWARD_BASE_PORT (default 8700),
# AUDIT_DIR (put this tree's audit logs there instead of the data directory, e.g. a tmpfs
# to see the cost without disk flushes; for measurement only), NEW_ARGS (extra `keyward
# server` flags for this tree's nodes only, e.g. "--audit-group-delay 2ms").
#
# Use a quiet machine; on a small VM one run can differ from the next by 20%, so read the
# medians of several rounds, not one run.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
rounds="${1:-4}"
ref="${REF:-e4f16fe}"
workload="${WORKLOAD:-stale}"
conc="${CONC:-64}"
dur="${DUR:-10s}"
port="${KEYWARD_BASE_PORT:-8700}"
work="$root/.run/bench-cost"
mkdir -p "$work"

go build -o "$work/keyward-new" ./cmd/keyward
if [ ! -x "$work/keyward-ref-$ref" ]; then
  rm -rf "$work/ref-src"
  git worktree add --detach "$work/ref-src" "$ref" >/dev/null
  (cd "$work/ref-src" && go build -o "$work/keyward-ref-$ref" ./cmd/keyward)
  git worktree remove --force "$work/ref-src"
fi

case "$workload" in
  stale) mix=(--writes 0 --reads 0 --stale-reads 100) ;;
  read) mix=(--writes 0 --reads 100 --stale-reads 0) ;;
  write) mix=(--writes 100 --reads 0 --stale-reads 0) ;;
  mix) mix=() ;;
  *) echo "WORKLOAD must be stale, read, write or mix" >&2; exit 2 ;;
esac

cluster() { # cluster VARIANT start|stop
  local v=$1
  KEYWARD_RUN_DIR="$work/run-$v" KEYWARD_BIN="$work/keyward-$v" KEYWARD_BASE_PORT="$port" \
    KEYWARD_AUDIT_ROOT="$([ "$v" = new ] && echo "${AUDIT_DIR:-}")" \
    KEYWARD_SERVER_ARGS="$([ "$v" = new ] && echo "${NEW_ARGS:-}")" scripts/cluster.sh "$2" >/dev/null 2>&1
}

# run VARIANT: one measured run on a fresh cluster; prints ops/s.
run() {
  local v=$1 run="$work/run-$1"
  cluster "$v" stop || true
  rm -rf "$run" "${AUDIT_DIR:-/nonexistent}"
  cluster "$v" start
  local token=""
  [ -s "$run/admin.token" ] && token=$(cat "$run/admin.token")
  local addrs="https://127.0.0.1:$port,https://127.0.0.1:$((port + 10)),https://127.0.0.1:$((port + 20))"
  "$work/keyward-new" bench --addr "$addrs" --ca-cert "$run/tls/ca.pem" --token "$token" \
    --duration "$dur" --warmup 2s --keys 1000 --concurrency "$conc" "${mix[@]}" 2>>"$work/bench.log" |
    awk '$1 == "total" { print $3 }'
  cluster "$v" stop || true
}

trap 'cluster new stop || true; cluster "ref-$ref" stop || true' EXIT
results="$work/results.txt"
: >"$results"
for r in $(seq "$rounds"); do
  for v in "ref-$ref" new; do
    ops=$(run "$v")
    echo "round $r  $v  ${ops:-failed} ops/s" | tee -a "$results"
  done
done
awk -v ref="ref-$ref" '
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
  }
  $4 ~ /^[0-9.]+$/ { if ($3 == ref) r[++nr] = $4; else w[++nw] = $4 }
  END {
    if (!nr || !nw) { print "no complete rounds"; exit 1 }
    mr = median(r, nr); mw = median(w, nw)
    printf "median %s: %.0f ops/s   this tree: %.0f ops/s   difference: %+.1f%%\n", ref, mr, mw, (mw / mr - 1) * 100
  }' "$results"
