#!/usr/bin/env bash
# The mtd.containers lab's host with its OWN kernel: a virtual machine (QEMU, TCG: KVM guests die on this
# machine kind) running Debian's kernel, systemd, cgroup v2 and Docker with the systemd cgroup driver.
#
#   lab/vm.sh up | down | status | ssh [command...]
#
# Image: debootstrap of Debian $VM_SUITE plus the packages below, from Debian's archive, turned into an ext4
# disk image with mke2fs -d (no loop device, no mount of the image), cached under $CACHE/vm/<key>, <key> being
# a hash of everything the image is built from (suite, mirror, packages, the build functions' text). Every
# boot starts from that image through a fresh qcow2 overlay, so a boot is reproducible and the cache stays
# untouched. Per-boot secrets (authorized key, ssh host key, address, capacity fact) come on a second small
# ext4 disk ("seed") that a unit of the image reads before sshd starts.
#
# Network: ONLY inside the network namespace $NETNS, which this script creates: a bridge with $BR_ADDR and a
# tap for the guest ($VM_ADDR). Ansible reaches the guest with ssh through a ProxyCommand that runs socat
# inside that namespace; nothing is routed to or from the machine's own networks.
#
# Migrations with the namespace hosts of lab.sh (which live in the machine's netns, at 127.0.1.N): no route,
# only forwarders this script runs (socat, one per address and port, pids under $V/forward) for the ports
# $VM_FORWARD_PORTS (default 49100-49103: a transfer port and its page-server port +1, twice):
#   - towards the guest: listening on $VM_LOOP (default 127.0.2.20, a loopback address of the machine), each
#     connection handed to a socat run inside $NETNS that connects to $VM_ADDR:<port>;
#   - towards namespace host 127.0.1.N: listening inside $NETNS on 10.77.0.(10+N) (an address of the bridge,
#     inside the namespace), each connection handed to a socat run in the machine's netns (nsenter
#     --net=$V/forward/hostnet, a bind mount of the netns this script runs in) that connects to 127.0.1.N:<port>.
# The machine's root netns gets no address (127.0.2.20 is loopback) and no route; no Docker network is used.
# The forwarders see only the migration's mutual TLS. A migration names the forwarded addresses with the
# migrate role's migrate_transfer_connect (where the source connects) and migrate_page_server_connect (where
# the target fetches post-copy pages); the inventory carries them as mtd_lab_vm_forward. A namespace host
# that is not in hosts.tsv (the debootstrapped hosts) has no forwarder.
#
# Budget: MTD_VM_BUDGET seconds (default 1500) for build + boot. When the build or the boot does not finish
# in time, `up` stops the guest, writes the reason to $V/status.json (the VM tests skip with it) and exits 3.
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
V="$STATE/vm"
CACHE="${MTD_LAB_CACHE:-/var/cache/mtd-lab}/vm"
DOCKER=/usr/bin/docker
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

VM_NAME=lab-vm
VM_SUITE="${MTD_VM_SUITE:-trixie}"
VM_MIRROR="${MTD_VM_MIRROR:-http://deb.debian.org/debian}"
VM_CPUS="${MTD_VM_CPUS:-2}"
VM_MEMORY_MB="${MTD_VM_MEMORY_MB:-3072}"
# TCG's "max" CPU without the AMD-only instruction sets (3DNow!, SSE4a, extended MMX) and protection keys that an
# Intel machine lacks: the guest's user-visible instruction sets are then a subset of this machine's, so a process
# started in the guest may move to a namespace host (the migration preflight compares them; the other way is
# refused where this machine has AVX-512 and TCG has none).
VM_CPU="${MTD_VM_CPU:-max,3dnow=off,3dnowext=off,sse4a=off,mmxext=off,pku=off}"
VM_DISK_SIZE=6G
VM_BUDGET="${MTD_VM_BUDGET:-1500}"
# Images copied from a lab host's engine into the guest's engine (docker save | ssh docker load).
VM_IMAGES="${MTD_VM_IMAGES:-127.0.0.1:5000/mtd/busybox:latest}"
VM_IMAGE_SOURCE="${MTD_VM_IMAGE_SOURCE:-lab-1}"
NETNS=mtdvm
BR=mtdbr0
TAP=mtdtap0
BR_ADDR=10.77.0.1
VM_ADDR=10.77.0.2
VM_MAC=52:54:00:77:00:02
# Forwarders for migrations between the guest and the namespace hosts (see "Migrations" above): the guest's
# stand-in on the machine's loopback, and the transfer/page-server ports forwarded (both directions).
VM_LOOP="${MTD_VM_LOOP:-127.0.2.20}"
REGISTRY_ADDR=127.0.0.1:5000   # lab.sh's registry
HOSTNET="$V/forward/hostnet"
CONNECT="$V/forward/connect"
VM_FORWARD_PORTS="${MTD_VM_FORWARD_PORTS:-49100-49103}"
# The guest's packages (Debian names). docker.io only recommends docker-cli.
VM_PACKAGES="systemd systemd-sysv udev dbus kmod iproute2 procps openssh-server python3
  docker.io docker-cli containerd runc criu linux-image-cloud-amd64 initramfs-tools ca-certificates"

say() { printf 'lab-vm: %s\n' "$*"; }
die() { printf 'lab-vm: ERROR: %s\n' "$*" >&2; exit 1; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { cat "$1" 2>/dev/null || true; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------------------------------------------
# Image build (runs on the machine, at native speed).
chroot_run() { # root command...: in a private mount namespace with /proc, /sys and /dev of the build only
  local root=$1; shift
  # shellcheck disable=SC2016  # the inner script expands its own arguments
  unshare --mount --propagation private --fork -- bash -euc '
    root=$1; shift
    mount -t proc proc "$root/proc"; mount -t sysfs sys "$root/sys"; mount --rbind /dev "$root/dev"
    exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"
  ' chroot_run "$root" "$@"
}

build_rootfs() { # root
  local root=$1
  debootstrap --variant=minbase --include=ca-certificates "$VM_SUITE" "$root" "$VM_MIRROR"
  # No service starts inside the build chroot.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 0755 "$root/usr/sbin/policy-rc.d"
  # shellcheck disable=SC2086
  chroot_run "$root" apt-get install -y -q --no-install-recommends $VM_PACKAGES
}

configure_rootfs() { # root
  local root=$1
  echo "$VM_NAME" >"$root/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$VM_NAME" >"$root/etc/hosts"
  echo 'LABEL=mtdroot / ext4 defaults,errors=remount-ro 0 1' >"$root/etc/fstab"
  : >"$root/etc/machine-id"
  # The initramfs must load the virtio disk and network drivers (modules in the cloud flavour).
  printf 'virtio_pci\nvirtio_blk\nvirtio_net\next4\n' >>"$root/etc/initramfs-tools/modules"
  echo overlay >"$root/etc/modules-load.d/mtd-overlay.conf"
  # sshd: the lab key only; its host key comes from the seed disk at every boot.
  rm -f "$root"/etc/ssh/ssh_host_*
  cat >"$root/etc/ssh/sshd_config.d/mtd-lab.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxSessions 64
MaxStartups 64:30:128
EOF
  mkdir -p "$root/etc/docker" "$root/etc/ansible/facts.d"
  # No bridge network and no iptables rules: the guest's engine gets no 172.17/16 network either.
  cat >"$root/etc/docker/daemon.json" <<'EOF'
{
  "experimental": true,
  "exec-opts": ["native.cgroupdriver=systemd"],
  "bridge": "none",
  "iptables": false,
  "ip6tables": false,
  "ip-forward": false,
  "ip-masq": false,
  "log-driver": "json-file",
  "storage-driver": "overlay2"
}
EOF
  cat >"$root/usr/local/sbin/mtd-seed" <<'EOF'
#!/bin/sh
# Per-boot settings of the mtd lab VM, from the read-only seed disk (LABEL=mtdseed).
set -eu
mkdir -p /run/mtd-seed
mount -o ro LABEL=mtdseed /run/mtd-seed
S=/run/mtd-seed
install -d -m 0700 /root/.ssh
install -m 0600 "$S/authorized_keys" /root/.ssh/authorized_keys
install -m 0600 "$S/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
install -m 0644 "$S/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
install -m 0644 "$S/mtd.fact" /etc/ansible/facts.d/mtd.fact
. "$S/net.env"
ip link set lo up
ip link set "$IFACE" up
ip addr add "$ADDR" dev "$IFACE"
umount /run/mtd-seed
EOF
  chmod 0755 "$root/usr/local/sbin/mtd-seed"
  cat >"$root/etc/systemd/system/mtd-seed.service" <<'EOF'
[Unit]
Description=mtd lab VM per-boot settings (seed disk)
DefaultDependencies=no
After=systemd-udev-settle.service local-fs.target dev-disk-by\x2dlabel-mtdseed.device
Requires=dev-disk-by\x2dlabel-mtdseed.device
Before=ssh.service docker.service network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/mtd-seed

[Install]
WantedBy=multi-user.target
EOF
  chroot_run "$root" systemctl enable mtd-seed.service ssh.service docker.service containerd.service
  # Units a lab guest does not need (and that cost seconds under TCG).
  chroot_run "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    fstrim.timer systemd-timesyncd.service getty@tty1.service
  chroot_run "$root" update-initramfs -u -k all
  rm -f "$root/usr/sbin/policy-rc.d"
  chroot_run "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
}

image_key() {
  { echo "$VM_SUITE $VM_MIRROR $VM_DISK_SIZE"; echo "$VM_PACKAGES"; declare -f build_rootfs configure_rootfs chroot_run; } |
    sha256sum | cut -c1-16
}

build_image() { # dir
  local out=$1 tmp="$1.tmp" root
  rm -rf "$tmp"
  mkdir -p "$tmp"
  root="$tmp/root"
  say "building the VM image ($VM_SUITE: $(echo "$VM_PACKAGES" | wc -w) packages) into $out (log: $tmp/build.log)"
  {
    build_rootfs "$root"
    configure_rootfs "$root"
  } >"$tmp/build.log" 2>&1 || { tail -n 30 "$tmp/build.log" >&2; return 1; }
  cp "$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n1)" "$tmp/vmlinuz"
  cp "$(find "$root/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n1)" "$tmp/initrd.img"
  # shellcheck disable=SC2016  # dpkg-query's format, not a shell expression
  chroot "$root" dpkg-query -W -f='${Package} ${Version}\n' >"$tmp/packages.txt"
  mke2fs -q -t ext4 -L mtdroot -d "$root" "$tmp/rootfs.raw" "$VM_DISK_SIZE" >>"$tmp/build.log" 2>&1 ||
    { tail -n 20 "$tmp/build.log" >&2; return 1; }
  rm -rf "$root"
  mv "$tmp" "$out"
}

# ---------------------------------------------------------------------------------------------------
# The guest's network namespace.
netns_up() {
  if ! ip netns list | grep -qw "$NETNS"; then
    ip netns add "$NETNS"
  fi
  local nx=(ip netns exec "$NETNS")
  "${nx[@]}" ip link set lo up
  "${nx[@]}" ip link show "$BR" >/dev/null 2>&1 || "${nx[@]}" ip link add "$BR" type bridge
  "${nx[@]}" ip addr replace "$BR_ADDR/24" dev "$BR"
  "${nx[@]}" ip link show "$TAP" >/dev/null 2>&1 || "${nx[@]}" ip tuntap add dev "$TAP" mode tap
  "${nx[@]}" ip link set "$TAP" master "$BR"
  "${nx[@]}" ip link set "$TAP" up
  "${nx[@]}" ip link set "$BR" up
}

# ---------------------------------------------------------------------------------------------------
# Forwarders (socat, one per address and port; pids under $V/forward). Towards the guest: listening on
# $VM_LOOP in the machine's netns, each connection forwarded by a socat run inside $NETNS to $VM_ADDR. Towards
# a namespace host 127.0.1.N: listening inside $NETNS on the bridge-side address 10.77.0.(10+N), each
# connection forwarded by a socat run in the machine's netns (nsenter --net=$V/forward/hostnet, a bind mount of its netns) to 127.0.1.N.
forward_ports() { # the ports of $VM_FORWARD_PORTS (FIRST-LAST or a list)
  local p
  for p in ${VM_FORWARD_PORTS//,/ }; do
    if [[ $p == *-* ]]; then seq "${p%-*}" "${p#*-}"; else echo "$p"; fi
  done
}

# name and bridge-side address of each namespace host of lab.sh's hosts.tsv (127.0.1.N -> 10.77.0.(10+N))
forward_hosts() {
  local name addr rest
  while read -r name addr rest; do
    case "$name" in ''|'#'*) continue ;; esac
    echo "$name $addr ${BR_ADDR%.*}.$((10 + ${addr##*.}))"
  done <"$LAB_DIR/hosts.tsv"
}

start_forwarder() { # pidfile command... (a socat, or ip netns exec ... socat); restarted when its command changed
  local pidfile=$1 pid; shift
  pid=$(pid_of "$pidfile")
  if alive "$pid"; then
    [ "$*" != "$(cat "$pidfile.cmd" 2>/dev/null)" ] || return 0
    if grep -qa socat "/proc/$pid/cmdline"; then kill -TERM "$pid" 2>/dev/null || true; fi
    sleep 0.2
  fi
  setsid "$@" </dev/null >>"$V/forward/socat.log" 2>&1 &
  echo $! >"$pidfile"
  echo "$*" >"$pidfile.cmd"
}

forward_up() {
  mkdir -p "$V/forward"
  # socat's EXEC address takes no colon in its command: the connecting half is this script. It retries while
  # nothing listens yet (for 60 s, the sender's default connect timeout): the sender's own retry does not see a
  # refused connection behind the forwarder, which has already accepted it.
  # shellcheck disable=SC2016  # the positional parameters are the written script's own
  printf '#!/bin/sh\n# %s NETNS-FILE ADDRESS PORT: stdio to ADDRESS:PORT from inside that netns\nexec nsenter --net="$1" socat STDIO "TCP:$2:$3,retry=120,interval=0.5"\n' \
    "$CONNECT" >"$CONNECT"
  chmod 0755 "$CONNECT"
  # a handle on the machine's netns (the one this script runs in) for the socats inside $NETNS
  if ! mountpoint -q "$HOSTNET"; then
    : >"$HOSTNET"
    mount --bind /proc/self/ns/net "$HOSTNET"
  fi
  local nx=(ip netns exec "$NETNS") p name addr br
  while read -r name addr br; do
    "${nx[@]}" ip addr replace "$br/24" dev "$BR"
  done < <(forward_hosts)
  # the lab registry, for the guest's engine (its 127.0.0.1:5000 is a socket unit of the guest, guest_forward_up)
  start_forwarder "$V/forward/registry.pid" "${nx[@]}" socat "TCP-LISTEN:${REGISTRY_ADDR#*:},bind=$BR_ADDR,reuseaddr,fork" \
    "EXEC:$CONNECT $HOSTNET ${REGISTRY_ADDR%:*} ${REGISTRY_ADDR#*:}"
  for p in $(forward_ports); do
    start_forwarder "$V/forward/vm-$p.pid" socat "TCP-LISTEN:$p,bind=$VM_LOOP,reuseaddr,fork" \
      "EXEC:$CONNECT /run/netns/$NETNS $VM_ADDR $p"
    while read -r name addr br; do
      start_forwarder "$V/forward/$name-$p.pid" "${nx[@]}" socat "TCP-LISTEN:$p,bind=$br,reuseaddr,fork" \
        "EXEC:$CONNECT $HOSTNET $addr $p"
    done < <(forward_hosts)
  done
}

# The guest's side of the registry forwarder: a socket unit on its 127.0.0.1:5000 (where the lab's images are
# named) whose service, systemd-socket-proxyd, connects to the bridge side $BR_ADDR:5000. Runtime units
# (/run/systemd/system): written at every up, gone at the guest's next boot.
guest_forward_up() {
  vssh "set -e; mkdir -p /run/systemd/system
printf '%s\n' '[Unit]' 'Description=mtd lab registry (forwarded to the machine)' '[Socket]' \
  'ListenStream=$REGISTRY_ADDR' >/run/systemd/system/mtd-registry.socket
printf '%s\n' '[Unit]' 'Description=mtd lab registry forwarder' '[Service]' \
  'ExecStart=/usr/lib/systemd/systemd-socket-proxyd $BR_ADDR:${REGISTRY_ADDR#*:}' >/run/systemd/system/mtd-registry.service
systemctl daemon-reload; systemctl start mtd-registry.socket"
}

forward_down() {
  local f pid
  for f in "$V"/forward/*.pid; do
    [ -e "$f" ] || continue
    pid=$(pid_of "$f")
    # the pid is setsid's child: socat itself, or ip netns exec that exec'd socat
    if alive "$pid" && grep -qa socat "/proc/$pid/cmdline"; then kill -TERM "$pid" 2>/dev/null || true; fi
    rm -f "$f" "$f.cmd"
  done
  if mountpoint -q "$HOSTNET"; then umount "$HOSTNET"; fi
  rm -f "$HOSTNET"
}

netns_down() {
  forward_down
  if ip netns list | grep -qw "$NETNS"; then
    ip netns del "$NETNS"
  fi
}

write_seed() {
  local s="$V/seed"
  rm -rf "$s" "$V/seed.img"
  mkdir -p "$s"
  cp "$STATE/ssh/id_ed25519.pub" "$s/authorized_keys"
  [ -f "$V/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "$VM_NAME" -f "$V/ssh_host_ed25519_key"
  cp "$V/ssh_host_ed25519_key" "$V/ssh_host_ed25519_key.pub" "$s/"
  printf 'IFACE=eth0\nADDR=%s/24\n' "$VM_ADDR" >"$s/net.env"
  printf '{"capacity": {"cpus": %s, "memory_mb": %s, "units": 20}}\n' "$VM_CPUS" "$VM_MEMORY_MB" >"$s/mtd.fact"
  mke2fs -q -t ext4 -L mtdseed -d "$s" "$V/seed.img" 8M >/dev/null
  echo "$VM_NAME $(cut -d' ' -f1,2 "$V/ssh_host_ed25519_key.pub")" >"$V/known_hosts"
}

ssh_opts() {
  printf '%s\n' -i "$STATE/ssh/id_ed25519" -o UserKnownHostsFile="$V/known_hosts" -o StrictHostKeyChecking=yes \
    -o HostKeyAlias="$VM_NAME" -o BatchMode=yes -o ConnectTimeout=10 \
    -o "ProxyCommand=ip netns exec $NETNS socat STDIO TCP:%h:%p"
}

# shellcheck disable=SC2029  # the command runs in the guest, as given
vssh() { local o; mapfile -t o < <(ssh_opts); ssh "${o[@]}" "root@$VM_ADDR" "$@"; }

# One TCG thread for all vCPUs: with thread=multi the guest kernel panicked twice (2026-12-02, CI and a rerun) with
# "Oops: int3" in __schedule, an int3 of the kernel's own code patching (text_poke_bp) that another vCPU's
# translated code still ran. panic=1 with -no-reboot ends qemu at a panic, so a dead guest fails a test at once
# instead of leaving ssh to time out.
VM_ACCEL="${MTD_VM_ACCEL:-tcg,thread=single}"

boot() { # image dir
  local img=$1
  rm -f "$V/disk.qcow2" "$V/console.log"
  qemu-img create -q -f qcow2 -F raw -b "$img/rootfs.raw" "$V/disk.qcow2"
  ip netns exec "$NETNS" qemu-system-x86_64 -name mtd-lab-vm -accel "$VM_ACCEL" -no-reboot -machine pc -cpu "$VM_CPU" \
    -smp "$VM_CPUS" -m "$VM_MEMORY_MB" -display none -monitor none -serial "file:$V/console.log" \
    -kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
    -append "root=LABEL=mtdroot rw console=ttyS0 net.ifnames=0 systemd.show_status=0 quiet panic=1" \
    -drive "file=$V/disk.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap" \
    -drive "file=$V/seed.img,if=virtio,format=raw,readonly=on" \
    -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no" -device "virtio-net-pci,netdev=n0,mac=$VM_MAC" \
    -pidfile "$V/qemu.pid" -daemonize
}

wait_until() { # deadline command...
  local end=$1; shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 1
  done
}

write_inventory() {
  local inv="$LAB_DIR/inventory-vm.yml"
  cat >"$inv.tmp" <<EOF
# Generated by lab/vm.sh up - the lab's virtual machine (own kernel, cgroup v2, systemd driver). Do not edit.
all:
  children:
    vm:
      hosts:
        $VM_NAME:
          ansible_host: $VM_ADDR
      vars:
        ansible_user: root
        ansible_connection: ssh
        ansible_ssh_private_key_file: $STATE/ssh/id_ed25519
        ansible_ssh_common_args: >-
          -o UserKnownHostsFile=$V/known_hosts -o StrictHostKeyChecking=yes -o HostKeyAlias=$VM_NAME
          -o ControlPath=$STATE/ssh/cp-%C
          -o ProxyCommand="ip netns exec $NETNS socat STDIO TCP:%h:%p"
        ansible_python_interpreter: /usr/bin/python3
        ansible_timeout: 60
        mtd_lab_vm_netns: $NETNS
        # migrations with the namespace hosts (lab/vm.sh "Migrations"): the guest's stand-in on the machine's
        # loopback, the forwarded ports, and each namespace host's address as the guest reaches it
        mtd_lab_vm_forward:
          vm_address: $VM_LOOP
          ports: [$(forward_ports | paste -sd, | sed 's/,/, /g')]
          hosts: {$(forward_hosts | awk '{printf "%s%s: %s", (NR > 1 ? ", " : ""), $1, $3}')}
EOF
  mv "$inv.tmp" "$inv"
}

write_status() { # state reason [extra json members]
  printf '{"state": "%s", "reason": "%s", "budget_seconds": %s%s}\n' "$1" "$2" "$VM_BUDGET" "${3:-}" >"$V/status.json"
}

skip() { # reason
  say "SKIPPED: $1"
  write_status skipped "$1" "$TIMES"
  stop_guest
  rm -f "$LAB_DIR/inventory-vm.yml"
  exit 3
}

stop_guest() {
  local pid
  pid=$(pid_of "$V/qemu.pid")
  if alive "$pid" && grep -qa 'mtd-lab-vm' "/proc/$pid/cmdline"; then
    kill -TERM "$pid" 2>/dev/null || true
    local n=0
    while alive "$pid" && [ $n -lt 50 ]; do sleep 0.2; n=$((n + 1)); done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$V/qemu.pid"
}

load_images() {
  local sock="$STATE/$VM_IMAGE_SOURCE/docker.sock" img
  [ -S "$sock" ] || { say "no engine socket $sock: no images copied into the guest"; return 0; }
  for img in $VM_IMAGES; do
    "$DOCKER" -H "unix://$sock" image inspect "$img" >/dev/null 2>&1 || { say "image $img not on $VM_IMAGE_SOURCE: not copied"; continue; }
    "$DOCKER" -H "unix://$sock" save "$img" | vssh docker load -q >/dev/null
  done
}

TIMES=""
cmd_up() {
  [ "$(id -u)" = 0 ] || die "run as root"
  command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run 'make setup'"
  command -v socat >/dev/null || die "socat missing: run 'make setup'"
  local t0 deadline key img t
  t0=$(now)
  deadline=$(( $(date +%s) + VM_BUDGET ))
  mkdir -p "$V" "$CACHE" "$STATE/ssh"
  chmod 0700 "$V" "$STATE/ssh"
  [ -f "$STATE/ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C mtd-lab -f "$STATE/ssh/id_ed25519"
  if alive "$(pid_of "$V/qemu.pid")" && vssh true 2>/dev/null; then
    forward_up
    guest_forward_up || say "the guest's registry forwarder did not start"
    write_inventory
    say "already up"; return 0
  fi
  stop_guest
  key=$(image_key)
  img="$CACHE/$key"
  if [ ! -s "$img/rootfs.raw" ]; then
    t=$(now)
    timeout "$VM_BUDGET" "$0" __build "$img" || skip "image build did not finish within the budget of ${VM_BUDGET}s (or failed: $img.tmp/build.log)"
    TIMES="$TIMES, \"build_seconds\": $(elapsed "$t")"
    say "image built in $(elapsed "$t") s"
  fi
  netns_up
  forward_up
  write_seed
  t=$(now)
  boot "$img"
  wait_until "$deadline" vssh true || skip "sshd of the guest did not answer within the budget of ${VM_BUDGET}s (console: $V/console.log)"
  TIMES="$TIMES, \"boot_to_ssh_seconds\": $(elapsed "$t")"
  wait_until "$deadline" vssh docker info || skip "the guest's dockerd did not answer within the budget of ${VM_BUDGET}s"
  TIMES="$TIMES, \"boot_to_docker_seconds\": $(elapsed "$t")"
  guest_forward_up || say "the guest's registry forwarder did not start"
  t=$(now)
  load_images
  TIMES="$TIMES, \"image_load_seconds\": $(elapsed "$t"), \"up_seconds\": $(elapsed "$t0")"
  write_inventory
  write_status ready "" "$TIMES, \"image\": \"$key\""
  say "up: $(cat "$V/status.json")"
}

cmd_down() {
  stop_guest
  netns_down
  rm -rf "$V"
  rm -f "$LAB_DIR/inventory-vm.yml"
  say "down"
}

cmd_status() {
  # shellcheck disable=SC2016  # expanded by the guest's shell
  if alive "$(pid_of "$V/qemu.pid")" && out=$(vssh '. /etc/os-release; echo "$(hostname) $ID $VERSION_ID kernel=$(uname -r) cgroup=$(stat -fc %T /sys/fs/cgroup) engine=$(docker version -f "{{.Server.Version}}") driver=$(docker info -f "{{.CgroupDriver}}")"' 2>/dev/null); then
    say "$VM_ADDR (netns $NETNS) up: $out"
  else
    say "down$( [ -f "$V/status.json" ] && echo " ($(cat "$V/status.json"))")"
    return 1
  fi
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  ssh) shift; vssh "$@" ;;
  __build) build_image "$2" ;;
  *) echo "usage: $0 up|down|status|ssh [command]" >&2; exit 2 ;;
esac
