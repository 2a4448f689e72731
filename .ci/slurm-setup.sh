#!/usr/bin/env bash
# A one-node Slurm cluster on this Debian 12 machine (as root), for the tests of --backend slurm.
#
# Idempotent: installs Debian's slurm packages and munge only if missing, writes the config
# (/etc/slurm/slurm.conf, where every Slurm command looks), starts munged, slurmctld and slurmd
# only if they do not answer already (no systemd needed), and waits until the node is idle.
# With everything in place it takes well under a second.
#
# The cluster "ci": one node (this machine, 2 CPUs), partitions "debug" (the default) and
# "other"; memory is enforced with cgroups where they are writable (jobs over --mem end
# OUT_OF_MEMORY), and finished jobs are kept in a job completion file that `sacct -c` reads
# (no slurmdbd or database).
#
# Settings (environment):
#   REPRUN_CI_STATE   folder for logs, pid files and Slurm's state (default /var/lib/reprun-ci)
#
# `bash .ci/slurm-setup.sh stop` stops the daemons it started (by the pids in their pid files).
set -euo pipefail

STATE=${REPRUN_CI_STATE:-/var/lib/reprun-ci}/slurm
CONF_DIR=/etc/slurm
export DEBIAN_FRONTEND=noninteractive
say() { echo "slurm-setup: $*" >&2; }

stop_pidfile() {
  local file=$1 pid i
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$file"
}

if [ "${1:-}" = stop ]; then
  stop_pidfile "$STATE/slurmd.pid"
  stop_pidfile "$STATE/slurmctld.pid"
  stop_pidfile /run/munge/munged.pid
  say "stopped"
  exit 0
fi

install_missing() {
  local need=()
  command -v slurmctld >/dev/null || need+=(slurmctld)
  command -v slurmd >/dev/null || need+=(slurmd)
  command -v sbatch >/dev/null || need+=(slurm-client)
  command -v munged >/dev/null || need+=(munge)
  if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    mkdir -p "$STATE"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >"$STATE/apt.log" 2>&1 \
      || { cat "$STATE/apt.log" >&2; return 1; }
  fi
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
  say "starting munged"
  [ -s /etc/munge/munge.key ] || { mungekey -c -f; chown munge:munge /etc/munge/munge.key; }
  install -d -o munge -g munge -m 755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  local i
  for i in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0; sleep 0.1; done
  say "munged does not answer"; return 1
}

write_config() {
  local host node cgroup mem_kill tmp
  host=$(hostname -s)
  node=$(slurmd -C | head -n 1)
  mkdir -p "$STATE/state" "$STATE/spool" "$CONF_DIR"
  # Memory is enforced by cgroups where they can be written, else by polling (jobs over their
  # --mem then end FAILED, not OUT_OF_MEMORY).
  if [ -w /sys/fs/cgroup/memory ] || [ -w /sys/fs/cgroup/cgroup.subtree_control ]; then
    cgroup=1; mem_kill=""
  else
    cgroup=0; mem_kill="JobAcctGatherParams=OverMemoryKill"
  fi
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
# Written by reprun's .ci/slurm-setup.sh: a one-node cluster for the tests.
ClusterName=ci
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/$([ $cgroup = 1 ] && echo cgroup || echo linuxproc)
TaskPlugin=task/$([ $cgroup = 1 ] && echo cgroup || echo none)
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
MinJobAge=300
KillWait=5
MailProg=/bin/true
SchedulerParameters=batch_sched_delay=0
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
$mem_kill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.txt
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=other Nodes=$host MaxTime=INFINITE State=UP
EOF
  if ! cmp -s "$tmp" "$CONF_DIR/slurm.conf"; then
    say "writing $CONF_DIR/slurm.conf"
    install -m 644 "$tmp" "$CONF_DIR/slurm.conf"
    CHANGED=1
  fi
  rm -f "$tmp"
  printf 'CgroupPlugin=autodetect\nConstrainCores=yes\nConstrainRAMSpace=yes\n' >"$tmp"
  if ! cmp -s "$tmp" "$CONF_DIR/cgroup.conf"; then
    install -m 644 "$tmp" "$CONF_DIR/cgroup.conf"
    CHANGED=1
  fi
  rm -f "$tmp"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_daemons() {
  if alive "$STATE/slurmctld.pid" && [ "$CHANGED" = 1 ]; then
    say "config changed: scontrol reconfigure"
    scontrol reconfigure
  fi
  if ! alive "$STATE/slurmctld.pid"; then
    say "starting slurmctld (log: $STATE/slurmctld.log)"
    slurmctld
  fi
  if ! alive "$STATE/slurmd.pid"; then
    say "starting slurmd (log: $STATE/slurmd.log)"
    slurmd
  fi
}

wait_idle() {
  local i state
  for i in $(seq 300); do
    state=$(sinfo -h -p debug -o %T 2>/dev/null || true)
    case $state in
      idle*|mixed*|allocated*) say "node $state"; return 0 ;;
      down*|drain*) scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.1
  done
  say "the node did not become idle within 30 s (state: ${state:-none})"
  tail -n 20 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2
  return 1
}

CHANGED=0
install_missing
mkdir -p "$STATE"
start_munge
write_config
start_daemons
wait_idle
echo "SLURM_CONF=$CONF_DIR/slurm.conf"
