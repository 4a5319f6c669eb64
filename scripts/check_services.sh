#!/usr/bin/env bash
# Record, then compare, which system containerd / registry / podman services are enabled or
# running, so a check can prove that the set-up left none behind that was not there before.
#
#   check_services.sh snapshot FILE   write the current state to FILE
#   check_services.sh compare FILE    exit 1, naming them, if anything is enabled or running now
#                                     that FILE does not list
#
# Works with or without systemd as PID 1: unit enablement is read from the unit files (systemctl
# reads them without a running systemd), unit activity only where systemd runs, and in every case
# whether something listens at containerd's default socket or the registry's default port.
set -euo pipefail

UNITS=(containerd.service docker-registry.service podman.service podman.socket)
CONTAINERD_SOCKET=/run/containerd/containerd.sock
REGISTRY_PORT=5000

state() {
    local unit
    if command -v systemctl >/dev/null; then
        for unit in "${UNITS[@]}"; do
            if [[ $(systemctl is-enabled "$unit" 2>/dev/null) == enabled ]]; then
                echo "enabled $unit"
            fi
            if [[ -d /run/systemd/system ]] && systemctl is-active --quiet "$unit"; then
                echo "active $unit"
            fi
        done
    fi
    if command -v ss >/dev/null; then
        if ss -Hlx | awk '{print $5}' | grep -qxF "$CONTAINERD_SOCKET"; then
            echo "listening $CONTAINERD_SOCKET"
        fi
        if ss -Hltn "sport = :$REGISTRY_PORT" | grep -q .; then
            echo "listening tcp port $REGISTRY_PORT"
        fi
    else
        # No iproute2: a socket file at the default address, and a connect to the port.
        if [[ -S $CONTAINERD_SOCKET ]]; then
            echo "listening $CONTAINERD_SOCKET"
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$REGISTRY_PORT") 2>/dev/null; then
            echo "listening tcp port $REGISTRY_PORT"
        fi
    fi
}

case "${1:-}" in
snapshot)
    state | sort >"${2:?snapshot FILE}"
    ;;
compare)
    before=${2:?compare FILE}
    added=$(comm -13 "$before" <(state | sort))
    if [[ -n $added ]]; then
        echo "services left behind by the set-up (not there before it):" >&2
        sed 's/^/  /' <<<"$added" >&2
        echo "stop and disable them with: systemctl disable --now UNIT" >&2
        exit 1
    fi
    echo "check_services: nothing enabled or running that was not before ($(wc -l <"$before") already were)"
    ;;
*)
    echo "usage: $0 snapshot|compare FILE" >&2
    exit 2
    ;;
esac
