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
)

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"
