#!/usr/bin/env bash
# Install the named Debian packages that are missing; do nothing (and need no network) when
# all are present. Needs root, as the README says.
#
# Packages such as containerd and docker-registry start and enable a system service when apt
# installs them. The project only needs their programs (the tests start private daemons), and
# a system containerd at the default address would silently turn `new_client()` remote, so the
# install starts nothing: a temporary /usr/sbin/policy-rc.d denies every start while apt runs
# (any policy already there is put back afterwards), and units that this install enabled are
# disabled again. Units that were enabled before are left as they were.
set -euo pipefail
missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "missing Debian packages: ${missing[*]}; run as root, or install them with apt-get" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
saved_policy=""
restore_policy() {
    rm -f "$policy"
    if [[ -n $saved_policy ]]; then
        mv -f "$saved_policy" "$policy"
    fi
}
if [[ -e $policy || -L $policy ]]; then
    saved_policy=$(mktemp "$policy.libcontainerd-saved.XXXXXX")
    mv -f "$policy" "$saved_policy"
fi
trap restore_policy EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# 101: "action forbidden by policy", honoured by invoke-rc.d and deb-systemd-invoke.
printf '#!/bin/sh\n# libcontainerd set-up: install without starting services\nexit 101\n' >"$policy"
chmod 0755 "$policy"

# Enablement symlinks (unit wanted by a target) before the install.
enabled_links() {
    { find /etc/systemd/system -mindepth 2 -maxdepth 2 -type l -path '*.wants/*' 2>/dev/null || true; } | sort
}
links_before=$(enabled_links)

echo "installing Debian packages (their services are not started): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# Disable what this install enabled. `systemctl disable` works without a running systemd (it
# edits symlinks); where systemctl is absent the links are removed by hand.
newly_enabled=$(comm -13 <(printf '%s\n' "$links_before") <(enabled_links) | xargs -r -n1 basename | sort -u)
if [[ -n $newly_enabled ]]; then
    for unit in $newly_enabled; do
        if command -v systemctl >/dev/null; then
            systemctl disable --quiet "$unit" 2>/dev/null || true
        fi
        find /etc/systemd/system -mindepth 2 -maxdepth 2 -type l -path "*.wants/$unit" -delete
    done
    echo "left disabled and stopped (enable one with: systemctl enable --now UNIT):" $newly_enabled
fi
