#!/bin/bash
# A Slurm job array that backs up every account of one config file: each
# task runs `mailgrab --shard auto`, which takes its share of the accounts
# from SLURM_ARRAY_TASK_ID, _MIN, _STEP and _COUNT (by a hash of the account
# name: each account in exactly one task, whatever the array's numbering).
#
#   sbatch config/mailgrab-slurm.sh                     # 8 tasks, 4 at a time
#   sbatch --array=1-32%8 config/mailgrab-slurm.sh      # more tasks
#
# A task's exit code is mailgrab's: sacct shows which tasks to rerun
# (1, 3, 8, 9, 11: run again later) and which need a person (2, 4-7, 10,
# 12, 13: credentials, certificates, config, disk). Only the accounts of a
# failed task run again when it is resubmitted alone:
#   sbatch --array=5 config/mailgrab-slurm.sh
#
#SBATCH --job-name=mailgrab
#SBATCH --array=0-7%4
#SBATCH --cpus-per-task=2
#SBATCH --mem=256M
#SBATCH --time=06:00:00
#SBATCH --output=mailgrab-%A_%a.out
set -u
MAILGRAB=${MAILGRAB:-mailgrab}
MAILGRAB_CONFIG=${MAILGRAB_CONFIG:-$HOME/.config/mailgrab/config}
MAILGRAB_STATE=${MAILGRAB_STATE:-$HOME/mailgrab-state}
mkdir -p "$MAILGRAB_STATE"
task=${SLURM_ARRAY_TASK_ID:?run this with sbatch}
exec "$MAILGRAB" --config "$MAILGRAB_CONFIG" --shard auto --quiet \
  --summary-json "$MAILGRAB_STATE/summary-$task.json" \
  --events "$MAILGRAB_STATE/events-$task.jsonl" \
  --metrics "$MAILGRAB_STATE/metrics-$task.prom"
