#!/usr/bin/env bash
# The mtd.containers lab: several "hosts" on one machine, each a mount+UTS namespace with its own
# hostname, /etc/os-release, /run, /tmp, /etc/docker, /etc/criu, /var/lib/docker, /etc/ansible/facts.d, its own
# Docker engine (socket at the standard /var/run/docker.sock inside the namespace) and its own sshd on
# its own loopback address. One registry (Debian docker-registry) serves 127.0.0.1:5000 for all hosts.
#
#   lab/lab.sh up | down | status | env
#
# Nothing under plugins/ knows about this: modules read the real interfaces inside each namespace.
set -euo pipefail
# The daemons this script starts (engines, registry, sshd, qemu, forwarders) must not inherit a descriptor the
# caller holds, above all the lab lock of `flock /tmp/mtd-lab.lock lab/lab.sh up`: a daemon holding it keeps
# the lock taken after the caller is gone. Close every inherited descriptor above 2 (255 is bash's own).
for _fd in "/proc/$$/fd/"*; do
  _fd=${_fd##*/}
  if [ "$_fd" -gt 2 ] && [ "$_fd" -ne 255 ]; then eval "exec $_fd>&-" 2>/dev/null || true; fi
done
unset _fd
LAB_DIR="$(cd "$(dirname "$0")" && pwd)"
STATE="${MTD_LAB_STATE:-/var/lib/mtd-lab}"
REGISTRY_ADDR=127.0.0.1:5000
DOCKER=/usr/bin/docker          # the engine's own client (20.10), not a newer one earlier on PATH
CACHE=/var/cache/mtd-lab
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { printf 'lab: %s\n' "$*"; }
die() { printf 'lab: ERROR: %s\n' "$*" >&2; exit 1; }

hosts() { grep -v '^#' "$LAB_DIR/hosts.tsv" | grep -v '^[[:space:]]*$'; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { cat "$1" 2>/dev/null || true; }
hdocker() { "$DOCKER" -H "unix://$STATE/$1/docker.sock" "${@:2}"; }

wait_for() { # seconds description command...  (the description documents the call site)
  local t=$1; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------------------------------
# Runs INSIDE a new mount+UTS namespace (called through unshare by start_host).
host_init() {
  local name=$1 addr=$2 H="$STATE/$1"
  hostname "$name"
  # OS identity: /etc/os-release is a symlink on Debian; bind over its target.
  mount --bind "$H/os-release" "$(readlink -f /etc/os-release)"
  # A machine's private directories.
  mount -t tmpfs -o mode=0755,size=256m "tmpfs-$name" /run
  mkdir -p /run/sshd /run/lock
  mount --bind "$H/tmp" /tmp
  mount --bind "$H/var-tmp" /var/tmp
  mount --bind "$H/etc-docker" /etc/docker
  mount --bind "$H/etc-ansible" /etc/ansible
  # runc's CRIU configuration file (/etc/criu/runc.conf) is per machine: restore writes it for a moment.
  mount --bind "$H/etc-criu" /etc/criu
  mount --bind "$H/var-lib-docker" /var/lib/docker
  mount --bind "$H/var-lib-mtd" /var/lib/mtd
  echo "$name" >/run/lab-host
  # The engine, with its standard paths inside this namespace.
  setsid dockerd --config-file /etc/docker/daemon.json >"$H/dockerd.log" 2>&1 </dev/null &
  echo $! >"$H/dockerd.pid"
  # sshd replaces this shell and holds the namespace.
  exec /usr/sbin/sshd -D -f "$H/sshd_config" -E "$H/sshd.log"
}

ensure_host_mountpoints() {
  # Bind targets must exist on the machine; record the ones we create so `down` removes them.
  local d
  for d in /etc/ansible /etc/criu /var/lib/docker /var/lib/mtd; do
    if [ ! -e "$d" ]; then
      mkdir -p "$d"
      echo "$d" >>"$STATE/created-dirs"
    fi
  done
  # The engines create a "docker" cgroup under every v1 controller (or in the v2 root): note the ones
  # that do not exist yet so `down` removes them again.
  for d in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$d" ] || continue
    d="${d%/}/docker"
    if [ ! -e "$d" ] && ! grep -qxF "$d" "$STATE/created-cgroups" 2>/dev/null; then
      echo "$d" >>"$STATE/created-cgroups"
    fi
  done
}

# A lab host's engine configuration and capacity fact: host state dir, daemon.json path, fact path, cpus,
# memory_mb, units.
engine_files() {
  cat >"$2" <<EOF
{
  "experimental": true,
  "bridge": "none",
  "iptables": false,
  "ip6tables": false,
  "ip-forward": false,
  "ip-masq": false,
  "hosts": ["unix:///var/run/docker.sock", "unix://$1/docker.sock"],
  "log-driver": "json-file",
  "storage-driver": "overlay2"
}
EOF
  printf '{"capacity": {"cpus": %s, "memory_mb": %s, "units": %s}}\n' "$4" "$5" "$6" >"$3"
}

# The sshd configuration of a lab host: name, address, host key file [, comment].
sshd_config() {
  cat <<EOF
# sshd of lab host $1${4:+ ($4)}
ListenAddress $2:22
HostKey $3
PidFile /run/sshd.pid
AuthorizedKeysFile $STATE/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
AcceptEnv LANG LC_*
MaxSessions 64
MaxStartups 64:30:128
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
}

write_host_files() {
  local name=$1 addr=$2 osfile=$3 cpus=$4 mem=$5 units=$6 H="$STATE/$1"
  mkdir -p "$H"/{tmp,var-tmp,etc-docker,etc-ansible/facts.d,etc-criu,var-lib-docker,var-lib-mtd}
  chmod 1777 "$H/tmp" "$H/var-tmp"
  chmod 0700 "$H/var-lib-mtd"
  cp "$LAB_DIR/os-release/$osfile" "$H/os-release"
  engine_files "$H" "$H/etc-docker/daemon.json" "$H/etc-ansible/facts.d/mtd.fact" "$cpus" "$mem" "$units"
  [ -f "$H/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$H/ssh_host_ed25519_key"
  sshd_config "$name" "$addr" "$H/ssh_host_ed25519_key" >"$H/sshd_config"
}

host_running() {
  local H="$STATE/$1"
  alive "$(pid_of "$H/sshd.pid")" && alive "$(pid_of "$H/dockerd.pid")"
}

start_host() {
  local name=$1 addr=$2 H="$STATE/$1"
  if host_running "$name"; then
    return 0
  fi
  stop_host "$name" quiet
  setsid unshare --mount --uts --propagation private --fork -- \
    "$LAB_DIR/lab.sh" __host_init "$name" "$addr" >"$H/init.log" 2>&1 </dev/null &
  local upid=$!
  # unshare --fork: the namespace's first process is unshare's child (the shell that becomes sshd).
  local child=""
  wait_for 10 "namespace of $name" bash -c "pgrep -P $upid >/dev/null" || { cat "$H/init.log" >&2; die "$name: namespace did not start"; }
  child=$(pgrep -P "$upid" | head -n1)
  echo "$upid" >"$H/unshare.pid"
  echo "$child" >"$H/sshd.pid"
  wait_for 60 "engine of $name" hdocker "$name" version || { tail -n 30 "$H/dockerd.log" >&2; die "$name: dockerd did not answer"; }
  wait_for 10 "sshd of $name" bash -c "exec 3<>/dev/tcp/$addr/22" || { cat "$H/sshd.log" >&2; die "$name: sshd not listening on $addr:22"; }
}

namespace_pids() { # all processes in the host's mount namespace
  local ref="$1" p
  [ -n "$ref" ] || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ref" ] && echo "${p#/proc/}"
  done
  return 0
}

stop_host() {
  local name=$1 quiet=${2:-} H="$STATE/$1"
  local sshd dockerd unsh ns=""
  sshd=$(pid_of "$H/sshd.pid"); dockerd=$(pid_of "$H/dockerd.pid"); unsh=$(pid_of "$H/unshare.pid")
  alive "$sshd" && ns=$(readlink "/proc/$sshd/ns/mnt" 2>/dev/null || true)
  [ -z "$ns" ] && alive "$dockerd" && ns=$(readlink "/proc/$dockerd/ns/mnt" 2>/dev/null || true)
  # never touch the machine's own namespace
  [ "$ns" = "$(readlink /proc/self/ns/mnt)" ] && ns=""
  if alive "$dockerd"; then
    [ -n "$quiet" ] || say "$name: stopping engine (pid $dockerd)"
    kill -TERM "$dockerd" 2>/dev/null || true
    wait_for 30 "engine stop" bash -c "! kill -0 $dockerd" || kill -KILL "$dockerd" 2>/dev/null || true
  fi
  if alive "$sshd"; then kill -TERM "$sshd" 2>/dev/null || true; fi
  # what is left in the namespace (container shims, workloads, ssh sessions) was started by the lab
  local p
  for p in $(namespace_pids "$ns"); do kill -KILL "$p" 2>/dev/null || true; done
  if alive "$unsh"; then kill -TERM "$unsh" 2>/dev/null || true; fi
  wait_for 10 "namespace exit" bash -c "[ -z \"\$(\"$LAB_DIR/lab.sh\" __ns_pids '$ns')\" ]" || true
  rm -f "$H/sshd.pid" "$H/dockerd.pid" "$H/unshare.pid"
}

# ---------------------------------------------------------------------------------------------------
registry_up() {
  local R="$STATE/registry"
  mkdir -p "$R/data"
  cat >"$R/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $R/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
  headers:
    X-Content-Type-Options: [nosniff]
EOF
  if alive "$(pid_of "$R/registry.pid")"; then
    return 0
  fi
  setsid docker-registry serve "$R/config.yml" >>"$R/registry.log" 2>&1 </dev/null &
  echo $! >"$R/registry.pid"
  wait_for 20 registry curl -fsS "http://$REGISTRY_ADDR/v2/" || { tail -n 20 "$R/registry.log" >&2; die "registry did not answer on $REGISTRY_ADDR"; }
}

registry_down() {
  local R="$STATE/registry" pid
  pid=$(pid_of "$R/registry.pid")
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    wait_for 10 "registry stop" bash -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$R/registry.pid"
}

registry_has() { # repo tag
  curl -fs -o /dev/null -I -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REGISTRY_ADDR/v2/$1/manifests/$2"
}

# Base images, built locally (no public registry is reachable) and pushed to the lab registry.
images_up() {
  local builder=$1
  if ! registry_has mtd/busybox latest; then
    say "building image $REGISTRY_ADDR/mtd/busybox:latest (Debian busybox-static)"
    local rfs; rfs=$(mktemp -d)
    mkdir -p "$rfs"/{bin,etc,tmp,proc,sys,dev,root,data,var/log}
    chmod 1777 "$rfs/tmp"
    cp /bin/busybox "$rfs/bin/busybox"
    local a
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$rfs/bin/$a"; done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$rfs/etc/group"
    tar -C "$rfs" --numeric-owner --sort=name --mtime=@0 -cf - . |
      hdocker "$builder" import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - "$REGISTRY_ADDR/mtd/busybox:latest" >/dev/null
    rm -rf "$rfs"
    hdocker "$builder" push -q "$REGISTRY_ADDR/mtd/busybox:latest" >/dev/null
  fi
  if ! registry_has mtd/debian-python bookworm; then
    [ -s "$CACHE/debian-python.tar" ] || die "missing $CACHE/debian-python.tar: run 'make setup'"
    say "building image $REGISTRY_ADDR/mtd/debian-python:bookworm (debootstrap)"
    hdocker "$builder" import -c 'CMD ["python3"]' \
      -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      "$CACHE/debian-python.tar" "$REGISTRY_ADDR/mtd/debian-python:bookworm" >/dev/null
    hdocker "$builder" push -q "$REGISTRY_ADDR/mtd/debian-python:bookworm" >/dev/null
  fi
}

write_inventory() {
  local inv="$LAB_DIR/inventory.yml"
  {
    echo "# Generated by lab/lab.sh up — the local lab. Do not edit."
    echo "all:"
    echo "  children:"
    echo "    lab:"
    echo "      hosts:"
    local name addr rest
    while read -r name addr rest; do
      echo "        $name:"
      echo "          ansible_host: $addr"
    done < <(hosts)
    echo "      vars:"
    echo "        ansible_user: root"
    echo "        ansible_connection: ssh"
    echo "        ansible_ssh_private_key_file: $STATE/ssh/id_ed25519"
    echo "        ansible_ssh_common_args: >-"
    echo "          -o UserKnownHostsFile=$STATE/ssh/known_hosts -o StrictHostKeyChecking=yes"
    echo "          -o ControlPath=$STATE/ssh/cp-%C"
    echo "        ansible_python_interpreter: /usr/bin/python3"
    echo "        mtd_registry: $REGISTRY_ADDR"
  } >"$inv.tmp"
  mv "$inv.tmp" "$inv"
}

# CRIU's lazy-pages page server (post-copy) grows a pipe to 3354624 bytes; root on these machines lacks
# CAP_SYS_RESOURCE, so fs.pipe-max-size (1 MiB by default) must allow it. The old value is put back on down.
raise_pipe_max_size() {
  local now
  now=$(cat /proc/sys/fs/pipe-max-size)
  if [ "$now" -lt 4194304 ]; then
    [ -f "$STATE/pipe-max-size.orig" ] || echo "$now" >"$STATE/pipe-max-size.orig"
    echo 4194304 >/proc/sys/fs/pipe-max-size
  fi
}

restore_pipe_max_size() {
  if [ -f "$STATE/pipe-max-size.orig" ]; then
    cat "$STATE/pipe-max-size.orig" >/proc/sys/fs/pipe-max-size
    rm -f "$STATE/pipe-max-size.orig"
  fi
}

cmd_up() {
  [ "$(id -u)" = 0 ] || die "run as root"
  command -v dockerd >/dev/null || die "dockerd missing: run 'make setup'"
  mkdir -p "$STATE/ssh"
  chmod 0700 "$STATE/ssh"
  [ -f "$STATE/ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C mtd-lab -f "$STATE/ssh/id_ed25519"
  cp "$STATE/ssh/id_ed25519.pub" "$STATE/ssh/authorized_keys"
  chmod 0600 "$STATE/ssh/authorized_keys"
  ensure_host_mountpoints
  raise_pipe_max_size
  registry_up
  : >"$STATE/ssh/known_hosts.tmp"
  local name addr osfile cpus mem units first=""
  while read -r name addr osfile cpus mem units; do
    write_host_files "$name" "$addr" "$osfile" "$cpus" "$mem" "$units"
    echo "$addr $(cut -d' ' -f1,2 "$STATE/$name/ssh_host_ed25519_key.pub")" >>"$STATE/ssh/known_hosts.tmp"
    start_host "$name" "$addr"
    [ -n "$first" ] || first=$name
  done < <(hosts)
  mv "$STATE/ssh/known_hosts.tmp" "$STATE/ssh/known_hosts"
  images_up "$first"
  write_inventory
  varied_hook up
  vm_hook up
  cmd_status
}

# The virtual machine host (lab/vm.sh, its own inventory lab/inventory-vm.yml); MTD_LAB_VM=0 skips it. Its
# failure or a blown time budget does not fail the lab: the VM tests skip with the reason vm.sh recorded.
vm_hook() {
  [ "${MTD_LAB_VM:-1}" != 0 ] || return 0
  MTD_LAB_STATE="$STATE" bash "$LAB_DIR/vm.sh" "$1" || say "vm.sh $1 did not succeed (rc $?): the VM host is not part of this lab"
}

cmd_down() {
  local name rest
  varied_hook down || true
  vm_hook down
  if [ -d "$STATE" ]; then
    while read -r name rest; do
      [ -d "$STATE/$name" ] && stop_host "$name"
    done < <(hosts)
    registry_down
    restore_pipe_max_size
    if [ -f "$STATE/created-dirs" ]; then
      local d
      while read -r d; do rmdir "$d" 2>/dev/null || true; done <"$STATE/created-dirs"
    fi
    if [ -f "$STATE/created-cgroups" ]; then
      local d
      # children first (leftover container cgroups), then the "docker" level itself
      while read -r d; do
        [ -d "$d" ] || continue
        find "$d" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
        rmdir "$d" 2>/dev/null || true
      done <"$STATE/created-cgroups"
    fi
    rm -rf "$STATE"
  fi
  rm -f "$LAB_DIR/inventory.yml"
  say "down"
}

cmd_status() {
  local name addr osfile rest bad=0
  if alive "$(pid_of "$STATE/registry/registry.pid")" && curl -fsS -o /dev/null "http://$REGISTRY_ADDR/v2/"; then
    say "registry  $REGISTRY_ADDR  up  ($(curl -fsS "http://$REGISTRY_ADDR/v2/_catalog" 2>/dev/null))"
  else
    say "registry  $REGISTRY_ADDR  DOWN"; bad=1
  fi
  while read -r name addr osfile rest; do
    local H="$STATE/$name" eng="down" ssh="down" os="?"
    if host_running "$name"; then
      eng=$(hdocker "$name" version -f '{{.Server.Version}}' 2>/dev/null || echo down)
      os=$(ssh -n -i "$STATE/ssh/id_ed25519" -o UserKnownHostsFile="$STATE/ssh/known_hosts" -o StrictHostKeyChecking=yes \
        -o BatchMode=yes -o ConnectTimeout=5 "root@$addr" '. /etc/os-release; echo "$(hostname) $ID $VERSION_ID"' 2>/dev/null) && ssh=up || os="?"
    fi
    [ "$eng" != down ] && [ "$ssh" = up ] || bad=1
    say "$(printf '%-6s %-10s ssh=%-4s engine=%-16s os=%s' "$name" "$addr" "$ssh" "$eng" "$os")"
  done < <(hosts)
  varied_hook status || bad=1
  vm_hook status
  return $bad
}

# The hosts with their own userland (lab/debhost.sh); MTD_LAB_VARIED=0 leaves them out.
varied_hook() {
  [ "${MTD_LAB_VARIED:-1}" != 0 ] || return 0
  bash "$LAB_DIR/debhost.sh" "$1"
}

# debhost.sh sources this file for its functions (MTD_LAB_SOURCED=1) and runs its own commands.
[ -z "${MTD_LAB_SOURCED:-}" ] || return 0
case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  __host_init) host_init "$2" "$3" ;;
  __ns_pids) namespace_pids "${2:-}" ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
