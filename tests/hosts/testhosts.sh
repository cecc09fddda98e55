#!/usr/bin/env bash
# Real test hosts for hybridops.arc: each host is its own network namespace on a private
# bridge, booting Debian with systemd as PID 1 (systemd-nspawn) on a copy-on-write overlay
# of one cached root file system, with sshd and a generated key.
#
#   testhosts.sh rootfs            build (once) the cached Debian root file system
#   testhosts.sh up N              tear down leftovers, start N hosts, write the inventory, wait for ssh
#   testhosts.sh down              stop every host and the controller namespace (also after a crash)
#   testhosts.sh reboot I [crash]  restart host I on the same disk (crash: its init killed at once)
#   testhosts.sh status            list running hosts
#   testhosts.sh inventory         print the path of the current inventory
#   testhosts.sh hosts-json        print the running hosts as JSON (name, address, key, suite) for tools
#   testhosts.sh controlplane start|stop|url|ca
#                                  run arc-controlplane in the controller namespace, on ${NET}.1:8443,
#                                  with its Arc gateway service on ${NET}.1:8444
#   testhosts.sh proxy start|stop|url|log
#                                  an HTTP proxy (Debian's tinyproxy) in the controller namespace, on
#                                  ${NET}.1:3128, allowed to CONNECT to the control plane and its
#                                  gateway; its log
#   testhosts.sh isolate I|all on|arc|off
#                                  take away (give back) host I's direct route to the control plane's
#                                  API: with the proxy, the proxy layout; the gateway's port stays,
#                                  the gateway layout; 'arc' leaves the Arc services' names
#                                  routable (for proxy.bypass Arc) (docs/test-hosts.md)
#   testhosts.sh ctl CMD...        run CMD in the controller namespace
#   testhosts.sh env               print this lab's network, namespaces and paths as JSON
#
# Network: controller namespace $CTL_NS holds bridge $BRIDGE with ${NET}.1/24 and ${NET}.2/24
# (the control plane's services by name: identity and management at .1, the Arc services at .2,
# in every host's /etc/hosts and in /etc/netns/$CTL_NS/hosts, docs/endpoints.md); host i lives in
# namespace ${HOST_NS_PREFIX}i with ${NET}.(10+i). Nothing is routed anywhere else: the hosts
# have no default route, the controller namespace has none either, and the root namespace gets
# a blackhole route for the whole range so a stray packet can never leave the machine.
# Ansible runs in the root namespace and reaches hosts with
#   ProxyCommand="ip netns exec $CTL_NS socat - TCP:%h:%p"
# (socat exits on EOF, so ssh ControlMasters die with their host).
set -euo pipefail

# ARC_TESTHOSTS_LAB=K (0-9, default 0) selects one of ten independent labs: its own network
# 10.200.K.0/24, namespaces, bridge and state directory, so that several test runs can use
# hosts at once on one machine. Lab 0 keeps the plain names (arc-ctl, arc-hN, arcbr0).
LAB=${ARC_TESTHOSTS_LAB:-0}
[[ $LAB =~ ^[0-9]$ ]] || { echo "testhosts: error: ARC_TESTHOSTS_LAB must be a digit 0-9, not '$LAB'" >&2; exit 2; }
if [ "$LAB" = 0 ]; then LAB_TAG=arc; LAB_SUFFIX=; else LAB_TAG=arc$LAB; LAB_SUFFIX=-$LAB; fi
CACHE_DIR=${ARC_TESTHOSTS_CACHE:-/var/cache/hybridops-arc}
STATE_DIR=${ARC_TESTHOSTS_STATE:-/var/lib/hybridops-arc/testhosts$LAB_SUFFIX}
# ARC_TESTHOSTS_SUITE: the distribution release of the hosts, or one per host in order (host i
# takes word i, the last word for the rest): Debian bullseye, bookworm (default) or trixie,
# Ubuntu jammy or noble.
read -r -a SUITES <<<"${ARC_TESTHOSTS_SUITE:-bookworm}"
((${#SUITES[@]} > 0)) || SUITES=(bookworm)
for s in "${SUITES[@]}"; do
  [[ $s =~ ^(bullseye|bookworm|trixie|jammy|noble)$ ]] \
    || { echo "testhosts: error: ARC_TESTHOSTS_SUITE: '$s' is not bullseye, bookworm, trixie, jammy or noble" >&2; exit 2; }
done
UBUNTU_MIRROR=${ARC_TESTHOSTS_UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}
NET=${ARC_TESTHOSTS_NET:-10.200.$LAB}
CTL_NS=$LAB_TAG-ctl
HOST_NS_PREFIX=$LAB_TAG-h
BRIDGE=${LAB_TAG}br0
BOOT_TIMEOUT=${ARC_TESTHOSTS_BOOT_TIMEOUT:-180}
MAX_HOSTS=200

# Everything the hosts need is baked in: they have no network to install from. (libfaketime: the
# chaos suite moves one service's clock with it, tests/chaos/test_clock.py.)
ROOTFS_PACKAGES=python3,python3-apt,systemd,systemd-sysv,dbus,openssh-server,sudo,iproute2,procps,ca-certificates,libfaketime
# What the arc_agent role would install through apt on a release, baked in (the hosts have no
# package source): nothing today (the agent bundle's runtime needs only python3).
declare -A ROOTFS_EXTRA=()
# Bump when the customisation below changes, so cached root file systems are rebuilt.
ROOTFS_RECIPE=5

CONTROLPLANE_PORT=${ARC_TESTHOSTS_CONTROLPLANE_PORT:-8443}
# The control plane's Arc gateway service (serve --gateway-port; docs/gateway.md).
GATEWAY_PORT=${ARC_TESTHOSTS_GATEWAY_PORT:-8444}
PROXY_PORT=3128
# The control plane serves each service under its own name in this domain (serve
# --endpoint-domain); the hosts resolve them through /etc/hosts.
ENDPOINT_DOMAIN=${ARC_TESTHOSTS_ENDPOINT_DOMAIN:-arc.lab}
MANAGEMENT_NAMES="login.$ENDPOINT_DOMAIN management.$ENDPOINT_DOMAIN"
ARC_NAMES="gbl.his.$ENDPOINT_DOMAIN agentserviceapi.guestconfiguration.$ENDPOINT_DOMAIN"
ARC_NAMES+=" guestnotificationservice.$ENDPOINT_DOMAIN download.$ENDPOINT_DOMAIN"

suite_of() { local i=$1; ((i <= ${#SUITES[@]})) || i=${#SUITES[@]}; echo "${SUITES[$((i - 1))]}"; }
rootfs_of() { echo "$CACHE_DIR/rootfs-$1"; }
KEY=$CACHE_DIR/keys/id_ed25519
INVENTORY=$STATE_DIR/inventory.ini
SELF=$(readlink -f "$0")
# Parent of the hosts' own cgroups (see host_up), one per state directory.
CGROUP_PARENT=hybridops-arc${STATE_DIR//\//-}

log() { printf 'testhosts: %s\n' "$*" >&2; }
die() { printf 'testhosts: error: %s\n' "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (network namespaces, mounts, systemd-nspawn)"; }

need_tools() {
  local missing=()
  for t in debootstrap systemd-nspawn socat ip ssh ssh-keygen; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  [ ${#missing[@]} = 0 ] || die "missing tools: ${missing[*]}; install: apt-get install debootstrap systemd-container socat iproute2 openssh-client"
}

debian_mirror() {
  # The mirror apt already uses on this machine (deb822 or one-line format).
  local m=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

packages_of() { echo "$ROOTFS_PACKAGES${ROOTFS_EXTRA[$1]:+,${ROOTFS_EXTRA[$1]}}"; }
recipe_stamp() { echo "$1 $(packages_of "$1") $ROOTFS_RECIPE"; }
is_ubuntu() { [[ $1 =~ ^(jammy|noble)$ ]]; }

# The Ubuntu archive's signing keys as Debian ships them (the ubuntu-keyring package of Debian
# trixie), trusted through Debian's own chain: the release file signed with the Debian archive
# keys this machine has, the package list's checksum in it, the package's checksum in that.
ubuntu_keyring() {
  local dir=$CACHE_DIR/ubuntu-keyring keyring
  keyring=$dir/usr/share/keyrings/ubuntu-archive-keyring.gpg
  if [ -f "$keyring" ]; then echo "$keyring"; return 0; fi
  local tmp mirror list sum file deb_sum
  tmp=$(mktemp -d) mirror=$(debian_mirror) list=main/binary-amd64/Packages.xz  # lists the arch-all packages too
  curl -fsS --retry 3 -o "$tmp/InRelease" "$mirror/dists/trixie/InRelease" || die "cannot fetch $mirror/dists/trixie/InRelease"
  gpgv --keyring /usr/share/keyrings/debian-archive-keyring.gpg --output "$tmp/Release" "$tmp/InRelease" 2>"$tmp/gpgv.log" \
    || die "Debian's trixie release file does not verify: $(cat "$tmp/gpgv.log")"
  sum=$(awk -v f="$list" '/^SHA256:/ {s = 1; next} /^[^ ]/ {s = 0} s && $3 == f {print $1}' "$tmp/Release")
  curl -fsS --retry 3 -o "$tmp/Packages.xz" "$mirror/dists/trixie/$list"
  echo "$sum  $tmp/Packages.xz" | sha256sum --check --quiet --strict - || die "trixie's $list does not match its release file"
  read -r file deb_sum < <(xz -dc "$tmp/Packages.xz" | awk '/^Package: / {p = ($2 == "ubuntu-keyring")} p && /^Filename: / {f = $2} p && /^SHA256: / {print f, $2; exit}')
  [ -n "$file" ] || die "no ubuntu-keyring package in Debian trixie"
  curl -fsS --retry 3 -o "$tmp/keyring.deb" "$mirror/$file"
  echo "$deb_sum  $tmp/keyring.deb" | sha256sum --check --quiet --strict - || die "$file does not match trixie's package list"
  rm -rf "$dir" && mkdir -p "$dir" && dpkg-deb -x "$tmp/keyring.deb" "$dir"
  rm -rf "$tmp"
  [ -f "$keyring" ] || die "ubuntu-keyring has no $keyring"
  echo "$keyring"
}

# The cached root file system of each release the hosts use (debootstrap checks the release's
# signature with the Debian archive keyring).
cmd_rootfs() {
  need_root; need_tools
  mkdir -p "$CACHE_DIR/keys"
  [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C hybridops-arc-testhosts -f "$KEY"
  local suite
  for suite in $(printf '%s\n' "${SUITES[@]}" | sort -u); do rootfs_build "$suite"; done
}

rootfs_build() {
  local suite=$1 rootfs; rootfs=$(rootfs_of "$1")
  if [ -f "$rootfs/.hybridops-recipe" ] && [ "$(cat "$rootfs/.hybridops-recipe")" = "$(recipe_stamp "$suite")" ]; then
    return 0
  fi
  local tmp=$rootfs.build.$$ debootstrap_log=$CACHE_DIR/debootstrap-$suite.log
  rm -rf "$tmp"
  log "building the $suite root file system in $tmp (once; about 1-2 minutes)"
  local -a source=("$suite" "$tmp" "$(debian_mirror)") options=()
  if is_ubuntu "$suite"; then  # libfaketime is in universe; gutsy is debootstrap's script for every Ubuntu release
    source=("$suite" "$tmp" "$UBUNTU_MIRROR" /usr/share/debootstrap/scripts/gutsy)
    local keyring; keyring=$(ubuntu_keyring) || exit 1
    options=("--components=main,universe" "--keyring=$keyring")
  fi
  debootstrap --variant=minbase "${options[@]}" --include="$(packages_of "$suite")" "${source[@]}" >"$debootstrap_log" 2>&1 \
    || { tail -20 "$debootstrap_log" >&2; rm -rf "$tmp"; die "debootstrap failed (log: $debootstrap_log)"; }
  rm -f "$tmp"/var/cache/apt/archives/*.deb
  install -d -m 700 "$tmp/root/.ssh"
  install -m 600 "$KEY.pub" "$tmp/root/.ssh/authorized_keys"
  cat >"$tmp/etc/ssh/sshd_config.d/testhosts.conf" <<'EOF'
# hybridops.arc test host: root logs in with the generated key only
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
MaxStartups 200:30:400
MaxSessions 100
EOF
  # Each host gets its own machine id at boot (written per host in host_up).
  : >"$tmp/etc/machine-id"
  # Nothing to do for these in a container without consoles or network configuration;
  # systemd-remount-fs has no fstab to apply (the overlay is mounted by us) and was seen to
  # fail now and then at boot, leaving the host 'degraded'.
  chroot "$tmp" systemctl mask getty@tty1.service serial-getty@ttyS0.service systemd-remount-fs.service \
    systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer >/dev/null 2>&1 || true
  recipe_stamp "$suite" >"$tmp/.hybridops-recipe"
  rm -rf "$rootfs"
  mv "$tmp" "$rootfs"
  log "root file system ready: $rootfs"
}

ctl_up() {
  sysctl -q -w fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=1048576
  # Safety belt first: from the root namespace the test range can never leave the machine.
  ip route replace blackhole "$NET.0/24"
  ip netns add "$CTL_NS"
  ip -n "$CTL_NS" link set lo up
  ip -n "$CTL_NS" link add "$BRIDGE" type bridge
  ip -n "$CTL_NS" addr add "$NET.1/24" dev "$BRIDGE"
  ip -n "$CTL_NS" addr add "$NET.2/24" dev "$BRIDGE"
  ip -n "$CTL_NS" link set "$BRIDGE" up
  # What runs in the controller namespace (ip netns exec: the proxy, the tests' probes) resolves
  # the services' names as the hosts do.
  mkdir -p "/etc/netns/$CTL_NS"
  service_hosts >"/etc/netns/$CTL_NS/hosts"
}

# The lines of /etc/hosts that name the control plane and its services.
service_hosts() {
  printf '127.0.0.1 localhost
%s controlplane %s
%s %s
' "$NET.1" "$MANAGEMENT_NAMES" "$NET.2" "$ARC_NAMES"
}

host_up() {
  local i=$1 ns=$HOST_NS_PREFIX$1 d=$STATE_DIR/h$1 addr=$NET.$((10 + $1))
  mkdir -p "$d/upper" "$d/work" "$d/root"
  mount -t overlay overlay -o "lowerdir=$(rootfs_of "$(suite_of "$i")"),upperdir=$d/upper,workdir=$d/work" "$d/root"
  echo "h$i" >"$d/root/etc/hostname"
  { service_hosts; printf '%s h%s\n' "$addr" "$i"; } >"$d/root/etc/hosts"
  local uuid; uuid=$(cat /proc/sys/kernel/random/uuid)
  echo "${uuid//-/}" >"$d/root/etc/machine-id"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "arcv$i" netns "$CTL_NS" type veth peer name eth0 netns "$ns"
  ip -n "$CTL_NS" link set "arcv$i" master "$BRIDGE" up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  host_boot "$i"
}

# Boot host i's systemd in its namespace, on its overlay (made by host_up; kept across reboots).
host_boot() {
  local i=$1 ns=$HOST_NS_PREFIX$1 d=$STATE_DIR/h$1 uuid
  uuid=$(cat "$d/root/etc/machine-id")
  # --register=no --keep-unit: this machine has no systemd/dbus of its own to register with.
  # --keep-unit makes nspawn use the cgroup it was started in for the container's tree
  # (<cgroup>/payload/...). Each host therefore starts in a cgroup of its own: sharing one,
  # two booting systemds create and remove each other's unit cgroups, and units fail at
  # random with status 219/CGROUP, leaving the host 'degraded'.
  # shellcheck disable=SC2046 # cpu_binds prints whole options without spaces in them
  setsid "$SELF" _in-cgroup "h$i" systemd-nspawn -q -D "$d/root" --boot --register=no --keep-unit --console=passive \
    $(cpu_binds "$i") \
    --uuid="${uuid:0:8}-${uuid:8:4}-${uuid:12:4}-${uuid:16:4}-${uuid:20:12}" --network-namespace-path="/run/netns/$ns" --machine="h$i" --hostname="h$i" \
    --resolv-conf=off --timezone=off --link-journal=no \
    </dev/null >"$d/nspawn.log" 2>&1 &
  echo $! >"$d/pid"
}

ssh_opts() {
  printf '%s\n' -i "$KEY" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o ConnectTimeout=3 -o "ProxyCommand=ip netns exec $CTL_NS socat - TCP:%h:%p"
}

wait_ssh() {
  local i=$1 addr=$NET.$((10 + $1)) deadline=$((SECONDS + BOOT_TIMEOUT))
  local -a opts; mapfile -t opts < <(ssh_opts)
  while ((SECONDS < deadline)); do
    kill -0 "$(cat "$STATE_DIR/h$i/pid")" 2>/dev/null || { log "h$i: systemd-nspawn exited; see $STATE_DIR/h$i/nspawn.log"; return 1; }
    if ssh "${opts[@]}" "root@$addr" true 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  log "h$i: no ssh answer from $addr within ${BOOT_TIMEOUT}s; see $STATE_DIR/h$i/nspawn.log"
  return 1
}

write_inventory() {
  local n=$1 tmp=$INVENTORY.tmp
  {
    echo "# Written by tests/hosts/testhosts.sh; hosts h1..h$n on $NET.0/24"
    echo "[testhosts]"
    for i in $(seq 1 "$n"); do echo "h$i ansible_host=$NET.$((10 + i)) arc_testhosts_suite=$(suite_of "$i")"; done
    echo
    echo "[testhosts:vars]"
    echo "ansible_user=root"
    echo "ansible_ssh_private_key_file=$KEY"
    echo "ansible_python_interpreter=/usr/bin/python3"
    echo "ansible_control_path_dir=$STATE_DIR/cp"
    echo "ansible_ssh_common_args='-o ProxyCommand=\"ip netns exec $CTL_NS socat - TCP:%h:%p\" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'"
    echo "arc_testhosts_controller_address=$NET.1"
  } >"$tmp"
  mv "$tmp" "$INVENTORY"
}

cmd_up() {
  local n=${1:-3}
  if ! [[ "$n" =~ ^[0-9]+$ ]] || ((n < 1 || n > MAX_HOSTS)); then die "N must be a number from 1 to $MAX_HOSTS (got '$n')"; fi
  need_root; need_tools
  cmd_rootfs
  cmd_down quiet
  mkdir -p "$STATE_DIR"
  local t0=$SECONDS
  ctl_up
  for i in $(seq 1 "$n"); do host_up "$i"; done
  write_inventory "$n"
  local pids=() failed=0
  for i in $(seq 1 "$n"); do wait_ssh "$i" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  ((failed == 0)) || die "some hosts did not come up; 'testhosts.sh down' cleans up"
  log "$n host(s) up in $((SECONDS - t0))s; inventory: $INVENTORY"
}

stop_pid() {
  # systemd-nspawn: the first SIGTERM is a clean poweroff of the container, a second one is immediate.
  local p=$1
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
}

# The cgroup hierarchies systemd inside a host uses for its own tree (hybrid layout here:
# v1 name=systemd plus the cgroup2 'unified' one; a pure cgroup2 machine has just the root),
# and the v1 cpu and cpuacct hierarchies delegated to it (cpu_controllers).
cgroup_roots() {
  local r
  for r in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup $(cpu_controllers); do
    [ -f "$r/cgroup.procs" ] && echo "$r"
  done
  return 0
}

# The cgroup v1 cpu and cpuacct hierarchies of a hybrid machine (none on a pure cgroup2 one).
# nspawn mounts v1 controllers read-only inside a host, so systemd there accepts CPUQuota= and
# enforces nothing; binding the host's own cgroup of each of them read-write in their place
# lets it set cpu.cfs_quota_us for its units (docs/test-hosts.md).
cpu_controllers() {
  local c
  for c in cpu cpuacct; do
    [ "$(stat -f -c %T "/sys/fs/cgroup/$c" 2>/dev/null)" = cgroupfs ] && echo "/sys/fs/cgroup/$c"
  done
  return 0
}

# systemd-nspawn options that hand host i its cgroup of each cpu_controllers hierarchy.
cpu_binds() {
  local i=$1 r binds=()
  for r in $(cpu_controllers); do
    mkdir -p "$r/$CGROUP_PARENT/h$i"
    binds+=("--bind=$r/$CGROUP_PARENT/h$i:$r")
  done
  ((${#binds[@]} == 0)) || echo "--tmpfs=/sys/fs/cgroup:mode=755 ${binds[*]}"
}

# testhosts.sh _in-cgroup NAME COMMAND...: move into our own cgroup NAME in every hierarchy, then exec.
cmd_in_cgroup() {
  local name=$1 r; shift
  for r in $(cgroup_roots); do
    mkdir -p "$r/$CGROUP_PARENT/$name"
    echo $$ >"$r/$CGROUP_PARENT/$name/cgroup.procs"
  done
  exec "$@"
}

# Remove the cgroup trees the hosts left, deepest first; killed processes may take a moment
# to leave them.
remove_cgroups() {
  local r left
  for _ in $(seq 50); do
    left=0
    for r in $(cgroup_roots); do
      [ -d "$r/$CGROUP_PARENT" ] || continue
      find "$r/$CGROUP_PARENT" -depth -type d -exec rmdir {} + 2>/dev/null || left=1
    done
    ((left)) || return 0
    sleep 0.1
  done
  log "warning: could not remove cgroup $CGROUP_PARENT (processes still in it?)"
}

host_down() {
  local d=$1
  [ -f "$d/pid" ] && stop_pid "$(cat "$d/pid")"
  if mountpoint -q "$d/root"; then umount "$d/root" 2>/dev/null || umount -l "$d/root"; fi
  rm -rf "$d"
}

cmd_down() {
  need_root
  local quiet=${1:-}
  # Close ssh masters that point at the test range before their hosts vanish: those of runs
  # using our inventory (which keeps them in the lab's own directory) and, for lab 0, those in
  # Ansible's default directory (molecule).
  local cp_dirs=("$STATE_DIR/cp")
  [ "$LAB" != 0 ] || cp_dirs+=("${HOME:-/root}/.ansible/cp")
  local dir s
  for dir in "${cp_dirs[@]}"; do
    for s in "$dir"/*; do
      if [ -S "$s" ]; then ssh -O exit -o ControlPath="$s" dummy >/dev/null 2>&1 || true; fi
    done
  done
  # Stop every nspawn whose root lies under our state directory, whatever run started it.
  local pids
  pids=$(pgrep -f "systemd-nspawn .*-D $STATE_DIR/h[0-9]+/root" || true)
  for p in $pids; do stop_pid "$p" & done
  wait
  # A crash that killed systemd-nspawn itself leaves the container running on its own (its
  # systemd even survives SIGTERM by re-executing). Find such processes by their root mount,
  # one of our overlays, and kill them: killing a PID namespace's init ends all of it.
  local orphans
  orphans=$(awk -v upper="upperdir=$STATE_DIR/h" '$5 == "/" && index($0, upper) { split(FILENAME, p, "/"); print p[3]; nextfile }' \
    /proc/[0-9]*/mountinfo 2>/dev/null || true)
  for p in $orphans; do kill -KILL "$p" 2>/dev/null || true; done
  if [ -d "$STATE_DIR" ]; then
    for d in "$STATE_DIR"/h*; do [ -d "$d" ] && host_down "$d" & done
    wait
  fi
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^(${HOST_NS_PREFIX}[0-9]+|${CTL_NS})$" || true); do
    # Anything still running in a namespace we own (a control plane, a stray socat) goes with it.
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  remove_cgroups
  rm -rf "$INVENTORY" "$STATE_DIR/controlplane" "$STATE_DIR/proxy" "/etc/netns/$CTL_NS"
  # The blackhole route stays: it is harmless and keeps the range from ever leaving the machine.
  [ -n "$quiet" ] || log "all test hosts stopped"
}

# testhosts.sh reboot I [crash]: host I restarted on the same disk and network. A clean reboot
# powers it off first; 'crash' kills its init at once, as a power cut would. Waits for ssh.
cmd_reboot() {
  need_root
  local i=${1:-} how=${2:-clean} d p init
  [[ $i =~ ^[0-9]+$ ]] || die "usage: testhosts.sh reboot I [crash]"
  d=$STATE_DIR/h$i
  [ -f "$d/pid" ] || die "h$i is not up"
  p=$(cat "$d/pid")
  if [ "$how" = crash ]; then
    # nspawn's child is the host's init; killing a PID namespace's init ends all of it.
    init=$(pgrep -P "$p" | head -n 1)
    [ -n "$init" ] && kill -KILL "$init"
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  else
    stop_pid "$p"
  fi
  host_boot "$i"
  wait_ssh "$i" || die "h$i did not come back; see $d/nspawn.log"
  log "h$i rebooted ($how)"
}

cmd_status() {
  [ -f "$INVENTORY" ] || { echo "no test hosts"; return 0; }
  for d in "$STATE_DIR"/h*; do
    [ -f "$d/pid" ] || continue
    local h; h=$(basename "$d")
    if kill -0 "$(cat "$d/pid")" 2>/dev/null; then echo "$h running"; else echo "$h stopped"; fi
  done
}

cmd_hosts_json() {
  [ -f "$INVENTORY" ] || die "no test hosts are up; run: testhosts.sh up N"
  local first=1
  printf '['
  while read -r name addr suite; do
    ((first)) || printf ','
    first=0
    printf '{"name":"%s","address":"%s","key":"%s","suite":"%s"}' "$name" "${addr#ansible_host=}" "$KEY" "${suite#arc_testhosts_suite=}"
  done < <(grep -E '^h[0-9]+ ansible_host=' "$INVENTORY")
  printf ']\n'
}

cmd_controlplane() {
  need_root
  local d=$STATE_DIR/controlplane url="https://$NET.1:$CONTROLPLANE_PORT"
  case ${1:-} in
    start)
      shift  # the rest are more 'serve' options, e.g. --heartbeat-interval 5
      ip netns list | grep -qw "$CTL_NS" || die "no test network; run: testhosts.sh up N"
      local bin=${ARC_CONTROLPLANE_BIN:-$(command -v arc-controlplane || true)}
      [ -n "$bin" ] || die "arc-controlplane not found; install controlplane/ (make venv) or set ARC_CONTROLPLANE_BIN"
      cmd_controlplane stop
      mkdir -p "$d"
      # On every address of the namespace: .1 (its URL; identity and management) and .2 (the Arc
      # services' names).
      setsid ip netns exec "$CTL_NS" "$bin" serve --data-dir "$d/data" --bind 0.0.0.0 --port "$CONTROLPLANE_PORT" \
        --public-url "$url" --san "$NET.1" --san "$NET.2" --san controlplane --endpoint-domain "$ENDPOINT_DOMAIN" \
        --gateway-port "$GATEWAY_PORT" "$@" </dev/null >"$d/serve.log" 2>&1 &
      echo $! >"$d/pid"
      local deadline=$((SECONDS + 60))
      until [ -f "$d/data/pki/ca.pem" ] && ip netns exec "$CTL_NS" curl -sf --max-time 2 --cacert "$d/data/pki/ca.pem" "$url/healthz" >/dev/null 2>&1; do
        kill -0 "$(cat "$d/pid")" 2>/dev/null || { tail -20 "$d/serve.log" >&2; die "arc-controlplane exited; log: $d/serve.log"; }
        ((SECONDS < deadline)) || die "arc-controlplane did not answer on $url/healthz within 60s; log: $d/serve.log"
        sleep 0.2
      done
      log "control plane up: $url (CA: $d/data/pki/ca.pem)"
      ;;
    stop)
      if [ -f "$d/pid" ]; then
        local p; p=$(cat "$d/pid")
        kill -TERM "$p" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        rm -f "$d/pid"
      fi
      ;;
    url) echo "$url" ;;
    ca) if [ -f "$d/data/pki/ca.pem" ]; then echo "$d/data/pki/ca.pem"; else die "the control plane has not run yet"; fi ;;
    *) die "usage: testhosts.sh controlplane start [SERVE OPTIONS]|stop|url|ca" ;;
  esac
}

# testhosts.sh proxy start|stop|url|log: the lab's HTTP proxy, tinyproxy in the controller
# namespace on ${NET}.1:3128, for the hosts' network only, allowed to CONNECT to the control
# plane's port; every request in its log ($STATE_DIR/proxy/access.log).
cmd_proxy() {
  need_root
  local d=$STATE_DIR/proxy
  case ${1:-} in
    start)
      ip netns list | grep -qw "$CTL_NS" || die "no test network; run: testhosts.sh up N"
      command -v tinyproxy >/dev/null || die "tinyproxy is not installed (apt-get install tinyproxy; make deps does)"
      cmd_proxy stop
      mkdir -p "$d"
      : >"$d/access.log"
      printf '%s\n' "Port $PROXY_PORT" "Listen $NET.1" "Timeout 600" "LogFile \"$d/access.log\"" "LogLevel Connect" \
        "MaxClients 200" "Allow $NET.0/24" "Allow 127.0.0.1" "ConnectPort $CONTROLPLANE_PORT" "ConnectPort $GATEWAY_PORT" "DisableViaHeader Yes" >"$d/tinyproxy.conf"
      setsid ip netns exec "$CTL_NS" tinyproxy -d -c "$d/tinyproxy.conf" </dev/null >"$d/tinyproxy.out" 2>&1 &
      echo $! >"$d/pid"
      local deadline=$((SECONDS + 20))
      until ip netns exec "$CTL_NS" bash -c "exec 3<>/dev/tcp/$NET.1/$PROXY_PORT" 2>/dev/null; do
        kill -0 "$(cat "$d/pid")" 2>/dev/null || die "tinyproxy exited: $(tail -5 "$d/tinyproxy.out" "$d/access.log")"
        ((SECONDS < deadline)) || die "tinyproxy did not listen on $NET.1:$PROXY_PORT within 20s"
        sleep 0.1
      done
      log "proxy up: http://$NET.1:$PROXY_PORT (log: $d/access.log)"
      ;;
    stop)
      if [ -f "$d/pid" ]; then
        kill -TERM "$(cat "$d/pid")" 2>/dev/null || true
        rm -f "$d/pid"
      fi
      ;;
    url) echo "http://$NET.1:$PROXY_PORT" ;;
    log) cat "$d/access.log" 2>/dev/null || true ;;
    *) die "usage: testhosts.sh proxy start|stop|url|log" ;;
  esac
}

# testhosts.sh isolate I|all on|off: a policy routing rule in host I's namespace makes TCP to
# the control plane's API port 'unreachable' (the host sees "No route to host"); everything else,
# ssh, the proxy and the Arc gateway's port included, is untouched. 'off' removes it.
cmd_isolate() {
  need_root
  local which=${1:-} how=${2:-on} i ns
  [[ $which =~ ^([0-9]+|all)$ && $how =~ ^(on|arc|off)$ ]] || die "usage: testhosts.sh isolate I|all on|arc|off"
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^${HOST_NS_PREFIX}[0-9]+$" || true); do
    i=${ns#"$HOST_NS_PREFIX"}
    [ "$which" = all ] || [ "$which" = "$i" ] || continue
    for address in "$NET.1" "$NET.2"; do
      ip -n "$ns" rule del to "$address" ipproto tcp dport "$CONTROLPLANE_PORT" unreachable 2>/dev/null || true
    done
    [ "$how" = off ] || ip -n "$ns" rule add to "$NET.1" ipproto tcp dport "$CONTROLPLANE_PORT" unreachable
    [ "$how" != on ] || ip -n "$ns" rule add to "$NET.2" ipproto tcp dport "$CONTROLPLANE_PORT" unreachable
  done
}

case ${1:-} in
  rootfs) cmd_rootfs ;;
  up) shift; cmd_up "$@" ;;
  reboot) shift; cmd_reboot "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  inventory) if [ -f "$INVENTORY" ]; then echo "$INVENTORY"; else die "no test hosts are up; run: testhosts.sh up N"; fi ;;
  hosts-json) cmd_hosts_json ;;
  controlplane) shift; cmd_controlplane "$@" ;;
  proxy) shift; cmd_proxy "$@" ;;
  isolate) shift; cmd_isolate "$@" ;;
  ctl) shift; need_root; exec ip netns exec "$CTL_NS" "$@" ;;
  key) echo "$KEY" ;;
  env)
    # What tools need to reach this lab, as JSON.
    printf '{"lab": %s, "net": "%s", "ctl_ns": "%s", "state_dir": "%s", "controlplane_url": "https://%s.1:%s", "key": "%s", "cgroup": "%s"}\n' \
      "$LAB" "$NET" "$CTL_NS" "$STATE_DIR" "$NET" "$CONTROLPLANE_PORT" "$KEY" "$CGROUP_PARENT" ;;
  _in-cgroup) shift; cmd_in_cgroup "$@" ;;
  *) sed -n '2,/^set -euo pipefail/{/^set -euo/!p}' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
