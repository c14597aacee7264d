#!/usr/bin/env bash
# Set up and run vipbx on a Debian machine.
#
#   ./deploy.sh [start]   install everything, deploy the example tenants, start Asterisk,
#                         the vipbx service and the test phone
#   ./deploy.sh stop      stop what `start` started
#   ./deploy.sh status    show what runs
#   ./deploy.sh test      install everything and run the whole test suite (real Asterisk included)
#
# Environment: VIPBX_HOME (state, default /var/lib/vipbx), VIPBX_CACHE (Asterisk rootfs cache,
# default /var/cache/vipbx), VIPBX_CONFIG (tenant YAML files, default the bundled examples).
#
# Where systemd is the service manager, Asterisk and vipbx serve are its services (units
# vipbx-asterisk, vipbx-serve and vipbx.target, installed by `vipbx service install`: started at
# boot, restarted on failure, logged to the journal). Where it is not (containers, CI), they run
# in the background, ended by the pids kept in files. The test phone always runs in the background.
set -Eeuo pipefail
# Secrets, voicemail and logs are created under VIPBX_HOME: nothing here is for other accounts
# (Asterisk's own account reaches what it needs through its group; see docs/security.md).
umask 027

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv="$here/.venv"
export VIPBX_HOME=${VIPBX_HOME:-/var/lib/vipbx}
export VIPBX_CACHE=${VIPBX_CACHE:-/var/cache/vipbx}
export VIPBX_CONFIG=${VIPBX_CONFIG:-"$here/examples/platform.yaml $here/examples/acme.yaml $here/examples/borealis.yaml"}
serve_pid="$VIPBX_HOME/serve.pid"

step="starting"
say() { printf '==> %s\n' "$*"; step=$*; }
die() { printf 'deploy.sh: %s\n' "$*" >&2; exit 1; }
# A failing command has said what went wrong; this says at which step everything stopped.
trap 'printf "deploy.sh: stopped at: %s (exit status %d)\n" "$step" "$?" >&2' ERR

need_root() { [ "$(id -u)" = 0 ] || die "run as root (Asterisk and its rootfs need it)"; }

# sd_booted(3): systemd runs this machine.
with_systemd() { [ -d /run/systemd/system ]; }

have_postgres_server() {
    # Debian keeps the server programs out of PATH, in /usr/lib/postgresql/VERSION/bin.
    local bindir
    bindir=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$bindir" ] && [ -x "$bindir/postgres" ]; then
        return 0
    fi
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

install_system_packages() {
    # debootstrap builds the Asterisk rootfs where the distribution has no asterisk package;
    # espeak-ng and sox make the spoken prompt catalogue. With "test": Kannel (a real SMS gateway
    # and its fake SMSC) and openssl for the notification tests, and the PostgreSQL server for the
    # call-state tests (they run a cluster of their own on 127.0.0.1:15942; the default cluster
    # that the package's installation may start is not used); Kamailio and SIPp for the SIP edge.
    local missing=()
    if [ "${1:-}" = test ]; then
        dpkg -s kannel >/dev/null 2>&1 || missing+=(kannel)
        dpkg -s kannel-extras >/dev/null 2>&1 || missing+=(kannel-extras)
        command -v openssl >/dev/null || missing+=(openssl)
        have_postgres_server || missing+=(postgresql)
        # The home page's browser tests drive Debian's Chromium through its ChromeDriver.
        command -v chromium >/dev/null || missing+=(chromium)
        command -v chromedriver >/dev/null || missing+=(chromium-driver)
        # The SIP edge of a cluster: Debian's Kamailio (not started as a service: the tests run
        # their own on loopback), and SIPp for the stand-in nodes and callers.
        command -v kamailio >/dev/null || missing+=(kamailio)
        command -v sipp >/dev/null || missing+=(sip-tester)
    fi
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v espeak-ng >/dev/null || missing+=(espeak-ng)
    command -v sox >/dev/null || missing+=(sox)
    command -v unshare >/dev/null || missing+=(util-linux)
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
        # Where systemd runs, the package starts Kamailio's own service on every address with
        # its sample configuration: the one just installed here is stopped and not enabled.
        if [[ " ${missing[*]} " == *" kamailio "* ]] && [ -d /run/systemd/system ]; then
            systemctl disable --now kamailio.service >/dev/null 2>&1 || true
        fi
    fi
}

install_python() {
    local extras=${1:-}
    if [ ! -x "$venv/bin/python" ]; then
        say "creating the Python environment"
        python3 -m venv "$venv"
    fi
    say "installing vipbx${extras:+ with [$extras]}"
    "$venv/bin/pip" install -q --upgrade pip >/dev/null
    "$venv/bin/pip" install -q "$here${extras:+[$extras]}"
}

vipbx() { "$venv/bin/vipbx" "$@"; }

start() {
    need_root
    install_system_packages
    install_python
    say "locating Asterisk (the system's, else a Debian-unstable rootfs, built once)"
    vipbx asterisk setup
    say "building the spoken prompt catalogue (fi, sv, en)"
    vipbx prompts build
    say "validating and deploying the tenant configuration"
    # shellcheck disable=SC2086
    vipbx validate $VIPBX_CONFIG
    # shellcheck disable=SC2086
    vipbx deploy $VIPBX_CONFIG
    if with_systemd; then
        start_units
    else
        say "starting Asterisk"
        vipbx asterisk start
        start_service
    fi
    say "starting the test phone (every example user's softphone, and the carrier)"
    # The phone only tests the PBX: when it cannot start (its line above says why), the PBX
    # still runs and deploy.sh goes on.
    # shellcheck disable=SC2086
    if vipbx phone start $VIPBX_CONFIG; then
        say "ready. Try:  $venv/bin/vipbx phone call +358201243100 --caller +358401110001 --wait 5"
    else
        say "ready, without the test phone: Asterisk and vipbx serve run"
    fi
    status
}

start_service() {
    if [ -f "$serve_pid" ] && kill -0 "$(cat "$serve_pid")" 2>/dev/null; then
        say "vipbx serve already runs (pid $(cat "$serve_pid"))"
        return
    fi
    say "starting vipbx serve (ARI application + FastAGI)"
    mkdir -p "$VIPBX_HOME"
    # The log names callers and mailboxes: owner-only, also when an older version left it open.
    # serve.log is written and rotated (50 MB, 5 kept) by vipbx itself; serve.out keeps only what
    # is printed before logging starts (a refused configuration, a crash of the interpreter).
    touch "$VIPBX_HOME/serve.out"
    chmod 600 "$VIPBX_HOME/serve.out"
    # shellcheck disable=SC2086
    nohup "$venv/bin/vipbx" --log-file "$VIPBX_HOME/serve.log" serve $VIPBX_CONFIG >>"$VIPBX_HOME/serve.out" 2>&1 &
    echo $! >"$serve_pid"
    wait_registered background_serve_alive background_serve_log
    say "vipbx serve is up (pid $(cat "$serve_pid"))"
}

background_serve_alive() { kill -0 "$(cat "$serve_pid")" 2>/dev/null; }
background_serve_log() { tail -5 "$VIPBX_HOME/serve.out"; tail -20 "$VIPBX_HOME/serve.log" 2>/dev/null || true; }
unit_serve_alive() { systemctl is-active --quiet vipbx-serve.service; }
unit_serve_log() { journalctl -u vipbx-serve.service -n 20 --no-pager; }

# Healthy = the Stasis application is registered with Asterisk. $1 fails once vipbx serve has
# ended, $2 shows its last log lines.
wait_registered() {
    local alive=$1 log=$2
    for _ in $(seq 1 50); do
        if vipbx asterisk cli "ari show apps" 2>/dev/null | grep -qw vipbx; then
            return 0
        fi
        "$alive" || { "$log" >&2; die "vipbx serve exited"; }
        sleep 0.2
    done
    "$log" >&2
    die "vipbx serve did not register its ARI application"
}

start_units() {
    # Units that already run are left running; an Asterisk or vipbx serve started in the
    # background before (by an older deploy.sh, or by hand) is ended by its pid first.
    say "installing and starting the systemd services (vipbx-asterisk, vipbx-serve)"
    # shellcheck disable=SC2086
    vipbx service install --stop-background $VIPBX_CONFIG
    wait_registered unit_serve_alive unit_serve_log
    say "vipbx serve is up (vipbx-serve.service)"
}

stop() {
    need_root
    if [ -x "$venv/bin/vipbx" ]; then
        # shellcheck disable=SC2086
        vipbx phone stop $VIPBX_CONFIG || true
    fi
    if with_systemd && [ -f /etc/systemd/system/vipbx.target ]; then
        # vipbx serve first, then Asterisk (the units' order); they stay enabled for the next boot.
        say "stopping the systemd services (vipbx.target)"
        systemctl stop vipbx.target vipbx-serve.service vipbx-asterisk.service
    fi
    # Whatever runs in the background (by pid).
    if [ -f "$serve_pid" ]; then
        local pid
        pid=$(cat "$serve_pid")
        if kill -0 "$pid" 2>/dev/null; then
            say "stopping vipbx serve (pid $pid)"
            kill "$pid"
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "$serve_pid"
    fi
    if [ -x "$venv/bin/vipbx" ]; then
        vipbx asterisk stop || true
    fi
}

status() {
    [ -x "$venv/bin/vipbx" ] || die "not installed yet: run ./deploy.sh start"
    # The same lines as `vipbx service status`: pid and manager (systemd or background), or stopped.
    vipbx service status || true
}

run_tests() {
    need_root
    install_system_packages test
    install_python test
    say "locating Asterisk for the tests"
    vipbx asterisk setup
    say "running the test suite"
    cd "$here"
    exec "$venv/bin/python" -m pytest "$@"
}

cmd=${1:-start}
shift || true
case "$cmd" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    test) run_tests "$@" ;;
    *) die "usage: $0 [start|stop|status|test [pytest args]]" ;;
esac
