#!/usr/bin/env bash
# Installs what `make test` needs on a fresh machine. Today that is only Go modules (including
# the local-kms tool that the awskms tests build and start on a loopback port).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || { echo "Go is required (https://go.dev/dl/)" >&2; exit 1; }
go mod download
