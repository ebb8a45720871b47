#!/usr/bin/env bash
# Install every Debian package Barque needs to build, test and run.
# Idempotent: safe to run again; apt-get skips what is already installed.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: must run as root (it calls apt-get)" >&2
    exit 1
fi

packages=(
    # toolchain
    build-essential cmake pkg-config clang libclang-rt-14-dev
    # libraries
    libpq-dev libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
    liblmdb-dev libsodium-dev libzstd-dev liblz4-dev libinih-dev
    libjansson-dev libcmocka-dev libssl-dev
    # the server every test runs against, and the tools tests and benches use
    postgresql-15 postgresql-client-15 postgresql-contrib
    iproute2 procps util-linux python3 lmdb-utils zstd
    # what tests/bench/backup.sh compares Barque with (pg_basebackup is in postgresql-15)
    pgbackrest
    # what tests/bench/replicate.sh compares geo copies with (pgBackRest cannot copy between
    # repositories; Barman's passive node copies with rsync)
    rsync
    # /usr/bin/promtool: metrics_test runs `promtool check metrics` on barque metrics' output
    prometheus
)

export DEBIAN_FRONTEND=noninteractive
had_prometheus=0
dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q "ok installed" && had_prometheus=1
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"
# Debian's prometheus package (there is no promtool-only one) enables a Prometheus server on
# :9090; Barque only wants promtool, so when this script installed it on a host run by
# systemd, the server is stopped again (a Prometheus the host already had is left alone).
if ((!had_prometheus)) && [[ -d /run/systemd/system ]]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
