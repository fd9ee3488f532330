#!/usr/bin/env bash
# A one-node Slurm on this machine, for tests/test_slurm.py (and for trying profiles/slurm by hand).
#
#   bash .ci/slurm.sh            install (Debian's slurm-wlm + munge) if missing, then start munged, slurmctld, slurmd
#   bash .ci/slurm.sh install    install only
#   bash .ci/slurm.sh start      start (or keep) the daemons; waits until the node takes jobs
#   bash .ci/slurm.sh stop       stop the daemons this script started (by their pid files)
#   bash .ci/slurm.sh status     exit 0 when the cluster takes jobs
#
# Idempotent: a second run finds everything up and only checks. Needs root (or sudo). The cluster: one node named
# after this host (address 127.0.0.1) with every core and 90 % of the memory, one partition `debug`, no accounting
# database (so no sacct: Snakemake polls with squeue, and MinJobAge keeps finished jobs visible to it), and a
# completion log (jobcomp/filetxt) in $SLURM_JOBCOMP_LOG: Slurm's own record of every job that ran.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE=/var/lib/slurm-repbench
LOGDIR=/var/log/slurm-repbench
RUNDIR=/run/slurm-repbench
JOBCOMP=${SLURM_JOBCOMP_LOG:-$LOGDIR/jobcomp.log}
MARKER="# written by repbench .ci/slurm.sh"

say() { echo "slurm.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

SUDO=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null && sudo -n true 2>/dev/null || die "needs root (or password-less sudo)"
  SUDO=(sudo -n)
fi
as_root() { "${SUDO[@]}" "$@"; }

installed() { command -v sbatch >/dev/null && [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && [ -x /usr/sbin/munged ]; }

do_install() {
  if installed; then
    return 0
  fi
  say "installing slurm-wlm and munge from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  local try
  for try in 1 2 3; do  # a flaky mirror should not fail CI: retry the whole update + install
    if as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; then
      break
    fi
    [ "$try" = 3 ] && die "apt-get install slurm-wlm munge failed 3 times"
    sleep 5
  done
  installed || die "slurm-wlm installed but slurmctld/slurmd/sbatch/munged not found"
}

node_name() { hostname -s; }

write_conf() {
  local cpus mem_mb tmp
  cpus=$(nproc)
  mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    die "$CONF exists and was not written by this script: not touching a real cluster's configuration"
  fi
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
$MARKER (a one-node test cluster; rewritten on each start)
ClusterName=repbench
SlurmctldHost=$(node_name)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$JOBCOMP
MinJobAge=600
DefMemPerCPU=1024
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldPidFile=$RUNDIR/slurmctld.pid
SlurmdPidFile=$RUNDIR/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldTimeout=30
# clients give up on a stopped controller after ~4 s instead of ~9 (snakemake-executor-plugin-slurm asks
# scontrol at import, so every snakemake command waits that long while Slurm is installed but down)
MessageTimeout=5
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
NodeName=$(node_name) NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  as_root mkdir -p "$CONF_DIR"
  if [ -f "$CONF" ] && cmp -s "$tmp" "$CONF"; then
    rm -f "$tmp"
    return 1  # unchanged
  fi
  as_root cp "$tmp" "$CONF"
  as_root chmod 644 "$CONF"
  rm -f "$tmp"
  return 0
}

pid_alive() { [ -f "$1" ] && as_root kill -0 "$(cat "$1")" 2>/dev/null; }

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  munge_ok && return 0
  as_root mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    say "creating a munge key"
    as_root dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  # munged runs as root here (like slurmctld and slurmd): its key and directories belong to root
  as_root chown -R root:root /etc/munge /var/lib/munge /var/log/munge /run/munge
  as_root chmod 0700 /etc/munge && as_root chmod 0400 /etc/munge/munge.key
  as_root chmod 0755 /run/munge
  as_root /usr/sbin/munged --force
  as_root mkdir -p "$RUNDIR" && as_root touch "$RUNDIR/munged.ours"  # so that `stop` stops it too
  local i
  for i in $(seq 1 20); do munge_ok && return 0; sleep 0.5; done
  die "munged does not answer (see /var/log/munge/munged.log)"
}

cluster_ok() {
  # the controller answers and the node is idle, mixed or allocated (i.e. takes jobs)
  scontrol ping 2>/dev/null | grep -q "is UP" || return 1
  sinfo -h -N -o "%T" 2>/dev/null | grep -qE "^(idle|mixed|allocated|completing)" || return 1
}

stop_daemons() {
  local f pid i
  for f in "$RUNDIR/slurmd.pid" "$RUNDIR/slurmctld.pid"; do
    if pid_alive "$f"; then
      pid=$(cat "$f")
      as_root kill "$pid" 2>/dev/null || true
      for i in $(seq 1 40); do as_root kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      as_root kill -9 "$pid" 2>/dev/null || true
    fi
    as_root rm -f "$f"
  done
}

stop_munge() {
  # only a munged that this script started (a system one serves other things)
  if [ -f "$RUNDIR/munged.ours" ] && pid_alive /run/munge/munged.pid; then
    as_root kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
  fi
  as_root rm -f "$RUNDIR/munged.ours"
}

do_start() {
  installed || die "Slurm is not installed: run 'bash .ci/slurm.sh install' (or plain 'bash .ci/slurm.sh')"
  local changed=0
  write_conf && changed=1 || true
  start_munge
  if [ "$changed" = 0 ] && cluster_ok; then
    say "cluster up: $(sinfo -h -N -o '%N %T cpus=%c mem=%m')"
    return 0
  fi
  [ "$changed" = 1 ] && say "configuration written to $CONF"
  stop_daemons  # a changed configuration or a half-started cluster: start both afresh
  as_root mkdir -p "$STATE/ctld" "$STATE/d" "$LOGDIR" "$RUNDIR"
  as_root touch "$JOBCOMP"
  as_root /usr/sbin/slurmctld -c  # -c: no jobs left over from an earlier run (ids restart; the log keeps them)
  local i
  for i in $(seq 1 60); do scontrol ping 2>/dev/null | grep -q "is UP" && break; sleep 0.5; done
  scontrol ping 2>/dev/null | grep -q "is UP" || { tail -20 "$LOGDIR/slurmctld.log" >&2 || true; die "slurmctld did not come up"; }
  as_root /usr/sbin/slurmd -N "$(node_name)"
  for i in $(seq 1 120); do
    cluster_ok && break
    # a node left down/drained by an earlier run (e.g. after a config change) is put back in service
    if sinfo -h -N -o "%T" 2>/dev/null | grep -qE "^(down|drain)"; then
      as_root scontrol update nodename="$(node_name)" state=resume 2>/dev/null || true
    fi
    sleep 0.5
  done
  cluster_ok || { sinfo -N -l >&2 || true; tail -20 "$LOGDIR/slurmd.log" >&2 || true; die "node did not become idle"; }
  # a real round trip through the scheduler, slurmd and srun
  timeout 60 srun -N1 -n1 -t 1 true || die "srun smoke test failed"
  say "cluster up: $(sinfo -h -N -o '%N %T cpus=%c mem=%m'); completion log $JOBCOMP"
}

case "${1:-up}" in
  up) do_install && do_start ;;
  install) do_install ;;
  start) do_start ;;
  stop) stop_daemons; stop_munge; say "stopped" ;;
  status) cluster_ok ;;
  *) die "usage: bash .ci/slurm.sh [up|install|start|stop|status]" ;;
esac
