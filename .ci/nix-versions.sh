#!/usr/bin/env bash
# Runs the nix-facing tests (.ci/nix-facing-tests) on the Nix of newer Debian suites: each suite's
# nix-bin inside a minimal Debian root of its own (debootstrap --variant=minbase), with its own
# /nix — never the host's store, which a newer Nix would migrate to its own schema.
#
#   .ci/nix-versions.sh [--record] <suite>...      e.g. .ci/nix-versions.sh trixie sid
#
# --record also records nix's messages there (scripts/record-nix-messages.ts).
# Roots are cached in $NIXVM_CI_CACHE (default /var/cache/nixvm-ci/<suite>) and rebuilt when
# missing, broken or made from another recipe; NIXVM_CI_REFRESH=1 rebuilds them anyway. One lock
# per suite: a second CI run waits instead of building or using a root at the same time.
# The mounts live in a private mount namespace (unshare) and are unmounted by a trap as well, so
# neither a failure nor a kill leaves the host's /proc, /sys, /dev or the checkout mounted there.
set -euo pipefail

SELF=$(realpath "$0")
CHECKOUT=$(cd "$(dirname "$SELF")/.." && pwd -P)
CACHE=${NIXVM_CI_CACHE:-/var/cache/nixvm-ci}
MIRROR=${NIXVM_CI_MIRROR:-http://deb.debian.org/debian}
# What each root holds: nix, git (git flakes), procps (ps: the agent checks its VMs' processes),
# erofs-utils (the store images: the suite's own 1.8, whose mkfs.erofs reads a tar stream),
# python3 (the simulator's pty helper: every simulated VM's console is a pty, as vfkit's is).
PACKAGES=(nix-bin git procps erofs-utils python3 openssh-client openssh-server)
RECIPE="minbase ${PACKAGES[*]} mirror=$MIRROR v1"
MARKER=.nixvm-ci-root

say() { printf '%s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

# Everything mounted at or below $1, deepest first.
mounts_under() {
  awk -v r="$1" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}

# Remove a root, but only once nothing is mounted in it: rm -rf through a bind mount of /dev or
# of the checkout would delete the real thing.
remove_root() {
  local dir=$1 m
  for m in $(mounts_under "$dir"); do umount "$m" 2>/dev/null || umount -l "$m" || true; done
  if [ -n "$(mounts_under "$dir")" ]; then
    die "CI cannot remove the Debian root $dir: something is still mounted in it ($(mounts_under "$dir" | tr '\n' ' '))."
  fi
  rm -rf --one-file-system "$dir"
}

# In a private mount namespace (see "ns" below): mount what a root needs, run a command there.
# Run in the background and waited for, so that a signal to this script reaches it (the trap
# below) instead of waiting for the tests to end.
child=
in_root() {
  local root=$1 rc=0
  shift
  unshare --mount --propagation private "$SELF" __ns "$root" "$CHECKOUT" "$@" &
  child=$!
  wait "$child" || rc=$?
  child=
  return $rc
}
jobs=()
on_signal() {
  local j
  for j in ${child:+"$child"} "${jobs[@]}"; do kill -TERM "$j" 2>/dev/null || true; done
  for j in ${child:+"$child"} "${jobs[@]}"; do wait "$j" 2>/dev/null || true; done
  exit 130
}
trap on_signal INT TERM

# A working root: its marker names this recipe, and nix, git and ps run in it (they need /proc).
root_ok() {
  local root=$1
  [ "$(cat "$root/$MARKER" 2>/dev/null)" = "$RECIPE" ] &&
    in_root "$root" sh -c 'nix --version && git --version && ps --version' >/dev/null 2>&1
}

make_root() {
  local suite=$1 root=$2 log=$2.log
  local tmp=$root.new
  say "Making the Debian $suite root in $root (log: $log)…"
  remove_root "$tmp"
  local apt_conf=()
  # sid's Release file can be past its Valid-Until date on the mirror; only sid is let off.
  [ "$suite" = sid ] && apt_conf=(-o 'Acquire::Check-Valid-Until=false')
  {
    mkdir -p "$CACHE/debs-$suite" &&
      debootstrap --variant=minbase --cache-dir="$CACHE/debs-$suite" "$suite" "$tmp" "$MIRROR" &&
      if [ "$suite" = sid ]; then
        printf 'Acquire::Check-Valid-Until "false";\n' >"$tmp/etc/apt/apt.conf.d/99nixvm-ci-sid"
      fi &&
      in_root "$tmp" apt-get "${apt_conf[@]}" update &&
      in_root "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PACKAGES[@]}" &&
      in_root "$tmp" apt-get clean
  } >"$log" 2>&1 || {
    remove_root "$tmp"
    tail -n 3 "$log" >&2
    die "CI cannot make the Debian $suite root for Nix tests (debootstrap or apt-get from $MIRROR failed, see $log); check that the mirror is reachable and run .ci/run again."
  }
  printf '%s' "$RECIPE" >"$tmp/$MARKER"
  root_ok "$tmp" || die "CI made the Debian $suite root but nix, git or ps does not run in it (see $log)."
  remove_root "$root"
  mv "$tmp" "$root"
}

# ---- inside the private mount namespace ----------------------------------------------------
if [ "${1:-}" = __ns ]; then
  root=$2 checkout=$3
  shift 3
  mounted=()
  cleanup() {
    local i pid
    # Our own processes still running in the root (a simulated VM a failed test left behind).
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
      [ "$pid" = $$ ] && continue
      [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$root" ] && kill -9 "$pid" 2>/dev/null || true
    done
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true; done
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  bind() {
    mkdir -p "$2"
    mount --bind "$1" "$2"
    mounted+=("$2")
  }
  bind /proc "$root/proc"
  bind /sys "$root/sys"
  bind /dev "$root/dev"
  bind /dev/pts "$root/dev/pts" # nix builds need a pseudo-terminal
  mount -t tmpfs -o size=4g tmpfs "$root/tmp" && mounted+=("$root/tmp") # a fresh /tmp each run
  [ "$checkout" = / ] || bind "$checkout" "$root$checkout"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  # In the background and waited for, so that a signal runs the trap at once.
  # NIXVM_SIM_PRIVATE_MOUNTS: this namespace's mounts are private (unshare above), so the
  # simulator may mount a guest's /nix in a namespace of its own without --propagation private,
  # which a chroot's root (not a mount point) cannot be given.
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb CI="${CI:-1}" NIXVM_SIM_PRIVATE_MOUNTS=1 \
    PATH="$checkout/node_modules/.bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
    ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
    sh -c 'cd "$0" && exec "$@"' "$checkout" "$@" &
  wait $! || exit $?
  exit 0
fi

# ---- main ----------------------------------------------------------------------------------
record=0
if [ "${1:-}" = --record ]; then
  record=1
  shift
fi
[ $# -gt 0 ] || die "usage: .ci/nix-versions.sh [--record] <debian suite>..."
[ "$(id -u)" = 0 ] || die "CI needs root to make and enter the Debian roots (debootstrap, mount, chroot); run .ci/run as root."
command -v debootstrap >/dev/null || die "CI needs debootstrap (apt-get install debootstrap) to make the Debian roots."
[ -x "$CHECKOUT/node_modules/.bin/node" ] || die "CI needs the project's Node in $CHECKOUT/node_modules/.bin: run npm ci first."

mapfile -t TESTS < <(grep -Ev '^\s*(#|-|$)' "$CHECKOUT/.ci/nix-facing-tests")
mkdir -p "$CACHE"

# Hold the suite's lock on file descriptor $lock (waiting, and saying so, if another run has it).
lock_suite() {
  exec {lock}>"$CACHE/$1.lock"
  if ! flock -n "$lock"; then
    say "Waiting for another CI run to finish with the $1 root…"
    flock "$lock"
  fi
}

# 1. Every root that is missing, broken or stale is made, all at once (mostly downloads).
t0=$SECONDS
for suite in "$@"; do
  (
    lock_suite "$suite"
    if [ "${NIXVM_CI_REFRESH:-0}" = 1 ] || ! root_ok "$CACHE/$suite"; then make_root "$suite" "$CACHE/$suite"; fi
  ) &
  jobs+=($!)
done
for j in "${jobs[@]}"; do wait "$j" || exit 1; done
say "== Debian roots ready in $((SECONDS - t0))s"

# 2. The tests, one suite after the other (two cores: side by side they would only slow each other).
status=0
for suite in "$@"; do
  root=$CACHE/$suite
  t0=$SECONDS
  lock_suite "$suite"
  # Another run may have replaced it between the two steps: check again.
  root_ok "$root" || make_root "$suite" "$root"
  version=$(in_root "$root" nix --version)
  say "== $suite: $version, the nix-facing tests:"
  if [ $record = 1 ]; then
    in_root "$root" node scripts/record-nix-messages.ts || status=1
  fi
  if in_root "$root" node_modules/.bin/vitest run "${TESTS[@]}"; then
    say "== $suite: $version passed in $((SECONDS - t0))s"
  else
    say "== $suite: $version FAILED after $((SECONDS - t0))s"
    status=1
  fi
  exec {lock}>&-
done
exit $status
