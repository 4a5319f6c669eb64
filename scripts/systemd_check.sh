#!/usr/bin/env bash
# make systemd-check: on a new minimal Debian bookworm booted with systemd as PID 1, the set-up
# and a short part of the suite leave no system containerd or registry service enabled or
# running that was not before; and the same check does report one when a package is installed
# without the set-up's protection.
#
# The root is built like fresh-check's (scripts/fresh_root.sh) and booted twice with
# `systemd-nspawn -b`; each boot runs one oneshot unit and powers off:
#   boot 1 (host network, for the apt mirror): record running services, enabled units and
#          listeners; `sh scripts/setup.sh`; a few tests that start the project's private
#          containerd and registry; record again and compare.
#   boot 2 (private network, so a system registry binds :5000 only inside): first check that
#          nothing the set-up installed came up at boot; then purge containerd and
#          docker-registry and install their .debs again with plain dpkg (no policy-rc.d, as a
#          user installing them by hand would) and show that the comparison reports them.
# It reports each step's result and time and removes everything it made.
#
# Environment: SYSTEMD_CHECK_PYTEST (pytest arguments for boot 1), SYSTEMD_CHECK_TIMEOUT (seconds
# per boot, default 2400), FRESH_CHECK_CACHE and FRESH_CHECK_MIRROR (as for fresh-check).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
suite=bookworm
cache=${FRESH_CHECK_CACHE:-/var/cache/libcontainerd-fresh}
boot_timeout=${SYSTEMD_CHECK_TIMEOUT:-2400}
# Tests that start the project's private containerd and registry (a pytest command line, split
# as the shell would).
default_pytest='tests/integration/test_test_services.py -k "containerd_is_private_and_stops_clean or registry_plain_http"'
pytest_args=${SYSTEMD_CHECK_PYTEST:-$default_pytest}
checkout=/root/libcontainerd
logs=/var/log/systemd-check

die() {
    echo "systemd-check: $*" >&2
    exit 2
}

[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, systemd-nspawn)"
command -v debootstrap >/dev/null || die "needs debootstrap: apt-get install debootstrap"
command -v systemd-nspawn >/dev/null || die "needs systemd-nspawn: apt-get install systemd-container"
# On a host whose PID 1 is not systemd, nspawn cannot ask systemd for a scope unit; it then runs
# the container in the cgroup it was started in (--keep-unit), which must be a systemd-named one.
[[ -d /sys/fs/cgroup/systemd || -f /sys/fs/cgroup/cgroup.controllers ]] ||
    die "needs a name=systemd (cgroup v1) or a unified (cgroup v2) hierarchy under /sys/fs/cgroup"

# shellcheck source=scripts/fresh_root.sh
source "$repo/scripts/fresh_root.sh"

workdir=$(mktemp -d /var/tmp/libcontainerd-systemd.XXXXXX)
root=$workdir/root
machine=lcd-systemd-check-${workdir##*.}
# The cgroups the booted system lives in (one per systemd-relevant hierarchy): made here so that
# its cgroups stay below ours and never land at the host's top level.
cgroups=()
if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    cgroups+=("/sys/fs/cgroup/$machine")
else
    cgroups+=("/sys/fs/cgroup/systemd/$machine")
    [[ -d /sys/fs/cgroup/unified ]] && cgroups+=("/sys/fs/cgroup/unified/$machine")
fi
nspawn_pid=""

cleanup() {
    local status=$? cg pid
    if [[ -n $nspawn_pid ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill -TERM "$nspawn_pid" 2>/dev/null || true
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    # Anything still in our cgroups is ours (the booted system's processes): kill it, then remove
    # the cgroups from the leaves up.
    for cg in "${cgroups[@]}"; do
        [[ -d $cg ]] || continue
        for pid in $(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null || true
        done
        find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
        [[ -d $cg ]] && echo "systemd-check: could not remove cgroup $cg" >&2
    done
    rm -rf "/run/systemd/nspawn/propagate/$machine"
    # nspawn's mounts live in its own mount namespace; none should be visible here.
    fresh_root_remove "$workdir" "$root" || true
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stamp() { date +%s; }
t0=$(stamp)
fresh_root_build "$root" "$checkout" "$workdir/debootstrap.log"
mkdir -p "$root$logs"
t_root=$(($(stamp) - t0))
echo "systemd-check: root ready in ${t_root}s"

# The environment the unit runs with: a root login's, plus the host's pip and proxy variables.
{
    echo "HOME=/root"
    echo "LANG=C.UTF-8"
    fresh_root_host_env
} >"$root$logs/env"
printf '%s\n' "$pytest_args" >"$root$logs/pytest-args"
cp "$repo/scripts/systemd_check_inside.sh" "$root$logs/inside.sh"

# One oneshot unit, started once the system is up; whatever its result, it powers off.
cat >"$root/etc/systemd/system/libcontainerd-check.service" <<EOF
[Unit]
Description=libcontainerd systemd-check
After=multi-user.target

[Service]
Type=oneshot
EnvironmentFile=$logs/env
WorkingDirectory=$checkout
ExecStart=/bin/bash $logs/inside.sh
ExecStopPost=/bin/systemctl --no-block poweroff
TimeoutStartSec=$((boot_timeout - 60))
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/libcontainerd-check.service \
    "$root/etc/systemd/system/multi-user.target.wants/libcontainerd-check.service"
# A minimal root has no machine-id; an empty file lets systemd make a transient one per boot.
: >"$root/etc/machine-id"

# Boot the root with systemd as PID 1. --register=no and --keep-unit: there is no systemd on
# the host to register with or to ask for a scope unit (nspawn fails with "Failed to open system
# bus" otherwise); the container then lives in the cgroup nspawn starts in, made above.
boot() {
    local phase=$1
    shift
    echo "$phase" >"$root$logs/phase"
    local start
    start=$(stamp)
    (
        for cg in "${cgroups[@]}"; do
            mkdir -p "$cg"
            echo "$BASHPID" >"$cg/cgroup.procs"
        done
        exec timeout --kill-after=30 "$boot_timeout" systemd-nspawn --quiet --boot \
            --directory="$root" --machine="$machine" --register=no --keep-unit \
            --console=read-only "$@"
    ) </dev/null >"$workdir/boot-$phase.log" 2>&1 &
    nspawn_pid=$!
    local status=0
    wait "$nspawn_pid" || status=$?
    nspawn_pid=""
    echo "systemd-check: boot $phase ended (exit $status) after $(($(stamp) - start))s"
}

boot protected
boot unprotected --private-network

# The report, from what the unit wrote.
echo
echo "systemd-check report (root built in ${t_root}s)"
failed=0
for phase in protected unprotected; do
    if [[ ! -f $root$logs/$phase/report ]]; then
        echo "  $phase: did not run; the end of its boot log:"
        tail -n 30 "$workdir/boot-$phase.log" | sed 's/^/    /'
        failed=1
        continue
    fi
    cat "$root$logs/$phase/report"
    [[ $(cat "$root$logs/$phase/verdict") == pass ]] || failed=1
done
echo "  total: $(($(stamp) - t0))s"
exit "$failed"
