#!/usr/bin/env bash
# Bring up a one-node Slurm on this machine (Debian's slurm-wlm + munge), for the CI test of
# `repro slurm` (scripts/slurm_ci.sh). Idempotent; `scripts/slurm_up.sh down` stops the daemons.
# Installs the packages when missing (needs root and apt). Exits 3 when Slurm cannot be started.
set -euo pipefail
ours() { grep -q '^ClusterName=repro-ci$' /etc/slurm/slurm.conf 2>/dev/null; }
if [ "${1:-}" = down ]; then
    # only the daemons of the cluster this script configured
    if ours; then
        pkill -x slurmd 2>/dev/null || true
        pkill -x slurmctld 2>/dev/null || true
        pkill -x munged 2>/dev/null || true
    fi
    exit 0
fi
if [ -f /etc/slurm/slurm.conf ] && ! ours; then
    echo "slurm_up: /etc/slurm/slurm.conf belongs to another Slurm installation; not touching it" >&2
    exit 3
fi
need() { command -v "$1" >/dev/null 2>&1; }
if ! need slurmctld || ! need munged; then
    if [ "$(id -u)" != 0 ] || ! need apt-get; then
        echo "slurm_up: slurm-wlm/munge not installed and cannot install them (not root or no apt)" >&2
        exit 3
    fi
    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge) \
        > /tmp/slurm_up_apt.log 2>&1 || { echo "slurm_up: apt-get install failed (see /tmp/slurm_up_apt.log)" >&2; exit 3; }
fi
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/log/munge /var/lib/munge
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=repro-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobRequeue=1
KillWait=10
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=ci Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
{ pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged || /usr/sbin/munged --force; } || exit 3
{ pgrep -x slurmctld >/dev/null || slurmctld -c; } || exit 3
{ pgrep -x slurmd >/dev/null || slurmd; } || exit 3
for _ in $(seq 1 30); do
    state=$(sinfo -h -o '%T' 2>/dev/null || true)
    if grep -q -E 'idle|mixed|alloc' <<<"$state"; then
        echo "slurm_up: node $host up ($cpus CPUs), partition ci"
        exit 0
    fi
    scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
    sleep 1
done
echo "slurm_up: the Slurm node did not come up:" >&2
sinfo >&2 || true
tail -5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 3
