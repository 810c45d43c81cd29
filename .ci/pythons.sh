#!/usr/bin/env bash
# Other Pythons, each in a Debian chroot built with debootstrap (run by .ci/run, as root):
#
#   bash .ci/pythons.sh chroot trixie|sid   build a chroot, or reuse the one cached
#   bash .ci/pythons.sh test 3.13|3.13t|3.14|3.15
#
# trixie: Debian's python3.13, and a free-threaded 3.13t built from Debian's
# python3.13 source package with ./configure --disable-gil (/opt/python3.13t);
# sid: Debian's python3.14 and python3.15.  Each test stage copies the
# checkout's files into the chroot and runs .ci/tier.sh there (the tiers CI
# runs everywhere): the quick tier with the compiled backend and with pure
# Python (3.13, 3.14), the quick tier (3.15), and on 3.13t the quick tier,
# the thread tests and the stress (tests/stress_threads.py).
#
# Chroots and pip's cache live under $PYPROXYPROTO_CI_CACHE
# (/var/cache/pyproxyproto-ci), outside the checkout; a chroot is reused
# while its recipe (the functions below) is unchanged.  Delete the folder to
# start from nothing (Debian's archive moves on; sid especially).  The
# machine's resolver, extra CA certificates and pip configuration are copied
# in on every entry, so pip works inside as it does outside.
# The scripts run inside the chroots are single-quoted on purpose:
# shellcheck disable=SC2016
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${PYPROXYPROTO_CI_CACHE:-/var/cache/pyproxyproto-ci}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
STRESS_RUNS=${PYPROXYPROTO_STRESS_RUNS:-5}

log() { echo "pythons: $*"; }

# Run a command in chroot $1 in a mount namespace of its own: /proc, /dev
# (with /dev/shm and /dev/pts) and a fresh /tmp, all gone when it exits,
# even if it is killed.  Only CI's switches and the network settings pip
# needs cross over from this environment.
in_chroot() {
    local root=$CACHE/$1
    shift
    sync_host_config "$root"
    local -a env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
                  HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive)
    local name
    for name in $(compgen -e); do
        case $name in
            CI | PIP_* | PYPROXYPROTO_* | SSL_CERT_* | REQUESTS_CA_BUNDLE | CURL_CA_BUNDLE \
                | http_proxy | https_proxy | no_proxy | HTTP_PROXY | HTTPS_PROXY | NO_PROXY)
                env+=("$name=${!name}") ;;
        esac
    done
    mkdir -p "$CACHE/pip-cache"
    unshare --mount --propagation private -- bash -c '
        set -e
        root=$1; cache=$2; shift 2
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount -t tmpfs tmpfs "$root/tmp"
        mkdir -p "$root/root/.cache/pip"
        mount --bind "$cache" "$root/root/.cache/pip"
        exec chroot "$root" /usr/bin/env -i "$@"' _ "$root" "$CACHE/pip-cache" "${env[@]}" "$@"
}

sync_host_config() {
    local root=$1 f
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    rm -rf "$root/usr/local/share/ca-certificates" "$root/etc/xdg/pip" "$root/root/.config/pip"
    mkdir -p "$root/usr/local/share/ca-certificates" "$root/etc/xdg" "$root/root/.config"
    for f in /usr/local/share/ca-certificates/*; do
        [ -e "$f" ] && cp -r "$f" "$root/usr/local/share/ca-certificates/"
    done
    [ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
    [ -d /etc/xdg/pip ] && cp -r /etc/xdg/pip "$root/etc/xdg/pip"
    [ -d "$HOME/.config/pip" ] && cp -r "$HOME/.config/pip" "$root/root/.config/pip"
    if [ -n "${PIP_CONFIG_FILE:-}" ] && [ -f "$PIP_CONFIG_FILE" ]; then
        mkdir -p "$root$(dirname "$PIP_CONFIG_FILE")"
        cp "$PIP_CONFIG_FILE" "$root$PIP_CONFIG_FILE"
    fi
    # update-ca-certificates is there once ca-certificates is installed.
    if [ -x "$root/usr/sbin/update-ca-certificates" ]; then
        chroot "$root" update-ca-certificates >/dev/null 2>&1
    fi
    return 0
}

# -- the chroots --------------------------------------------------------------------

# The packages the tests use outside Python: openssl makes certificates,
# curl talks to the echo app; gcc builds the extension.
TOOLS="ca-certificates gcc libc6-dev openssl curl"

# The recipes build chroot $1 (the name of a folder in $CACHE), logging to $1.log.
base_system() {
    local name=$1 suite=$2 root=$CACHE/$1
    debootstrap --variant=minbase "$suite" "$root" "$MIRROR" >"$root.log" 2>&1 \
        || { tail -20 "$root.log"; return 1; }
    cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $suite main
deb-src $MIRROR $suite main
EOF
    # A mirror may serve a snapshot older than the clock: Release files
    # carry a Valid-Until date (sid's a week ahead).
    cat >"$root/etc/apt/apt.conf.d/90pyproxyproto-ci" <<'EOF'
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
APT::Sandbox::User "root";
quiet "2";
EOF
    in_root "$name" apt-get update
}

# Run a step of a recipe in chroot $1, its output in the log (shown if it fails).
in_root() {
    local name=$1
    shift
    in_chroot "$name" "$@" >>"$CACHE/$name.log" 2>&1 || { tail -40 "$CACHE/$name.log"; return 1; }
}

recipe_trixie() {
    local name=$1
    base_system "$name" trixie
    # shellcheck disable=SC2086
    in_root "$name" apt-get install -y python3.13-venv python3.13-dev $TOOLS
    in_root "$name" apt-get build-dep -y --arch-only -P nocheck python3.13
    in_root "$name" bash -c "$BUILD_313T"
}

# Debian's python3.13 source (its patches applied), free-threaded.  Debian's
# site.py patch leaves the ABI's "t" out of a virtual environment's
# site-packages folder (Debian builds no free-threaded 3.13): put it back.
BUILD_313T='
set -e
mkdir -p /usr/src/python && cd /usr/src/python
apt-get source python3.13
cd python3.13-*/
perl -0pi -e "s/\"python%d\.%d\" % sys\.version_info\[:2\],(\s+\"site-packages\")/f\"python{ver[0]}.{ver[1]}{abi_thread}\",\$1/" Lib/site.py
grep -q "abi_thread}\",\$" Lib/site.py
./configure --disable-gil --prefix=/opt/python3.13t --with-ensurepip=no --disable-test-modules
make -j"$(nproc)"
make altinstall
cd / && rm -rf /usr/src/python
/opt/python3.13t/bin/python3.13t -c "import sys; assert not sys._is_gil_enabled()"
'

recipe_sid() {
    local name=$1
    base_system "$name" sid
    # shellcheck disable=SC2086
    in_root "$name" apt-get install -y python3.14-venv python3.14-dev python3.15-venv python3.15-dev $TOOLS
}

build_chroot() {
    local suite=$1 key
    key=$( (declare -f "recipe_$suite" base_system in_root; echo "$BUILD_313T $TOOLS $MIRROR") | sha256sum | cut -c1-16)
    if [ -f "$CACHE/$suite/.pyproxyproto-ci" ] && [ "$(cat "$CACHE/$suite/.pyproxyproto-ci")" = "$key" ]; then
        log "chroot $suite: reusing $CACHE/$suite (recipe $key)"
        return
    fi
    log "chroot $suite: building from nothing in $CACHE/$suite (recipe $key)"
    mkdir -p "$CACHE"
    rm -rf "$CACHE/$suite.new" "$CACHE/$suite.new.log"
    "recipe_$suite" "$suite.new"
    echo "$key" >"$CACHE/$suite.new/.pyproxyproto-ci"
    rm -rf "${CACHE:?}/$suite"
    mv "$CACHE/$suite.new" "$CACHE/$suite"
    rm -f "$CACHE/$suite.new.log"
}

# -- the tests ----------------------------------------------------------------------

# Which chroot and interpreter each version is, and what runs on it: tier
# names of .ci/tier.sh, "-pure" for PYPROXYPROTO_NO_EXTENSIONS=1.
chroot_of() { case $1 in 3.13 | 3.13t) echo trixie ;; *) echo sid ;; esac; }
python_of() { case $1 in 3.13t) echo /opt/python3.13t/bin/python3.13t ;; *) echo "/usr/bin/python$1" ;; esac; }
tiers_of() {
    case $1 in
        3.13 | 3.14) echo "quick quick-pure" ;;
        3.13t) echo "quick threads" ;;
        3.15) echo "quick" ;;
    esac
}
# What each leaves out, and why (3.13t only).  The typing extra: mypy needs
# ast-serialize, which has no cp313t wheel and whose sdist needs a Rust
# toolchain from outside PyPI; the typing tests (left out with it) check
# static types, the same on every interpreter, and run on 3.11 (.ci/run),
# 3.13, 3.14 and 3.15.  Of the test extra, cryptography (under
# twisted[tls] and daphne): it needs cffi, which refuses free-threaded 3.13
# (3.14t is its first); Twisted and daphne are tested in the servers tier,
# which the quick tier leaves out, and Twisted itself is installed so the
# test modules import.  gevent: it needs cffi too; the tests that need it
# skip, told so by PYPROXYPROTO_LEFT_OUT.
extras_of() { case $1 in 3.13t) echo "test:without twisted[tls] daphne gevent" ;; *) echo test,typing ;; esac; }
left_out_of() { case $1 in 3.13t) echo "daphne gevent" ;; esac; }
pytest_args_of() { case $1 in 3.13t) echo "--ignore=tests/test_typing.py" ;; esac; }

run_tests() {
    local version=$1 python
    local -a tiers
    python=$(python_of "$version")
    read -ra tiers <<<"$(tiers_of "$version")"
    log "$version: ${tiers[*]}; extras $(extras_of "$version"); pytest $(pytest_args_of "$version")"
    [ ${#tiers[@]} -gt 0 ] || { echo "pythons: no such version: $version" >&2; return 2; }
    build_chroot "$(chroot_of "$version")" >/dev/null
    # The checkout's files, as a fresh clone has them (no build outputs).
    git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - \
        | in_chroot "$(chroot_of "$version")" bash -c '
            set -euo pipefail
            python=$1 stress_runs=$2 extras=$3 pytest_args=$4 left_out=$5; shift 5
            mkdir /tmp/src && tar -xf - -C /tmp/src && cd /tmp/src
            "$python" -m venv /tmp/venv
            export PYTHON=/tmp/venv/bin/python PYPROXYPROTO_STRESS_RUNS=$stress_runs
            export PYPROXYPROTO_LEFT_OUT=$left_out
            # An older wheel before a newer sdist: some test dependencies have
            # no wheel for every interpreter yet (hypothesis for 3.13t), and
            # their sdists need toolchains (Rust) fetched from outside PyPI.
            export PIP_PREFER_BINARY=1
            bash .ci/tier.sh install "$extras"
            for tier in "$@"; do
                # shellcheck disable=SC2086  # pytest_args: words
                case $tier in
                    quick-pure) PYPROXYPROTO_NO_EXTENSIONS=1 bash .ci/tier.sh quick $pytest_args ;;
                    quick) bash .ci/tier.sh quick $pytest_args ;;
                    *) bash .ci/tier.sh "$tier" ;;
                esac
            done' _ "$python" "$STRESS_RUNS" "$(extras_of "$version")" "$(pytest_args_of "$version")" \
            "$(left_out_of "$version")" "${tiers[@]}"
}

if [ "$(id -u)" != 0 ] || ! command -v debootstrap >/dev/null || ! command -v unshare >/dev/null; then
    echo "pythons: needs root, debootstrap and unshare (apt-get install debootstrap)" >&2
    exit 1
fi
case ${1:-} in
    chroot) build_chroot "$2" ;;
    test) run_tests "$2" ;;
    *) echo "usage: $0 chroot trixie|sid | test 3.13|3.13t|3.14|3.15" >&2; exit 2 ;;
esac
