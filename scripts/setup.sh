#!/usr/bin/env bash
# make setup: install everything mtd.containers needs on a fresh Debian 12 machine (as root).
# Idempotent and quiet when already done. Logs go to .build/setup-*.log; a failing step prints its log.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$ROOT/.build"
mkdir -p "$BUILD"
say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }
run_logged() { # name cmd...
  local log="$BUILD/setup-$1.log"; shift
  if ! "$@" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "step failed (full log: $log)"
  fi
}

[ "$(id -u)" = 0 ] || die "run as root (the lab starts engines, sshd and mounts)"
grep -q 'VERSION_ID="12"' /etc/os-release || say "warning: tested on Debian 12 only"

# --- Debian packages -------------------------------------------------------------------------------
APT_PKGS=(docker.io docker-registry openssh-server openssh-client iproute2 busybox-static debootstrap
  util-linux procps rsync xz-utils zstd curl ca-certificates git make gcc libc6-dev
  libseccomp-dev python3 python3-venv shellcheck
  # CRIU build dependencies (bookworm)
  build-essential libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev protobuf-compiler libnl-3-dev
  libnet1-dev libcap-dev pkg-config python3-protobuf libbsd-dev libgnutls28-dev libnftables-dev
  uuid-dev libaio-dev libdrm-dev iptables)
# headless rendering of the run report in tests/integration/test_report.py (chromium --headless)
APT_PKGS+=(chromium)
# the lab's virtual machine host (lab/vm.sh): TCG emulator, qcow2 overlays, ssh through its namespace
APT_PKGS+=(qemu-system-x86 qemu-utils socat e2fsprogs)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  run_logged apt-update apt-get update -q
  DEBIAN_FRONTEND=noninteractive run_logged apt-install \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- CRIU >= 4.1 from Debian trixie's source package -----------------------------------------------
CRIU_VERSION=4.1.1
CRIU_MD5=6de15517e9b86997b34f67d99dced2a5
CRIU_SIZE=1021136
criu_ok() {
  [ -x /usr/local/sbin/criu ] && /usr/local/sbin/criu --version 2>/dev/null | grep -q "Version: $CRIU_VERSION" \
    && /usr/local/sbin/criu check 2>&1 | grep -q 'Looks good'
}
if ! criu_ok; then
  say "building CRIU $CRIU_VERSION from Debian trixie's source package"
  src_list=/etc/apt/sources.list.d/mtd-trixie-src.sources
  if [ ! -f "$src_list" ]; then
    cat >"$src_list" <<'SRC'
# Added by mtd.containers setup: source packages only (CRIU >= 4.1 is built from trixie's source).
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    run_logged apt-update-src apt-get update -q
  fi
  work="$BUILD/criu-src"
  mkdir -p "$work"
  tarball="$work/criu_${CRIU_VERSION}.orig.tar.xz"
  if [ ! -f "$tarball" ]; then
    # The .dsc/.debian.tar.xz may answer 404 on the mirror; the orig tarball arrives anyway: check it.
    (cd "$work" && apt-get source --download-only criu >"$BUILD/setup-criu-download.log" 2>&1) || true
  fi
  [ -f "$tarball" ] || { tail -n 20 "$BUILD/setup-criu-download.log" >&2; die "could not download criu_${CRIU_VERSION}.orig.tar.xz"; }
  [ "$(stat -c %s "$tarball")" = "$CRIU_SIZE" ] || die "criu tarball has the wrong size"
  echo "$CRIU_MD5  $tarball" | md5sum -c --quiet - || die "criu tarball checksum mismatch"
  rm -rf "$work/criu-$CRIU_VERSION"
  tar -C "$work" -xJf "$tarball"
  run_logged criu-build make -C "$work/criu-$CRIU_VERSION" -j"$(nproc)" criu
  install -m 0755 "$work/criu-$CRIU_VERSION/criu/criu" /usr/local/sbin/criu
  if ! /usr/local/sbin/criu check >"$BUILD/setup-criu-check.log" 2>&1 || ! grep -q 'Looks good' "$BUILD/setup-criu-check.log"; then
    cat "$BUILD/setup-criu-check.log" >&2
    die "criu check did not say 'Looks good'"
  fi
  say "CRIU: $(/usr/local/sbin/criu --version | head -1) — criu check: Looks good"
fi

# --- Python virtualenvs: one per requirements file, rebuilt only when that file changed ----------------
# ensure_venv DIR REQUIREMENTS BINARY LOG [pip-upgrade]: DIR is (re)made when DIR/bin/BINARY is missing or
# the sha256 of REQUIREMENTS differs from the stamp of the last install. Debian's interpreter by default,
# whatever else is first on PATH (a pyenv shim would give the venv a foreign home); --clear so that a venv
# made by another interpreter is rebuilt, not patched.
ensure_venv() {
  local dir="$ROOT/$1" req="$ROOT/$2" binary="$3" log="$4" upgrade="${5:-}"
  local stamp="$dir/.requirements.sha256" want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ -x "$dir/bin/$binary" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  say "creating virtualenv $1 from $2"
  run_logged "$log" "${PYTHON:-/usr/bin/python3}" -m venv --clear "$dir"
  if [ -n "$upgrade" ]; then
    run_logged "$log-pip-upgrade" "$dir/bin/pip" install -q -U pip
  fi
  run_logged "$log-pip-install" "$dir/bin/pip" install -q -r "$req"
  echo "$want" >"$stamp"
}

# controller + tests
ensure_venv .venv requirements.txt python venv pip-upgrade
# documentation tools (antsibull-docs wants another docutils than .venv)
ensure_venv .venv-docs requirements-docs.txt python venv-docs

# --- ansible-rulebook (the event-driven trigger, extensions/eda): Java 17 and its own virtualenv ------
# Its dependencies (ansible-runner, aiohttp, drools_jpy, psycopg ...) stay out of .venv; it runs the
# playbooks with .venv's ansible-playbook (the caller puts .venv/bin on PATH).
if ! dpkg-query -W -f='${Status}' openjdk-17-jre-headless 2>/dev/null | grep -q 'install ok installed'; then
  say "installing Java 17 (openjdk-17-jre-headless) for ansible-rulebook"
  run_logged apt-update-eda apt-get update -q
  DEBIAN_FRONTEND=noninteractive run_logged apt-install-eda \
    apt-get install -y -q --no-install-recommends openjdk-17-jre-headless
fi
ensure_venv .venv-eda requirements-eda.txt ansible-rulebook venv-eda

# --- the collection, visible to ansible under its FQCN ----------------------------------------------
mkdir -p "$BUILD/collections/ansible_collections/mtd"
ln -sfn ../../../.. "$BUILD/collections/ansible_collections/mtd/containers"

# --- debootstrap'd Debian with Python (rootfs tarball, turned into an image at lab-up) --------------
DEB_TAR=/var/cache/mtd-lab/debian-python.tar
if [ ! -s "$DEB_TAR" ]; then
  say "debootstrap of Debian bookworm (minbase + python3) for the Python base image"
  mkdir -p /var/cache/mtd-lab
  rootfs="$BUILD/debian-rootfs"
  rm -rf "$rootfs"
  run_logged debootstrap debootstrap --variant=minbase --include=python3-minimal bookworm "$rootfs" http://deb.debian.org/debian
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" --numeric-owner -cf "$DEB_TAR.tmp" .
  mv "$DEB_TAR.tmp" "$DEB_TAR"
  rm -rf "$rootfs"
fi
say "ok"
