#!/usr/bin/env bash
# Run a throw-away, one-node SLURM cluster (munged + slurmctld + slurmd) on this
# machine, for tests of the Snakemake SLURM executor.
#
#   scripts/slurm_cluster.sh start  STATE_DIR   # install if needed, start, wait until the node is idle
#   scripts/slurm_cluster.sh stop   STATE_DIR   # stop exactly the daemons recorded in STATE_DIR (idempotent)
#   scripts/slurm_cluster.sh status STATE_DIR   # exit 0 if the cluster in STATE_DIR is up
#   scripts/slurm_cluster.sh env    STATE_DIR   # print the export lines again
#
# `start` prints shell `export ...` lines on stdout (all diagnostics go to
# stderr), so   eval "$(scripts/slurm_cluster.sh start /tmp/slurm)"   works.
# The same lines are written to STATE_DIR/env.sh.
#
# Everything the daemons write (config, munge key/socket, state, spool, pid and
# log files) lives under STATE_DIR. Needs root (daemons run as root; packages are
# installed with apt-get when missing).
#
# Environment knobs:
#   SLURM_CLUSTER_TIMEOUT     seconds to wait for the node to become idle (default 60)
#   SLURM_CLUSTER_CTLD_PORT   slurmctld port (default 6817, next free port if busy)
#   SLURM_CLUSTER_SLURMD_PORT slurmd port    (default 6818, next free port if busy)
#   SLURM_CLUSTER_NO_INSTALL  =1: never call apt-get, fail if binaries are missing
#   SLURM_CLUSTER_NAME        ClusterName (default optbench)
#   SLURM_CLUSTER_PARTITION   name of the single (default) partition (default debug)
#   SLURM_CLUSTER_NO_ETC_LINK =1: do not symlink /etc/slurm/slurm.conf (see below)
#
# Side effects outside STATE_DIR: apt-get install (first run only), and a
# symlink /etc/slurm/slurm.conf -> STATE_DIR/slurm.conf while the cluster runs
# (only if that path is free; needed because the Snakemake jobstep plugin drops
# SLURM_CONF before calling srun inside jobs). Snakemake must be run with
# `--slurm-status-command squeue` (no accounting, so `sacct` does not work).
set -euo pipefail

PROG=$(basename "$0")
TIMEOUT=${SLURM_CLUSTER_TIMEOUT:-60}
CLUSTER_NAME=${SLURM_CLUSTER_NAME:-optbench}
PARTITION=${SLURM_CLUSTER_PARTITION:-debug}

log() { printf '[%s] %s\n' "$PROG" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# ---------------------------------------------------------------- helpers ---

# Wait (bounded, polling every 0.5 s) until "$@" succeeds; give up early when daemon $1 (recorded pid) has exited.
wait_daemon() {
    local name=$1 limit=$2; shift 2
    local deadline=$((SECONDS + limit)) pid
    pid=$(read_pid "$STATE_DIR/run/$name.launch.pid")
    while ((SECONDS < deadline)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        if ! is_ours "$pid" "$name"; then log "$name (pid $pid) exited"; return 1; fi
        sleep 0.5
    done
    "$@" >/dev/null 2>&1
}

# Is pid $1 alive and one of ours (its command line mentions STATE_DIR and, if
# given, its command name is $2)?
is_ours() {
    local pid=$1 name=${2:-}
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    if [[ -n $name ]]; then
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || return 1
    fi
    # zombie processes keep their /proc entry but have an empty cmdline
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$STATE_DIR/" || return 1
}

read_pid() { [[ -s $1 ]] && tr -dc '0-9' <"$1" || true; }

port_in_use() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        ss -Hltn 2>/dev/null | awk '{print $4}' | grep -qE "[:.]${port}\$"
    else
        # /proc/net/tcp{,6}: local address column, state 0A = LISTEN
        local hex
        hex=$(printf '%04X' "$port")
        cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v h=":$hex" '$4=="0A" && substr($2, length($2)-4)==h {f=1} END {exit !f}'
    fi
}

free_port() {
    local port=$1 exclude=${2:-}
    local tries=0
    while port_in_use "$port" || [[ $port == "$exclude" ]]; do
        port=$((port + 1)); tries=$((tries + 1))
        ((tries < 200)) || die "no free TCP port found near $1"
    done
    echo "$port"
}

dump_logs() {
    local f
    for f in "$STATE_DIR"/log/*; do
        [[ -f $f ]] || continue
        printf '\n===== tail -n 40 %s =====\n' "$f" >&2
        tail -n 40 "$f" >&2 || true
    done
}

env_lines() {
    printf 'export SLURM_CONF=%q\n' "$STATE_DIR/slurm.conf"
    # munge clients (munge/unmunge) default to /run/munge; slurm itself reads
    # AuthInfo=socket=... from slurm.conf. This is informational/convenience.
    printf 'export MUNGE_SOCKET=%q\n' "$STATE_DIR/munge/munge.socket.2"
}

# ------------------------------------------------------------- install ------

need_bins=(slurmctld slurmd sinfo squeue sbatch scontrol scancel munged munge unmunge)

missing_bins() {
    local b out=()
    for b in "${need_bins[@]}"; do
        command -v "$b" >/dev/null 2>&1 || [[ -x /usr/sbin/$b ]] || out+=("$b")
    done
    echo "${out[*]}"
}

install_packages() {
    local missing
    missing=$(missing_bins)
    [[ -z $missing ]] && return 0
    [[ ${SLURM_CLUSTER_NO_INSTALL:-0} == 1 ]] && die "missing binaries ($missing) and SLURM_CLUSTER_NO_INSTALL=1"
    command -v apt-get >/dev/null 2>&1 || die "missing binaries ($missing) and no apt-get to install them"
    log "installing slurm-wlm and munge (missing: $missing) ..."
    local t0=$SECONDS aptlog="$STATE_DIR/log/apt.log"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' maintainer scripts from starting system-wide daemons
    # (munge ships an init script): a temporary policy-rc.d denying starts.
    local created_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# temporary, created by %s\nexit 101\n' "$PROG" >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    local apt_opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300
                    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    local ok=0
    # Try with the current package lists first; `apt-get update` only if that fails
    # (no lists yet, or stale lists pointing to vanished .debs).
    if timeout 900 apt-get install "${apt_opts[@]}" slurm-wlm munge >>"$aptlog" 2>&1; then
        ok=1
    else
        log "apt-get install failed with the current package lists; running apt-get update once"
        timeout 600 apt-get update -q >>"$aptlog" 2>&1 || log "apt-get update reported errors (continuing)"
        timeout 900 apt-get install "${apt_opts[@]}" slurm-wlm munge >>"$aptlog" 2>&1 && ok=1
    fi
    if ((created_policy)); then rm -f /usr/sbin/policy-rc.d; fi
    if ((!ok)); then
        tail -n 30 "$aptlog" >&2 || true
        die "apt-get install slurm-wlm munge failed (log: $aptlog)"
    fi
    missing=$(missing_bins)
    [[ -z $missing ]] || die "still missing after install: $missing"
    log "installed in $((SECONDS - t0)) s"
}

# ------------------------------------------------------ /etc/slurm link ----
# snakemake-executor-plugin-slurm-jobstep strips SLURM_CONF (all SLURM_* but a
# few) from the environment of the `srun` it runs inside each job, so srun falls
# back to the compiled-in /etc/slurm/slurm.conf. We therefore point that path at
# our config with a symlink -- only if it is absent or is a symlink left behind
# by an earlier run of this script (into a state dir that is no longer running);
# a real config file there is never touched. Removed again by `stop`.
ETC_CONF=/etc/slurm/slurm.conf
LINK_MARK=".slurm_cluster_sh_link"

link_etc_conf() {
    [[ ${SLURM_CLUSTER_NO_ETC_LINK:-0} == 1 ]] && return 0
    local target="$STATE_DIR/slurm.conf" cur
    if [[ -L $ETC_CONF ]]; then
        cur=$(readlink "$ETC_CONF")
        if [[ $cur != "$target" ]]; then
            local other_dir=${cur%/slurm.conf}
            if [[ -e $other_dir/$LINK_MARK ]] && [[ -e $other_dir/run/slurmctld.launch.pid ]] \
                && (STATE_DIR=$other_dir; is_ours "$(read_pid "$other_dir/run/slurmctld.launch.pid")" slurmctld); then
                log "warning: $ETC_CONF points to the running cluster in $other_dir; leaving it (srun inside Snakemake jobs will talk to that cluster)"
                return 0
            fi
        fi
    elif [[ -e $ETC_CONF ]]; then
        log "warning: $ETC_CONF is a real file; not linking it (srun without SLURM_CONF will use it)"
        return 0
    fi
    mkdir -p /etc/slurm
    ln -sfn "$target" "$ETC_CONF"
    : >"$STATE_DIR/$LINK_MARK"
}

unlink_etc_conf() {
    if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$STATE_DIR/slurm.conf" ]]; then
        rm -f "$ETC_CONF"
    fi
    rm -f "$STATE_DIR/$LINK_MARK"
}

# ------------------------------------------------------------- stop ---------

stop_daemons() {
    local quiet=${1:-0}
    [[ -d $STATE_DIR ]] || return 0
    local conf="$STATE_DIR/slurm.conf" name pid stopped=()
    # Cancel jobs of *this* cluster first so that their slurmstepd processes
    # (which daemonise away from slurmd) go away too.
    if [[ -f $conf ]] && is_ours "$(read_pid "$STATE_DIR/run/slurmctld.launch.pid")" slurmctld \
        && command -v squeue >/dev/null 2>&1; then
        local jobs
        jobs=$(SLURM_CONF=$conf timeout 10 squeue -h -o %i -t PD,R,CG,S 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            ((quiet)) || log "cancelling jobs: $(echo $jobs)"
            # shellcheck disable=SC2086
            SLURM_CONF=$conf timeout 10 scancel $jobs 2>/dev/null || true
            local deadline=$((SECONDS + 15))
            while ((SECONDS < deadline)); do
                [[ -z $(SLURM_CONF=$conf timeout 5 squeue -h -o %i -t PD,R,CG,S 2>/dev/null || true) ]] && break
                sleep 0.5
            done
        fi
    fi
    for name in slurmd slurmctld munged; do
        pid=$(read_pid "$STATE_DIR/run/$name.launch.pid")
        if [[ -n $pid ]] && is_ours "$pid" "$name"; then
            ((quiet)) || log "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            local deadline=$((SECONDS + 15))
            while ((SECONDS < deadline)) && is_ours "$pid" "$name"; do sleep 0.2; done
            if is_ours "$pid" "$name"; then
                log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                deadline=$((SECONDS + 5))
                while ((SECONDS < deadline)) && is_ours "$pid" "$name"; do sleep 0.2; done
            fi
        fi
        rm -f "$STATE_DIR/run/$name.launch.pid"
        [[ -n $pid ]] && stopped+=("$pid")
    done
    unlink_etc_conf
    # The daemons were re-parented to PID 1; give it a moment to reap them so
    # that `ps` shows no <defunct> entries (bounded: some container inits never reap).
    local deadline=$((SECONDS + 5)) p z
    while ((SECONDS < deadline)); do
        z=0
        for p in "${stopped[@]}"; do
            [[ $(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) == Z ]] && z=1
        done
        ((z)) || break
        sleep 0.2
    done
}

# ------------------------------------------------------------- start --------

cluster_up() {
    local n
    for n in munged slurmctld slurmd; do
        is_ours "$(read_pid "$STATE_DIR/run/$n.launch.pid")" "$n" || return 1
    done
    node_state | grep -qE '^(idle|mix|alloc|allocated|mixed)'
}

node_state() {
    SLURM_CONF="$STATE_DIR/slurm.conf" timeout 10 sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1
}

# Launch "$@" in its own session, detached from our stdio; record its pid.
launch() {
    local name=$1; shift
    # setsid without -f execs in place (we are not a process-group leader in a
    # non-interactive shell), so $! is the daemon's pid.
    setsid "$@" </dev/null >>"$STATE_DIR/log/$name.stdout" 2>&1 9>&- &
    local pid=$!
    echo "$pid" >"$STATE_DIR/run/$name.launch.pid"
    # Until the forked shell has exec'ed setsid and setsid the daemon, the pid's
    # comm is "bash"/"setsid", and is_ours (wait_daemon, stop_daemons) would take
    # the daemon for exited or foreign (seen on a loaded machine). Wait (bounded)
    # for the exec; if the daemon dies at once, wait_daemon reports it.
    local deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)) && [[ -r /proc/$pid/comm ]] \
        && [[ $(cat "/proc/$pid/comm" 2>/dev/null) != "$name" ]]; do
        sleep 0.05
    done
}

write_conf() {
    local cpus mem_kb mem_mb real_mem
    cpus=$(nproc)
    mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    mem_mb=$((mem_kb / 1024))
    # headroom: 10% or at least 512 MB for the OS/daemons
    real_mem=$((mem_mb * 9 / 10))
    ((mem_mb - real_mem >= 512)) || real_mem=$((mem_mb - 512))
    ((real_mem >= 100)) || real_mem=100
    # Socket/core layout as slurmd sees it (avoids "Node configuration differs
    # from hardware"); only used when it agrees with nproc.
    local topo="" hw
    hw=$(slurmd -C 2>/dev/null | head -n1 || true)
    if [[ $hw =~ CPUs=([0-9]+)\ Boards=([0-9]+)\ SocketsPerBoard=([0-9]+)\ CoresPerSocket=([0-9]+)\ ThreadsPerCore=([0-9]+) ]] \
        && [[ ${BASH_REMATCH[1]} == "$cpus" ]]; then
        topo=" Boards=${BASH_REMATCH[2]} SocketsPerBoard=${BASH_REMATCH[3]} CoresPerSocket=${BASH_REMATCH[4]} ThreadsPerCore=${BASH_REMATCH[5]}"
    fi
    # Memory is a consumable resource; jobs without --mem get DefMemPerCPU
    # (instead of the whole node), so several jobs can run at once.
    local def_mem=$((real_mem / cpus / 4))
    ((def_mem <= 1024)) || def_mem=1024

    cat >"$STATE_DIR/slurm.conf" <<EOF
# Generated by $PROG on $(date -u +%Y-%m-%dT%H:%M:%SZ) -- one-node test cluster.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root

AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE_DIR/munge/munge.socket.2

StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$STATE_DIR/run/slurmctld.pid
SlurmdPidFile=$STATE_DIR/run/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# no cgroups, no accounting
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true

SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem
ReturnToService=2
# keep finished jobs visible to squeue/scontrol for 10 minutes
MinJobAge=600
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5

NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$cpus$topo RealMemory=$real_mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES State=UP MaxTime=INFINITE OverSubscribe=NO
EOF
}

start_munge() {
    local mdir="$STATE_DIR/munge"
    mkdir -p "$mdir"
    # 755: munged wants the socket dir traversable by everyone; the key is 0600.
    chmod 755 "$mdir"
    if [[ ! -s $mdir/munge.key ]]; then
        if command -v mungekey >/dev/null 2>&1 || [[ -x /usr/sbin/mungekey ]]; then
            PATH=$PATH:/usr/sbin mungekey --create --keyfile="$mdir/munge.key" --force >/dev/null 2>&1 || true
        fi
        if [[ ! -s $mdir/munge.key ]]; then
            dd if=/dev/urandom of="$mdir/munge.key" bs=1024 count=1 status=none
        fi
    fi
    chmod 600 "$mdir/munge.key"
    rm -f "$mdir/munge.socket.2" "$mdir/munge.socket.2.lock"
    # --foreground: munged then logs to stderr (log/munged.stdout).
    # --force: munged refuses some setups (e.g. insecure parent dirs like a
    # world-writable /tmp without sticky bit); we accept them for a test cluster.
    launch munged munged --foreground --force \
        --socket="$mdir/munge.socket.2" \
        --key-file="$mdir/munge.key" \
        --pid-file="$STATE_DIR/run/munged.pid" \
        --seed-file="$mdir/munged.seed" \
        --num-threads=2
    munge_ok() { munge -s ping -S "$mdir/munge.socket.2" | unmunge -S "$mdir/munge.socket.2"; }
    if ! wait_daemon munged 20 munge_ok; then
        dump_logs
        die "munged did not come up (socket $mdir/munge.socket.2)"
    fi
}

do_start() {
    mkdir -p "$STATE_DIR"
    STATE_DIR=$(cd "$STATE_DIR" && pwd -P)
    [[ ${#STATE_DIR} -lt 80 ]] || die "STATE_DIR path too long for a unix socket: $STATE_DIR"

    if [[ -f $STATE_DIR/slurm.conf ]] && command -v sinfo >/dev/null 2>&1 && cluster_up; then
        log "cluster in $STATE_DIR is already running; reusing it"
        link_etc_conf
        env_lines
        return 0
    fi

    # Anything left over from an earlier (crashed/half-started) run: stop our
    # recorded daemons and wipe our own subdirectories.
    stop_daemons 1
    rm -rf "$STATE_DIR"/{ctld,slurmd,munge,log,run} "$STATE_DIR/slurm.conf" "$STATE_DIR/env.sh" "$STATE_DIR/$LINK_MARK"
    mkdir -p "$STATE_DIR"/{ctld,slurmd,munge,log,run}
    chmod 755 "$STATE_DIR"

    local t0=$SECONDS
    install_packages
    export PATH="$PATH:/usr/sbin:/sbin"

    CTLD_PORT=$(free_port "${SLURM_CLUSTER_CTLD_PORT:-6817}")
    SLURMD_PORT=$(free_port "${SLURM_CLUSTER_SLURMD_PORT:-6818}" "$CTLD_PORT")
    write_conf
    export SLURM_CONF="$STATE_DIR/slurm.conf"

    start_munge
    # -D: stay in the foreground (we detach with setsid); -c: ignore saved state;
    # -i: ignore errors from the state files. slurmd -D likewise.
    launch slurmctld slurmctld -D -c -i -f "$SLURM_CONF"
    if ! wait_daemon slurmctld 20 timeout 5 scontrol ping; then
        dump_logs; stop_daemons 1
        die "slurmctld did not answer 'scontrol ping'"
    fi
    launch slurmd slurmd -D -f "$SLURM_CONF"

    local deadline=$((SECONDS + TIMEOUT)) state="" resumed=0
    while ((SECONDS < deadline)); do
        state=$(node_state || true)
        case $state in
            idle*|mix*|alloc*) break ;;
            down*|drain*|fail*)
                # ReturnToService=2 should bring it back on registration; nudge once.
                if ((!resumed)) && is_ours "$(read_pid "$STATE_DIR/run/slurmd.launch.pid")" slurmd; then
                    sleep 2
                    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
                    resumed=1
                fi ;;
        esac
        local n
        for n in munged slurmctld slurmd; do
            if ! is_ours "$(read_pid "$STATE_DIR/run/$n.launch.pid")" "$n"; then
                dump_logs; stop_daemons 1
                die "$n exited during start-up"
            fi
        done
        sleep 0.5
    done
    case $state in
        idle*|mix*|alloc*) ;;
        *)
            log "node state after ${TIMEOUT}s: '${state:-<none>}'"
            timeout 10 scontrol show node "$NODE" >&2 || true
            dump_logs; stop_daemons 1
            die "node $NODE did not become idle within ${TIMEOUT}s" ;;
    esac
    link_etc_conf
    env_lines >"$STATE_DIR/env.sh"
    log "cluster up in $((SECONDS - t0)) s: node $NODE ($state), slurmctld port $CTLD_PORT, slurmd port $SLURMD_PORT"
    log "pids: munged=$(read_pid "$STATE_DIR/run/munged.launch.pid") slurmctld=$(read_pid "$STATE_DIR/run/slurmctld.launch.pid") slurmd=$(read_pid "$STATE_DIR/run/slurmd.launch.pid")"
    env_lines
}

# ------------------------------------------------------------- main ---------

[[ $# -eq 2 ]] || usage
CMD=$1
STATE_DIR=$2
NODE=$(hostname -s)
[[ -n $NODE ]] || die "hostname -s is empty"
export PATH="$PATH:/usr/sbin:/sbin"

case $CMD in
    start)
        [[ $(id -u) -eq 0 ]] || die "must run as root (daemons run as root, packages installed with apt-get)"
        mkdir -p "$STATE_DIR"
        STATE_DIR=$(cd "$STATE_DIR" && pwd -P)
        # serialise concurrent start/stop on the same STATE_DIR
        exec 9>"$STATE_DIR/.lock"
        flock -w 900 9 || die "could not lock $STATE_DIR/.lock"
        do_start ;;
    stop)
        [[ -d $STATE_DIR ]] || { log "no state dir $STATE_DIR; nothing to stop"; exit 0; }
        STATE_DIR=$(cd "$STATE_DIR" && pwd -P)
        exec 9>"$STATE_DIR/.lock"
        flock -w 120 9 || die "could not lock $STATE_DIR/.lock"
        stop_daemons 0
        log "stopped (state dir $STATE_DIR)" ;;
    status)
        [[ -d $STATE_DIR ]] || exit 1
        STATE_DIR=$(cd "$STATE_DIR" && pwd -P)
        if cluster_up; then log "up: node $NODE $(node_state)"; exit 0; else log "down"; exit 1; fi ;;
    env)
        STATE_DIR=$(cd "$STATE_DIR" && pwd -P)
        env_lines ;;
    *) usage ;;
esac
