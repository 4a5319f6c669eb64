# Sourced by fresh_check.sh and systemd_check.sh (bash, set -euo pipefail): build a new minimal
# Debian root as a new user would have it, with the host's apt and pip configuration.
#
#   fresh_root_mirror                   print the apt mirror to build from
#   fresh_root_build ROOT CHECKOUT LOG  debootstrap into ROOT, copy the host's apt and pip
#                                       configuration, copy the checkout's tracked files to
#                                       ROOT/CHECKOUT; debootstrap's output goes to LOG
#
# Reads: repo (the checkout), suite, cache (where the downloaded packages are kept as a tarball
# between runs, so later builds need no download), FRESH_CHECK_MIRROR. Defines die() if the
# caller did not.

declare -F die >/dev/null || die() {
    echo "fresh-root: $*" >&2
    exit 2
}

# The first URI that serves $suite, from deb822 .sources files, then one-line .list files.
fresh_root_configured_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk -v suite="$suite" 'BEGIN { RS = ""; FS = "\n" }
            {
                uri = ""; ok = 0; deb = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) { split($i, u, /[ \t]+/); uri = u[2] }
                    if ($i ~ /^Suites:/ && (" " $i " ") ~ (" " suite " ")) ok = 1
                    if ($i ~ /^Types:/ && (" " $i " ") ~ / deb /) deb = 1
                }
                if (ok && deb && uri != "") { print uri; exit }
            }' "$f"
    done
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        sed -E 's/\[[^]]*\]//' | awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }'
    return 0
}

fresh_root_mirror() {
    local mirror=${FRESH_CHECK_MIRROR:-$(set +o pipefail; fresh_root_configured_mirror | head -n 1)}
    echo "${mirror:-http://deb.debian.org/debian}"
}

fresh_root_build() {
    local root=$1 checkout=$2 log=$3
    local mirror arch tarball f keyring
    mirror=$(fresh_root_mirror)
    arch=$(dpkg --print-architecture)
    tarball=$cache/$suite-$arch.tgz
    if [[ ! -s $tarball ]]; then
        echo "fresh-root: downloading $suite's packages from $mirror into $tarball"
        mkdir -p "$cache"
        # The download goes beside LOG (the caller's scratch dir, which it removes).
        local download
        download=$(dirname "$log")/download
        debootstrap --make-tarball="$tarball.part" "$suite" "$download" "$mirror" >"$log" 2>&1 ||
            { tail -n 20 "$log" >&2; die "debootstrap --make-tarball failed"; }
        mv "$tarball.part" "$tarball"
        rm -rf "$download"
    fi
    echo "fresh-root: debootstrap $suite (default variant) into $root"
    debootstrap --unpack-tarball="$tarball" "$suite" "$root" "$mirror" >"$log" 2>&1 ||
        { tail -n 20 "$log" >&2; die "debootstrap failed"; }

    # The host's apt configuration: sources (replacing debootstrap's), the keyrings they name,
    # Acquire settings (proxies, validity checks).
    rm -f "$root/etc/apt/sources.list" "$root"/etc/apt/sources.list.d/*
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] && cp -a "$f" "$root$f"
    done
    for keyring in $(grep -hoE '(Signed-By:|signed-by=)[[:space:]]*/[^] ]+' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | sed -E 's/^[^/]*//'); do
        [[ -f $keyring && ! -e $root$keyring ]] && install -D -m 0644 "$keyring" "$root$keyring"
    done
    for f in /etc/apt/apt.conf /etc/apt/apt.conf.d/*; do
        [[ -f $f ]] && grep -q 'Acquire' "$f" && cp -a "$f" "$root$f"
    done
    # The host's pip configuration and the CA certificates it (and apt over https) relies on.
    for f in /etc/pip.conf /root/.pip/pip.conf /root/.config/pip/pip.conf; do
        [[ -f $f ]] && install -D -m 0644 "$f" "$root$f"
    done
    [[ -d /etc/xdg/pip ]] && mkdir -p "$root/etc/xdg" && cp -a /etc/xdg/pip "$root/etc/xdg/"
    if [[ -d /usr/local/share/ca-certificates ]]; then
        mkdir -p "$root/usr/local/share"
        cp -a /usr/local/share/ca-certificates "$root/usr/local/share/"
    fi
    if [[ -f /etc/ssl/certs/ca-certificates.crt && ! -e $root/etc/ssl/certs/ca-certificates.crt ]]; then
        install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    fi
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    cp /etc/hosts "$root/etc/hosts"

    # The checkout: tracked files as they are in the work tree.
    mkdir -p "$root$checkout"
    if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
        git -C "$repo" ls-files -z | tar -C "$repo" --null --ignore-failed-read -T - -cf - | tar -C "$root$checkout" -xf -
    else
        tar -C "$repo" --exclude='./.venv*' --exclude='./.git' -cf - . | tar -C "$root$checkout" -xf -
    fi
}

# The host's pip and proxy variables, one NAME=VALUE a line, for the root's commands.
fresh_root_host_env() {
    local name
    while IFS= read -r name; do
        printf '%s=%s\n' "$name" "${!name}"
    done < <(compgen -e | grep -E '^(PIP_[A-Z_]+|https?_proxy|no_proxy|HTTPS?_PROXY|NO_PROXY)$' || true)
}

# fresh_root_remove WORKDIR ROOT: remove WORKDIR, unless a mount under ROOT is visible here (the
# checks mount only in private namespaces; never remove through a mount that leaked).
fresh_root_remove() {
    local workdir=$1 root=$2
    if grep -qF " $root" /proc/self/mountinfo; then
        echo "fresh-root: mounts remain under $root; left it in place" >&2
        return 1
    fi
    rm -rf --one-file-system "$workdir"
}
