#!/usr/bin/env bash
# make fresh-check: the README's set-up commands, exactly as written, on a new minimal Debian
# bookworm (what `debootstrap bookworm` installs), as root with the host's cgroups.
#
# It builds the root with debootstrap from the configured apt mirror (the downloaded packages are
# kept as a tarball under $FRESH_CHECK_CACHE between runs), gives it the host's apt and pip
# configuration (sources, keyrings, Acquire settings, pip.conf files, PIP_* and proxy variables,
# the CA certificates they rely on), copies in the checkout's tracked files, and runs the commands
# of the README's set-up block in order inside new mount and pid namespaces: the root bind-mounted
# onto itself and pivoted into (so runc can pivot_root into containers, and processes that
# join one see its root), a new /proc, the host's /sys (with its
# cgroups) and /dev, a tmpfs on /run. It reports each command's exit status and time, checks that
# the set-up left no containerd / registry service enabled or running, and removes everything it
# made. The mounts live only in the namespaces, so they go when its last process does.
#
# Environment: FRESH_CHECK_README (the README to read the commands from), FRESH_CHECK_MIRROR,
# FRESH_CHECK_CACHE, FRESH_CHECK_REPEAT (run the last command this many times, default 1).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
suite=bookworm
readme=${FRESH_CHECK_README:-$repo/README.md}
cache=${FRESH_CHECK_CACHE:-/var/cache/libcontainerd-fresh}
repeat=${FRESH_CHECK_REPEAT:-1}
checkout=/root/libcontainerd
logs=/var/log/fresh-check

die() {
    echo "fresh-check: $*" >&2
    exit 2
}

[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot and mounts)"
command -v debootstrap >/dev/null || die "needs debootstrap: apt-get install debootstrap"
command -v unshare >/dev/null || die "needs unshare (util-linux)"

# shellcheck source=scripts/fresh_root.sh
source "$repo/scripts/fresh_root.sh"
mirror=$(fresh_root_mirror)

# The commands: the first ```sh block after the README's set-up heading, comments dropped.
mapfile -t commands < <(awk '
    /^#+ .*[Ss]et-up/ { insection = 1; next }
    insection && /^```/ { if (inblock) exit; inblock = 1; next }
    inblock { sub(/[ \t]+#.*$/, ""); if ($0 !~ /^[ \t]*$/) print }' "$readme")
((${#commands[@]} > 0)) || die "no set-up commands found in $readme (a \`\`\`sh block under a heading with 'Set-up')"

workdir=$(mktemp -d /var/tmp/libcontainerd-fresh.XXXXXX)
root=$workdir/root
cleanup() {
    local status=$?
    # Mounts were made in a private mount namespace; if any is visible here, detach it before
    # removing anything, and never remove through one.
    if grep -qF " $root" /proc/self/mountinfo; then
        awk -v r="$root" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo |
            sort -r | xargs -r -n1 umount -l || true
    fi
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
echo "fresh-check: root ready in ${t_root}s; commands from $readme:"
printf '  %s\n' "${commands[@]}"

# What the root's user would have in a login shell, plus the host's pip and proxy variables.
envs=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root USER=root
    LOGNAME=root SHELL=/bin/bash TERM="${TERM:-dumb}")
mapfile -t -O "${#envs[@]}" envs < <(fresh_root_host_env)
printf '%s\n' "${commands[@]}" >"$root$logs/commands"
for ((i = 1; i < repeat; i++)); do
    printf '%s\n' "${commands[-1]}" >>"$root$logs/commands"
done

# Inside the root: snapshot services, run each command with its own log, time and status.
cat >"$root$logs/run.sh" <<EOF
set -u
cd $checkout
bash scripts/check_services.sh snapshot $logs/services-before
n=0
while IFS= read -r cmd; do
    n=\$((n + 1))
    echo "fresh-check: [\$n] # \$cmd"
    start=\$(date +%s)
    bash -c "\$cmd" </dev/null 2>&1 | tee $logs/cmd\$n.log
    status=\${PIPESTATUS[0]}
    echo "\$n \$status \$((\$(date +%s) - start))" >>$logs/results
    [ "\$status" -eq 0 ] || break
done <$logs/commands
bash scripts/check_services.sh compare $logs/services-before >$logs/services.log 2>&1
echo \$? >$logs/services.status
EOF

unshare --mount --pid --fork --kill-child --propagation private -- \
    env ROOT="$root" bash -euc '
        mount --bind "$ROOT" "$ROOT"
        mount -t proc proc "$ROOT/proc"
        mount --rbind /sys "$ROOT/sys"
        mount --make-rslave "$ROOT/sys"
        mount --rbind /dev "$ROOT/dev"
        mount --make-rslave "$ROOT/dev"
        mount -t tmpfs -o mode=0755 tmpfs "$ROOT/run"
        # pivot_root, not chroot: a process that joins a container later (runc/crun exec)
        # gets the root of the mount namespace, which after a mere chroot is still the
        # host root, so it would run the programs of the host instead of the container.
        mkdir -p "$ROOT/.fresh-check-old-root"
        cd "$ROOT"
        pivot_root . .fresh-check-old-root
        umount -l /.fresh-check-old-root
        rmdir /.fresh-check-old-root
        exec chroot . /usr/bin/env -i "$@" /bin/bash '"$logs"'/run.sh
    ' fresh-check "${envs[@]}" || true

# The report.
echo
echo "fresh-check report ($suite from $mirror, root built in ${t_root}s)"
failed=0
n=0
while IFS= read -r cmd; do
    n=$((n + 1))
    line=$(grep -E "^$n " "$root$logs/results" 2>/dev/null || true)
    if [[ -z $line ]]; then
        echo "  [$n] not run: $cmd"
        failed=1
        continue
    fi
    read -r _ status seconds <<<"$line"
    # pytest's closing line(s), with or without -q's missing "=" frame.
    tally=$(grep -aE '[0-9]+ (passed|failed|errors?)\b.* in [0-9.]+s' "$root$logs/cmd$n.log" |
        tr -d '=' | sed -E 's/^ +| +$//g' | paste -sd ';' - || true)
    echo "  [$n] exit $status in ${seconds}s: $cmd${tally:+  ($tally)}"
    ((status == 0)) || failed=1
done <"$root$logs/commands"
if [[ -f $root$logs/services.status ]]; then
    sed 's/^/  /' "$root$logs/services.log"
    [[ $(cat "$root$logs/services.status") == 0 ]] || failed=1
else
    echo "  services: not checked"
    failed=1
fi
echo "  total: $(($(stamp) - t0))s"
exit "$failed"
