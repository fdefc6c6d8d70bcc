#!/usr/bin/env bash
# Lab hosts with their own userland: each runs from a Debian root filesystem made with debootstrap from
# Debian's archive (its own docker.io, containerd, runc, criu, python3, sshd and /etc/os-release), in its own
# mount+UTS namespace that pivot_roots into that rootfs. Next to the four hosts of lab.sh (which share the
# machine's userland); the same SSH key, user and facts scheme; a separate inventory (group "varied").
#
#   lab/debhost.sh build | up | down | status
#
# The rootfs of each suite is built once and cached under $CACHE/rootfs/<suite>-<key> (key: a hash of the
# suite, the package list and the build recipe); a host runs on an overlay of it, so nothing it writes
# reaches the cache and a cached bring-up copies nothing. lab.sh up/down/status call this script unless
# MTD_LAB_VARIED=0.
set -euo pipefail
# The daemons this script starts (engines, registry, sshd, qemu, forwarders) must not inherit a descriptor the
# caller holds, above all the lab lock of `flock /tmp/mtd-lab.lock lab/lab.sh up`: a daemon holding it keeps
# the lock taken after the caller is gone. Close every inherited descriptor above 2 (255 is bash's own).
for _fd in "/proc/$$/fd/"*; do
  _fd=${_fd##*/}
  if [ "$_fd" -gt 2 ] && [ "$_fd" -ne 255 ]; then eval "exec $_fd>&-" 2>/dev/null || true; fi
done
unset _fd
VARIED_DIR="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lab/lab.sh
MTD_LAB_SOURCED=1 source "$VARIED_DIR/lab.sh"
MIRROR="${MTD_LAB_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="docker.io docker-cli containerd runc criu python3 openssh-server openssl zstd iproute2 procps"
RECIPE_VERSION=1   # bump when build_rootfs changes what it puts into a rootfs

varied_hosts() { grep -v '^#' "$VARIED_DIR/hosts-varied.tsv" | grep -v '^[[:space:]]*$'; }

rootfs_key() { # suite
  printf '%s\n%s\n%s\n%s\n' "$1" "$PACKAGES" "$MIRROR" "$RECIPE_VERSION" | sha256sum | cut -c1-16
}
rootfs_dir() { echo "$CACHE/rootfs/$1-$(rootfs_key "$1")"; }

# Runs inside `unshare --mount` (called by build_rootfs): the chroot's /proc and /dev vanish with it.
chroot_install() {
  local root=$1
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs tmpfs "$root/run"
  # no service may start while packages are installed (there is no init in a lab host anyway)
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 0755 "$root/usr/sbin/policy-rc.d"
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q --no-install-recommends $PACKAGES
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/etc/ssh/ssh_host_*
}

build_rootfs() { # suite
  local suite=$1 dir tmp
  dir=$(rootfs_dir "$suite")
  [ -f "$dir/.mtd-lab-complete" ] && return 0
  say "building the Debian $suite rootfs ($PACKAGES) from $MIRROR into $dir"
  local start=$SECONDS
  mkdir -p "$CACHE/rootfs"
  tmp="$dir.tmp"
  rm -rf "$tmp"
  debootstrap --variant=minbase "$suite" "$tmp" "$MIRROR" >"$CACHE/rootfs/$suite.build.log" 2>&1 ||
    { tail -n 20 "$CACHE/rootfs/$suite.build.log" >&2; die "debootstrap $suite failed"; }
  cp /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || true
  unshare --mount --propagation private -- "$VARIED_DIR/debhost.sh" __chroot_install "$tmp" \
    >>"$CACHE/rootfs/$suite.build.log" 2>&1 ||
    { tail -n 20 "$CACHE/rootfs/$suite.build.log" >&2; die "installing packages into the $suite rootfs failed"; }
  # old caches of this suite (another package list or recipe) go
  local old
  for old in "$CACHE/rootfs/$suite"-*; do
    [ "$old" = "$tmp" ] || [ "$old" = "$dir" ] || [ ! -d "$old" ] || rm -rf "$old"
  done
  touch "$tmp/.mtd-lab-complete"
  mv "$tmp" "$dir"
  say "rootfs $suite built in $((SECONDS - start)) s ($(du -sm "$dir" | cut -f1) MB)"
}

# ---------------------------------------------------------------------------------------------------
# Runs INSIDE a new mount+UTS namespace (called through unshare by start_varied).
varied_init() {
  local name=$1 addr=$2 suite=$3 H="$STATE/$1" R="$STATE/$1/root"
  hostname "$name"
  mount -t overlay "overlay-$name" -o "lowerdir=$(rootfs_dir "$suite"),upperdir=$H/upper,workdir=$H/work" "$R"
  mount -t proc proc "$R/proc"
  mount --rbind /sys "$R/sys"           # the machine's cgroup hierarchies come with it
  mount --rbind /dev "$R/dev"
  mount -t tmpfs -o mode=1777,size=1g "shm-$name" "$R/dev/shm"
  mount -t tmpfs -o mode=0755,size=256m "tmpfs-$name" "$R/run"
  mkdir -p "$R/run/sshd" "$R/run/lock" "$R$H" "$R$STATE/ssh"
  # Docker's data root and the collection's state sit on the machine's filesystem (overlay2 cannot
  # stack on the rootfs overlay); the host directory holds the engine's second socket and the logs.
  mount --bind "$H/var-lib-docker" "$R/var/lib/docker"
  mount --bind "$H" "$R$H"
  mount --bind "$STATE/ssh" "$R$STATE/ssh"
  echo "$name" >"$R/run/lab-host"
  mkdir -p "$R/.old-root"
  cd "$R"
  pivot_root . .old-root
  cd /
  umount -l /.old-root
  rmdir /.old-root
  export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  setsid dockerd --config-file /etc/docker/daemon.json >"$H/dockerd.log" 2>&1 </dev/null &
  echo $! >"$H/dockerd.pid"
  exec /usr/sbin/sshd -D -f /etc/ssh/sshd_config.mtd-lab -E "$H/sshd.log"
}

# The host's own files go into the overlay's upper directory (its /etc as seen from inside).
write_varied_files() {
  local name=$1 addr=$2 suite=$3 cpus=$4 mem=$5 units=$6 H="$STATE/$1"
  local U="$H/upper"
  mkdir -p "$H"/{work,root,var-lib-docker} "$U"/etc/{docker,ansible/facts.d,criu,ssh} "$U"/var/lib/{docker,mtd} "$U/tmp" "$U/var/tmp"
  chmod 1777 "$U/tmp" "$U/var/tmp"
  chmod 0700 "$U/var/lib/mtd"
  engine_files "$H" "$U/etc/docker/daemon.json" "$U/etc/ansible/facts.d/mtd.fact" "$cpus" "$mem" "$units"
  [ -f "$H/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$H/ssh_host_ed25519_key"
  sshd_config "$name" "$addr" "$H/ssh_host_ed25519_key" "Debian $suite rootfs" >"$U/etc/ssh/sshd_config.mtd-lab"
}

varied_running() { host_running "$1"; }

start_varied() {
  local name=$1 addr=$2 suite=$3 H="$STATE/$1"
  if host_running "$name"; then
    return 0
  fi
  stop_host "$name" quiet
  setsid unshare --mount --uts --propagation private --fork -- \
    "$VARIED_DIR/debhost.sh" __varied_init "$name" "$addr" "$suite" >"$H/init.log" 2>&1 </dev/null &
  local upid=$!
  wait_for 10 "namespace of $name" bash -c "pgrep -P $upid >/dev/null" || { cat "$H/init.log" >&2; die "$name: namespace did not start"; }
  echo "$upid" >"$H/unshare.pid"
  pgrep -P "$upid" | head -n1 >"$H/sshd.pid"
  wait_for 60 "engine of $name" hdocker "$name" version || { cat "$H/init.log" >&2; tail -n 30 "$H/dockerd.log" >&2; die "$name: dockerd did not answer"; }
  wait_for 10 "sshd of $name" bash -c "exec 3<>/dev/tcp/$addr/22" || { cat "$H/sshd.log" >&2; die "$name: sshd not listening on $addr:22"; }
}

write_varied_inventory() {
  local inv="$VARIED_DIR/inventory-varied.yml" name addr suite rest
  {
    echo "# Generated by lab/debhost.sh up — the lab hosts with their own Debian userland. Do not edit."
    echo "all:"
    echo "  children:"
    echo "    varied:"
    echo "      hosts:"
    while read -r name addr suite rest; do
      echo "        $name:"
      echo "          ansible_host: $addr"
      echo "          mtd_lab_suite: $suite"
    done < <(varied_hosts)
    echo "      vars:"
    echo "        ansible_user: root"
    echo "        ansible_connection: ssh"
    echo "        ansible_ssh_private_key_file: $STATE/ssh/id_ed25519"
    echo "        ansible_ssh_common_args: >-"
    echo "          -o UserKnownHostsFile=$STATE/ssh/known_hosts-varied -o StrictHostKeyChecking=yes"
    echo "          -o ControlPath=$STATE/ssh/cp-%C"
    echo "        ansible_python_interpreter: /usr/bin/python3"
    echo "        mtd_registry: $REGISTRY_ADDR"
  } >"$inv.tmp"
  mv "$inv.tmp" "$inv"
}

varied_up() {
  [ "$(id -u)" = 0 ] || die "run as root"
  [ -f "$STATE/ssh/authorized_keys" ] || die "the lab's SSH key is missing: run 'lab/lab.sh up' first"
  local start=$SECONDS name addr suite cpus mem units
  while read -r name addr suite cpus mem units; do build_rootfs "$suite"; done < <(varied_hosts)
  : >"$STATE/ssh/known_hosts-varied.tmp"
  while read -r name addr suite cpus mem units; do
    write_varied_files "$name" "$addr" "$suite" "$cpus" "$mem" "$units"
    echo "$addr $(cut -d' ' -f1,2 "$STATE/$name/ssh_host_ed25519_key.pub")" >>"$STATE/ssh/known_hosts-varied.tmp"
    start_varied "$name" "$addr" "$suite"
  done < <(varied_hosts)
  mv "$STATE/ssh/known_hosts-varied.tmp" "$STATE/ssh/known_hosts-varied"
  write_varied_inventory
  say "varied hosts up in $((SECONDS - start)) s"
  varied_status
}

varied_down() {
  local name rest
  while read -r name rest; do
    [ -d "$STATE/$name" ] || continue
    stop_host "$name"
    rm -rf "${STATE:?}/$name"
  done < <(varied_hosts)
  rm -f "$VARIED_DIR/inventory-varied.yml" "$STATE/ssh/known_hosts-varied"
  say "varied hosts down"
}

varied_status() {
  local name addr suite rest bad=0
  while read -r name addr suite rest; do
    local eng="down" ssh="down" os="?"
    if host_running "$name"; then
      eng=$(hdocker "$name" version -f '{{.Server.Version}}' 2>/dev/null || echo down)
      os=$(ssh -n -i "$STATE/ssh/id_ed25519" -o UserKnownHostsFile="$STATE/ssh/known_hosts-varied" -o StrictHostKeyChecking=yes \
        -o BatchMode=yes -o ConnectTimeout=5 "root@$addr" '. /etc/os-release; echo "$(hostname) $ID $VERSION_ID ${VERSION_CODENAME:-}"' 2>/dev/null) && ssh=up || os="?"
    fi
    [ "$eng" != down ] && [ "$ssh" = up ] || bad=1
    say "$(printf '%-6s %-10s ssh=%-4s engine=%-16s os=%s (%s rootfs)' "$name" "$addr" "$ssh" "$eng" "$os" "$suite")"
  done < <(varied_hosts)
  return $bad
}

case "${1:-}" in
  build) while read -r _n _a suite _r; do build_rootfs "$suite"; done < <(varied_hosts) ;;
  up) varied_up ;;
  down) varied_down ;;
  status) varied_status ;;
  __chroot_install) chroot_install "$2" ;;
  __varied_init) varied_init "$2" "$3" "$4" ;;
  *) echo "usage: $0 build|up|down|status" >&2; exit 2 ;;
esac
