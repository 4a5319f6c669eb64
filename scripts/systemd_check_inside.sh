#!/usr/bin/env bash
# Run by systemd_check.sh's oneshot unit inside the booted root (systemd is PID 1 here), in the
# checkout. The phase (written by the host before each boot) says what to do:
#   protected    record; the README's first command; a few tests; record again; compare
#   unprotected  compare right after boot; then purge containerd and docker-registry and install
#                their .debs again with plain dpkg (no policy-rc.d); record; compare, which must
#                report them
# Each phase writes DIR/report (the lines the host prints) and DIR/verdict (pass or fail).
set -uo pipefail # not -e: every step runs and reports, a failing one included

logs=/var/log/systemd-check
phase=$(cat "$logs/phase")
out=$logs/$phase
mkdir -p "$out"
report=$out/report
verdict=pass
echo "  $phase boot (PID 1: $(cat /proc/1/comm), $(systemctl is-system-running 2>/dev/null || true)):" >"$report"

say() { echo "    $*" >>"$report"; }
fail() {
    say "FAIL: $*"
    verdict=fail
}

# record DIR: running services, enabled unit files, TCP listeners, unix listeners of a
# containerd, and the state of the two units the issue is about.
record() {
    local dir=$1 unit enabled
    mkdir -p "$dir"
    systemctl list-units --type=service --state=running --no-legend --plain | awk '{print $1}' | sort >"$dir/running"
    systemctl list-unit-files --state=enabled --no-legend | awk '{print $1}' | sort >"$dir/enabled"
    ss -Hltn | awk '{print $4}' | sort -u >"$dir/tcp"
    # Only containerd's default address: on the host's network the socket table is the host's,
    # with every other containerd's shim sockets in it.
    ss -Hlx | awk '{print $5}' | grep -E '^/run/containerd/containerd\.sock' | sort -u >"$dir/unix" || true
    for unit in containerd.service docker-registry.service; do
        enabled=$(systemctl is-enabled "$unit" 2>/dev/null || true)
        echo "$unit active=$(systemctl is-active "$unit" 2>/dev/null) enabled=${enabled:-(no unit file)}"
    done >"$dir/units"
}

# show LABEL DIR: the recorded state, for the report.
show() {
    local label=$1 dir=$2
    say "$label:"
    say "  running services: $(paste -sd ' ' "$dir/running")"
    say "  enabled unit files: $(paste -sd ' ' "$dir/enabled")"
    say "  tcp listeners on :5000: $(grep -E ':5000$' "$dir/tcp" | paste -sd ' ' - || true)"
    say "  unix listeners at containerd's default address: $(paste -sd ' ' "$dir/unix")"
    say "  socket file /run/containerd/containerd.sock: $([[ -S /run/containerd/containerd.sock ]] && echo present || echo absent)"
    while IFS= read -r line; do say "  $line"; done <"$dir/units"
}

# changes BEFORE AFTER: what is running or enabled now that was not before.
changes() {
    local before=$1 after=$2 kind
    for kind in running enabled; do
        say "  newly $kind: $(comm -13 "$before/$kind" "$after/$kind" | paste -sd ' ' -)"
    done
    say "  new tcp listeners: $(comm -13 "$before/tcp" "$after/tcp" | paste -sd ' ' -)"
}

# step NAME COMMAND...: run it with its own log; report exit status and time.
step() {
    local name=$1 start status
    shift
    start=$(date +%s)
    "$@" </dev/null >"$out/$name.log" 2>&1
    status=$?
    local tally
    tally=$(grep -aE '[0-9]+ (passed|failed|errors?)\b.* in [0-9.]+s' "$out/$name.log" | tr -d '=' |
        sed -E 's/^ +| +$//g' | paste -sd ';' - || true)
    local shown="" arg
    for arg in "$@"; do
        [[ $arg == *" "* ]] && arg="\"$arg\""
        shown+="${shown:+ }$arg"
    done
    say "[$name] exit $status in $(($(date +%s) - start))s: $shown${tally:+  ($tally)}"
    if ((status != 0)); then
        tail -n 15 "$out/$name.log" | sed 's/^/        /' >>"$report"
    fi
    return "$status"
}

# compare SNAPSHOT: check_services.sh's verdict; prints its status.
compare() {
    bash scripts/check_services.sh compare "$1" >"$out/compare.log" 2>&1
    local status=$?
    sed 's/^/      /' "$out/compare.log" >>"$report"
    return "$status"
}

case $phase in
protected)
    record "$out/before"
    bash scripts/check_services.sh snapshot "$logs/services-before"
    show "before" "$out/before"
    step setup sh scripts/setup.sh || fail "the README's first command failed"
    # shellcheck disable=SC2046 # the arguments are a pytest command line, split as written
    eval "set -- $(cat "$logs/pytest-args")"
    step tests .venv/bin/python -m pytest -p no:cacheprovider -q "$@" || fail "the tests failed"
    record "$out/after"
    show "after" "$out/after"
    changes "$out/before" "$out/after"
    for unit in containerd.service docker-registry.service; do
        systemctl is-active --quiet "$unit" && fail "$unit is active"
        if systemctl is-enabled --quiet "$unit" && ! grep -qxF "$unit" "$out/before/enabled"; then
            fail "$unit is enabled and was not before"
        fi
    done
    [[ -S /run/containerd/containerd.sock ]] && fail "a socket at /run/containerd/containerd.sock"
    say "check_services compare:"
    compare "$logs/services-before" || fail "check_services.sh reports services left behind"
    ;;
unprotected)
    say "after a reboot, against the first boot's snapshot:"
    compare "$logs/services-before" || fail "something the set-up installed came up at boot"
    # The same packages, installed as a user would without the set-up: purge, then plain dpkg,
    # whose maintainer scripts enable and start the services (no policy-rc.d forbids it).
    debs=()
    for pkg in containerd docker-registry; do
        deb=$(ls /var/cache/apt/archives/"${pkg}"_*.deb 2>/dev/null | head -n 1)
        [[ -n $deb ]] && debs+=("$deb")
    done
    ((${#debs[@]} == 2)) || fail "the .debs of containerd and docker-registry are not in apt's cache"
    [[ -e /usr/sbin/policy-rc.d ]] && fail "a policy-rc.d was left behind by the set-up"
    step purge env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q containerd docker-registry ||
        fail "purge failed"
    record "$out/before"
    bash scripts/check_services.sh snapshot "$out/services-before"
    show "before (purged)" "$out/before"
    step install env DEBIAN_FRONTEND=noninteractive dpkg -i "${debs[@]}" || fail "dpkg -i failed"
    # The registry's unit is Type=simple: give it a moment to listen.
    for _ in $(seq 20); do
        ss -Hltn 'sport = :5000' | grep -q . && break
        sleep 0.5
    done
    record "$out/after"
    show "after (plain dpkg -i)" "$out/after"
    changes "$out/before" "$out/after"
    say "check_services compare (must report the services):"
    if compare "$out/services-before"; then
        fail "check_services.sh did not report the services the plain install started"
    else
        grep -q 'active docker-registry.service' "$out/compare.log" ||
            fail "check_services.sh did not name docker-registry.service as active"
        grep -q 'listening tcp port 5000' "$out/compare.log" ||
            fail "check_services.sh did not report the listener on :5000"
    fi
    ;;
*)
    fail "unknown phase $phase"
    ;;
esac
say "verdict: $verdict"
echo "$verdict" >"$out/verdict"
