#!/bin/sh
# The README's first set-up command, written for a machine that has only what a minimal Debian
# bookworm has (sh, bash, apt; no make, git or python3). As root it installs make and Python's
# venv from Debian, then `make setup-test` (or `make setup-demo` with the argument `demo`)
# installs the rest: the Debian packages without starting their services, and the virtualenv.
# Safe to run again: it installs only what is missing.
set -eu
cd "$(dirname "$0")/.."
target=${1:-test}
case $target in
demo | test) ;;
*)
    echo "usage: sh scripts/setup.sh [test|demo]  (default: test)" >&2
    exit 2
    ;;
esac
bash scripts/ensure_debs.sh make python3 python3-venv
exec make "setup-$target"
