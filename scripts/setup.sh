#!/usr/bin/env bash
# Install everything netmon needs on Debian 12+ or Ubuntu 24.04+, idempotently:
#   - apt packages: python3-bpfcc (BCC), python3-venv, python3-numpy, gcc, and the
#     packages the kernel tests list in tests/kernel/APT_PACKAGES;
#   - iperf3 and nethogs for the benches (bench/stream.py, bench/footprint.py),
#     where the distribution has them;
#   - headers for the running kernel (BCC compiles the probes at run time);
#   - tracefs mounted at /sys/kernel/tracing;
#   - .venv made by Debian's /usr/bin/python3 with --system-site-packages (so
#     `import bcc` works), with netmon installed in editable mode plus the dev
#     tools.
# Each step checks first and only changes what is missing. Run as root (or as
# a user with sudo for the system steps).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
SYS_PYTHON=/usr/bin/python3
KREL=$(uname -r)
MODDIR="/lib/modules/$KREL"
TEST_APT_LIST="$ROOT/tests/kernel/APT_PACKAGES"
BASE_PACKAGES=(python3-bpfcc python3-venv python3-numpy gcc libc6-dev)
# Workload and comparison tools of the benches; the benches skip what is missing.
BENCH_PACKAGES=(iperf3 nethogs)

export DEBIAN_FRONTEND=noninteractive
# A fresh cloud machine often runs unattended-upgrades at boot: wait for its
# dpkg lock instead of failing.
APT_GET=(apt-get -o DPkg::Lock::Timeout=600)

log() { printf 'setup: %s\n' "$*"; }
warn() { printf 'setup: WARNING: %s\n' "$*" >&2; }
die() {
    printf 'setup: ERROR: %s\n' "$*" >&2
    exit 1
}

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
    log "not root: system steps use sudo"
else
    die "run as root (apt-get, mount and /lib/modules need it), or install sudo"
fi
as_root() { "${SUDO[@]}" "$@"; }

command -v apt-get >/dev/null 2>&1 ||
    die "apt-get not found: this script supports Debian and Ubuntu only (see README, Requirements)"

# ---------------------------------------------------------------- apt helpers
APT_UPDATED=0
apt_update() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        as_root "${APT_GET[@]}" update -q
        APT_UPDATED=1
    fi
}

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# True when apt knows an installable version of the package (after apt_update).
apt_has() {
    [ -n "$(apt-cache madison "$1" 2>/dev/null)" ]
}

apt_install() {
    local pkg missing=()
    for pkg in "$@"; do
        if is_installed "$pkg"; then
            log "apt: $pkg already installed"
        else
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_update
        log "apt-get install ${missing[*]}"
        as_root "${APT_GET[@]}" install -y -q --no-install-recommends "${missing[@]}"
    fi
}

# Names of the packages a package depends on (alternatives and versions dropped).
depends_of() {
    dpkg-query -W -f='${Depends}\n' "$1" | tr ',' '\n' |
        sed -e 's/|.*//' -e 's/(.*)//' -e 's/^ *//' -e 's/ *$//' | grep -v '^$' || true
}

# ------------------------------------------------------------------- packages
read_test_packages() {
    if [ -f "$TEST_APT_LIST" ]; then
        sed -e 's/#.*//' "$TEST_APT_LIST" | tr -s ' \t' '\n' | grep -v '^$' || true
    fi
}

install_packages() {
    local test_packages=()
    mapfile -t test_packages < <(read_test_packages)
    if [ -f "$TEST_APT_LIST" ]; then
        log "test packages from ${TEST_APT_LIST#"$ROOT"/}: ${test_packages[*]:-(none)}"
    else
        log "no ${TEST_APT_LIST#"$ROOT"/}: no extra test packages"
    fi
    apt_install "${BASE_PACKAGES[@]}" "${test_packages[@]}"
}

install_bench_packages() {
    local pkg available=()
    for pkg in "${BENCH_PACKAGES[@]}"; do
        if is_installed "$pkg"; then
            log "apt: $pkg already installed"
            continue
        fi
        apt_update
        if apt_has "$pkg"; then
            available+=("$pkg")
        else
            warn "apt has no $pkg: the benches that use it will skip it"
        fi
    done
    [ "${#available[@]}" -gt 0 ] || return 0
    # iperf3 asks whether to start a system-wide server; the benches start
    # their own, so answer no before apt asks.
    if command -v debconf-set-selections >/dev/null 2>&1; then
        echo 'iperf3 iperf3/start_daemon boolean false' | as_root debconf-set-selections
    fi
    apt_install "${available[@]}"
}

# -------------------------------------------------------------- kernel headers
# Point $2 at directory $1, replacing only a missing link or a symlink.
link_dir() {
    local target=$1 link=$2
    if [ -L "$link" ] || [ ! -e "$link" ]; then
        log "link $link -> $target"
        as_root ln -sfn "$target" "$link"
    else
        die "$link exists and is not a symlink; move it away to let setup link $target"
    fi
}

install_headers() {
    if [ -d "$MODDIR/build/include" ]; then
        log "kernel headers for $KREL: present ($MODDIR/build -> $(readlink -f "$MODDIR/build"))"
        return
    fi
    apt_update
    if apt_has "linux-headers-$KREL"; then
        apt_install "linux-headers-$KREL"
        [ -d "$MODDIR/build/include" ] ||
            die "linux-headers-$KREL is installed but $MODDIR/build/include is missing"
        log "kernel headers for $KREL: installed"
        return
    fi

    # No headers package for this kernel (a custom or very new kernel). The
    # distribution's generic headers work for netmon's tracepoint programs,
    # which read socket fields by offsets checked against the running kernel.
    local arch meta="" candidate
    arch=$(dpkg --print-architecture)
    for candidate in "linux-headers-$arch" linux-headers-generic; do
        if apt_has "$candidate"; then
            meta=$candidate
            break
        fi
    done
    [ -n "$meta" ] ||
        die "no package linux-headers-$KREL, linux-headers-$arch or linux-headers-generic: install headers for $KREL by hand at $MODDIR/build"
    log "no package linux-headers-$KREL (custom kernel?): falling back to $meta"
    apt_install "$meta"

    local flavour build common="" dep
    flavour=$(depends_of "$meta" | grep -m1 '^linux-headers-' || true)
    [ -n "$flavour" ] || die "cannot tell which headers package $meta pulls in"
    build="/usr/src/$flavour"
    [ -d "$build/include" ] || die "$meta is installed but $build/include is missing"
    for dep in $(depends_of "$flavour" | grep '^linux-headers-' || true); do
        if [ -d "/usr/src/$dep" ]; then
            common="/usr/src/$dep"
            break
        fi
    done
    [ -n "$common" ] || common=$build

    as_root mkdir -p "$MODDIR"
    link_dir "$build" "$MODDIR/build"
    if [ -d "$MODDIR/source" ]; then
        log "$MODDIR/source: present"
    else
        link_dir "$common" "$MODDIR/source"
    fi
    log "kernel headers for $KREL: using ${flavour#linux-headers-} headers (fallback)"
}

# --------------------------------------------------------------------- tracefs
mount_tracefs() {
    if [ -d /sys/kernel/tracing/events ] || [ -d /sys/kernel/debug/tracing/events ]; then
        log "tracefs: mounted"
        return
    fi
    log "mount -t tracefs tracefs /sys/kernel/tracing"
    if ! as_root mount -t tracefs tracefs /sys/kernel/tracing; then
        warn "could not mount tracefs at /sys/kernel/tracing: netmon cannot attach its probes until it is"
    fi
}

# ---------------------------------------------------------------- virtualenv
venv_is_usable() {
    [ -x "$VENV/bin/python" ] || return 1
    grep -qiE '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg" 2>/dev/null || return 1
    [ "$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix)' 2>/dev/null)" = /usr ] || return 1
}

make_venv() {
    [ -x "$SYS_PYTHON" ] || die "$SYS_PYTHON missing (python3 should come with python3-bpfcc)"
    "$SYS_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "netmon needs Python 3.11 or newer; $SYS_PYTHON is $("$SYS_PYTHON" --version 2>&1)"
    if venv_is_usable; then
        log "venv: $VENV present (Debian python, system site-packages)"
    else
        if [ -e "$VENV" ]; then
            log "venv: $VENV was not made by $SYS_PYTHON with --system-site-packages: recreating it"
            rm -rf "$VENV"
        fi
        log "$SYS_PYTHON -m venv --system-site-packages $VENV"
        "$SYS_PYTHON" -m venv --system-site-packages "$VENV"
    fi
    "$VENV/bin/python" -c 'import bcc' ||
        die "the venv cannot import bcc; is python3-bpfcc installed for $SYS_PYTHON?"
}

install_netmon() {
    local stamp="$VENV/.netmon-setup-stamp" want have=""
    want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1) $ROOT"
    [ -f "$stamp" ] && have=$(cat "$stamp")
    if [ "$want" = "$have" ] && [ -x "$VENV/bin/netmon" ] &&
        [ "$(cd / && "$VENV/bin/python" -c 'import netmon; print(netmon.__file__)' 2>/dev/null)" = "$ROOT/netmon/__init__.py" ]; then
        log "pip: netmon already installed in editable mode (pyproject.toml unchanged)"
        return
    fi
    log "$VENV/bin/pip install -e '.[dev]'"
    (cd "$ROOT" && "$VENV/bin/python" -m pip install -e '.[dev]')
    printf '%s\n' "$want" >"$stamp"
}

check_result() {
    [ -x "$VENV/bin/netmon" ] || die "$VENV/bin/netmon was not created"
    (cd / && "$VENV/bin/python" -c 'import bcc, netmon') || die "the venv cannot import bcc and netmon"
    if ! (cd / && "$VENV/bin/python" -c '
import importlib.resources as r
names = sorted(p.name for p in r.files("netmon.bpf").iterdir())
assert any(n.endswith(".c") for n in names), names
') 2>/dev/null; then
        warn "netmon.bpf (the bpf/ directory) is not importable with its C sources from the venv"
    fi
    log "done: $VENV/bin/netmon is ready (BCC $(cd / && "$VENV/bin/python" -c 'import bcc; print(getattr(bcc, "__version__", "?"))'))"
}

log "netmon setup in $ROOT (kernel $KREL, $(. /etc/os-release && echo "$PRETTY_NAME"))"
install_packages
install_bench_packages
install_headers
mount_tracefs
make_venv
install_netmon
check_result
