/* shard.c - see include/mailgrab/shard.h */
#include "mailgrab/shard.h"

#include <string.h>

/* A decimal number from min to max, the whole of s[0..len). */
static bool number(const char *s, size_t len, unsigned long min, unsigned long max,
                   unsigned long *out)
{
    if (len == 0 || len > 12)
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* "I/N" or "auto" / "auto/N" into index (0 for auto) and count (0 when
 * auto gives none). */
static bool parse(const char *spec, unsigned long *index, unsigned long *count)
{
    const char *slash = strchr(spec, '/');
    size_t head = slash ? (size_t)(slash - spec) : strlen(spec);
    *index = 0;
    *count = 0;
    if (slash != NULL && !number(slash + 1, strlen(slash + 1), 1, MG_SHARD_MAX, count))
        return false;
    if (head == 4 && strncmp(spec, "auto", 4) == 0)
        return true;
    return slash != NULL && number(spec, head, 1, *count, index);
}

bool mg_shard_spec_ok(const char *spec)
{
    unsigned long i, n;
    return parse(spec, &i, &n);
}

static bool env_number(const char *(*env)(const char *), const char *name, bool need,
                       unsigned long dflt, unsigned long *out, struct mg_error *err)
{
    const char *v = env(name);
    if (v == NULL || v[0] == '\0') {
        if (need) {
            mg_error_set(err, MG_E_USAGE, "--shard auto: %s is not set", name);
            return false;
        }
        *out = dflt;
        return true;
    }
    if (!number(v, strlen(v), 0, 100000000ul, out)) {
        mg_error_set(err, MG_E_USAGE, "--shard auto: %s must be a number, not '%.40s'", name, v);
        return false;
    }
    return true;
}

enum mg_code mg_shard_resolve(const char *spec, const char *(*env)(const char *name),
                              struct mg_shard *out, struct mg_error *err)
{
    unsigned long index, count;
    out->index = out->count = 0;
    if (!parse(spec, &index, &count))
        return mg_error_set(err, MG_E_USAGE,
                            "--shard must be I/N (1 <= I <= N <= %d), auto or auto/N, not '%s'",
                            MG_SHARD_MAX, spec);
    if (index == 0) { /* auto */
        const char *slurm = env("SLURM_ARRAY_TASK_ID");
        if (slurm != NULL && slurm[0] != '\0') {
            unsigned long id, min, step, n;
            if (!env_number(env, "SLURM_ARRAY_TASK_ID", true, 0, &id, err) ||
                !env_number(env, "SLURM_ARRAY_TASK_MIN", true, 0, &min, err) ||
                !env_number(env, "SLURM_ARRAY_TASK_STEP", false, 1, &step, err) ||
                !env_number(env, "SLURM_ARRAY_TASK_COUNT", true, 0, &n, err))
                return err->code;
            if (step == 0 || id < min || (id - min) % step != 0 || n == 0 || n > MG_SHARD_MAX ||
                (id - min) / step >= n)
                return mg_error_set(err, MG_E_USAGE,
                                    "--shard auto: task %lu is not one of the %lu tasks of an "
                                    "array from %lu by %lu",
                                    id, n, min, step);
            if (count != 0 && count != n)
                return mg_error_set(err, MG_E_USAGE,
                                    "--shard auto/%lu, but the Slurm array has %lu tasks", count,
                                    n);
            index = (id - min) / step + 1;
            count = n;
        } else {
            const char *k8s = env("JOB_COMPLETION_INDEX");
            if (k8s == NULL || k8s[0] == '\0')
                return mg_error_set(err, MG_E_USAGE,
                                    "--shard auto: neither SLURM_ARRAY_TASK_ID nor "
                                    "JOB_COMPLETION_INDEX is set; give --shard I/N");
            if (count == 0)
                return mg_error_set(err, MG_E_USAGE,
                                    "--shard auto in an Indexed Job needs the number of "
                                    "completions: --shard auto/N");
            unsigned long k;
            if (!env_number(env, "JOB_COMPLETION_INDEX", true, 0, &k, err))
                return err->code;
            if (k >= count)
                return mg_error_set(err, MG_E_USAGE,
                                    "--shard auto/%lu: JOB_COMPLETION_INDEX %lu is not below %lu",
                                    count, k, count);
            index = k + 1;
        }
    }
    out->index = (unsigned)index;
    out->count = (unsigned)count;
    return MG_OK;
}

uint64_t mg_shard_hash(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    return h;
}

bool mg_shard_has(const struct mg_shard *s, const char *name)
{
    return s->count == 0 || mg_shard_hash(name) % s->count + 1 == s->index;
}
