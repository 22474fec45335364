#!/usr/bin/env bash
# Starts one keyward node in dev mode with embedded defaults and prints what to type next.
set -euo pipefail
cd "$(dirname "$0")/.."
addr="${KEYWARD_HTTP_ADDR:-127.0.0.1:8200}"
cat <<MSG
Starting keyward in dev mode on http://$addr (Ctrl-C stops it; data lives in a temp dir).

In another shell:
    export PATH="$PWD/bin:\$PATH"
    export KEYWARD_ADDR=http://$addr
    export KEYWARD_TOKEN=${KEYWARD_DEV_ROOT_TOKEN:-root}
    printf 's3cr3t' | keyward secret put prod/payments/db-password
    keyward secret get prod/payments/db-password
    printf 'n3w' | keyward secret put prod/payments/db-password
    keyward secret get prod/payments/db-password --state PREVIOUS
    keyward secret versions prod/payments/db-password

MSG
exec bin/keyward server --dev --http-addr "$addr" --dev-root-token "${KEYWARD_DEV_ROOT_TOKEN:-root}"
