#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, on loopback, to try and to test hydra/launcher=slurm for real.
#
#   sudo bash scripts/slurm_cluster.sh start    # installs slurm-wlm and munge if missing, starts munged, slurmctld, slurmd
#   export SLURM_CONF=/tmp/vae-gumbel-slurm/slurm.conf   # what start prints: sbatch, squeue, ... find the cluster
#   python -m pytest -m slurm                   # tiny jobs through sbatch: one requeued, one cancelled
#   sudo bash scripts/slurm_cluster.sh stop
#
# Everything lives in $VAE_GUMBEL_SLURM (default /tmp/vae-gumbel-slurm): the config, the controller's
# state, the logs. The node is this machine (all its cores, 80% of its memory, no GPU) in one
# partition, "debug". slurmd runs jobs as the user who submits them, so it needs root. It keeps no
# accounting (no slurmdbd): sacct has nothing to say, as on many small clusters.
set -euo pipefail
home=${VAE_GUMBEL_SLURM:-/tmp/vae-gumbel-slurm}
conf=$home/slurm.conf

write_config() {
  local node cpus memory
  node=$(hostname -s)
  cpus=$(nproc)
  memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
  mkdir -p "$home/state" "$home/spool" "$home/log"
  cat > "$conf" <<EOF
ClusterName=vaegumbel
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=$home/state
SlurmdSpoolDir=$home/spool
SlurmctldPidFile=$home/slurmctld.pid
SlurmdPidFile=$home/slurmd.pid
SlurmctldLogFile=$home/log/slurmctld.log
SlurmdLogFile=$home/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
JobRequeue=1
KillWait=30
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get install -y -q slurm-wlm munge >/dev/null
  fi
  write_config
  if ! pgrep -x munged >/dev/null; then
    [ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge && chown munge:munge /run/munge
    runuser -u munge -- munged
  fi
  # -c: a new controller starts with no jobs, even where an earlier cluster left its state behind.
  pgrep -x slurmctld >/dev/null || slurmctld -c -f "$conf"
  pgrep -x slurmd >/dev/null || slurmd -f "$conf" -N "$(hostname -s)"
  export SLURM_CONF=$conf
  for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      scontrol update NodeName="$(hostname -s)" State=RESUME 2>/dev/null || true
      echo "SLURM is up: sinfo says $(sinfo -h -o '%P %D %T %c'). Now run: export SLURM_CONF=$conf"
      return 0
    fi
    sleep 1
  done
  echo "SLURM did not come up; see $home/log/" >&2
  exit 1
}

stop() {
  for daemon in slurmd slurmctld; do
    pkill -x "$daemon" 2>/dev/null || true
  done
  for _ in $(seq 30); do
    pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || break
    sleep 1
  done
  # A daemon still up waits for a job step that did not end (its process stuck in the kernel, as in a
  # long fsync on a busy disk); left alone, the next start would find it and never get a node.
  for daemon in slurmd slurmctld slurmstepd; do
    pkill -9 -x "$daemon" 2>/dev/null || true
  done
  echo "SLURM stopped (munged is left running)"
}

status() {
  SLURM_CONF=$conf sinfo && SLURM_CONF=$conf squeue
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
