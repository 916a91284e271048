/*
 * shard.h - which accounts of the config file one worker of many runs
 * (--shard I/N, --shard auto, --shard auto/N).
 *
 * Owns the stable index of an account: the 64-bit FNV-1a hash of its name
 * (the NAME of [account NAME], as bytes), modulo N, plus 1. It depends on
 * the name alone, never on the order of the file, so every account is in
 * exactly one of the N shards whatever the file's order, and keeps its shard
 * when other accounts come or go. "auto" takes I and N from a scheduler's
 * environment: Slurm job arrays (SLURM_ARRAY_TASK_ID, _MIN, _STEP, _COUNT)
 * or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with N given as
 * auto/N).
 *
 * Pure functions, no I/O; the environment is read through the function
 * given. Thread-safe.
 */
#ifndef MAILGRAB_SHARD_H
#define MAILGRAB_SHARD_H

#include <stdbool.h>
#include <stdint.h>

#include "mailgrab/error.h"

#define MG_SHARD_MAX 100000

struct mg_shard {
    unsigned index; /* 1..count */
    unsigned count; /* 0: no sharding, every account */
};

/* Is spec "I/N", "auto" or "auto/N" (N up to MG_SHARD_MAX, 1 <= I <= N)?
 * For the command line's check; the environment is not read. */
bool mg_shard_spec_ok(const char *spec);

/* Resolve spec into *out, reading "auto"'s variables with env (getenv's
 * shape). A missing or inconsistent environment is MG_E_USAGE, with a line
 * saying which variable. */
enum mg_code mg_shard_resolve(const char *spec, const char *(*env)(const char *name),
                              struct mg_shard *out, struct mg_error *err);

uint64_t mg_shard_hash(const char *name);

/* Is account `name` in shard s? Always true when s->count is 0. */
bool mg_shard_has(const struct mg_shard *s, const char *name);

#endif
