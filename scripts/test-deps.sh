#!/usr/bin/env bash
# Installs what `make test` needs on a fresh machine: Go modules (including the local-kms tool
# the awskms tests build and start on a loopback port) and iptables, which the partition tests
# use on loopback (they need root), and PostgreSQL, which the rotation tests start as a
# throwaway server (internal/pgtest; initdb and pg_ctl from /usr/lib/postgresql/*/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || { echo "Go is required (https://go.dev/dl/)" >&2; exit 1; }
go mod download
need=()
command -v iptables >/dev/null || need+=(iptables)
command -v curl >/dev/null || need+=(curl)
# The chaos suite (jepsen/) puts nodes in network namespaces: ip and tc, and nft for partitions.
command -v ip >/dev/null && command -v tc >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
if ! command -v initdb >/dev/null && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  need+=(postgresql)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${need[*]}: install them (root needed)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
