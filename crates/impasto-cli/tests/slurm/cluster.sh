#!/usr/bin/env bash
# A one-node Slurm cluster in a directory of its own, without systemd, for the tests:
#
#   cluster.sh start DIR   # munged, slurmctld and slurmd; prints `export SLURM_CONF=...`
#   cluster.sh stop DIR    # stops them by their pids
#
# Needs root and Debian's slurmctld, slurmd, slurm-client and munge. Everything (munge key and
# socket, state, spool, logs, pid files) lives in DIR, and the ports are free ones, so it
# disturbs no Slurm or munge already on the machine.
set -euo pipefail

cmd="${1:?usage: cluster.sh start|stop DIR}"
dir="$(realpath -m "${2:?usage: cluster.sh start|stop DIR}")"

stop() {
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        if [ -s "$pidfile" ]; then
            pid="$(cat "$pidfile")"
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$pidfile"
        fi
    done
}

if [ "$cmd" = stop ]; then
    stop
    exit 0
fi
[ "$cmd" = start ] || { echo "usage: cluster.sh start|stop DIR" >&2; exit 2; }

missing=""
for tool in munged mungekey slurmctld slurmd sbatch squeue scancel sinfo; do
    command -v "$tool" >/dev/null || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "missing:$missing (apt-get install slurmctld slurmd slurm-client munge)" >&2
    exit 1
fi
[ "$(id -u)" = 0 ] || { echo "the Slurm daemons run as root here: run as root" >&2; exit 1; }

mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
chmod 0700 "$dir/munge"
key="$dir/munge/munge.key"
[ -s "$key" ] || mungekey --create --keyfile="$key" >/dev/null
chmod 0400 "$key"
munged --force --socket="$dir/munge/munge.sock" --key-file="$key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge/munged.seed"

# Two free TCP ports for slurmctld and slurmd.
read -r ctld_port d_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')

host="$(hostname -s)"
cpus="$(nproc)"
cat > "$dir/slurm.conf" <<CONF
ClusterName=impasto-test
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.sock
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
# scancel's SIGTERM, then SIGKILL this many seconds later: time to write the best image.
KillWait=30
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"

trap 'stop' ERR
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.2
done
echo "the node did not come up; sinfo says: $(sinfo 2>&1)" >&2
tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
stop
exit 1
