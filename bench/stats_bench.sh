#!/bin/sh
# stats_bench.sh [MESSAGES] [small|typical] - time `mailgrab stats` (--jobs 1
# and all cores) against a straightforward Python stdlib script doing the
# same job (bench/py_stats.py), on a generated corpus, and print MB/s and
# MB/s per core, by wall time and by CPU time (GNU time, package `time`).
# Both write every output: the long CSV, the per-message table, JSON (and
# mailgrab the HTML report).
#   small:   tests/integration/test_stats.py's corpus (short text messages)
#   typical: the integration corpus (mgtest/corpus.py): MIME, encoded
#            headers, base64 attachments, a few large messages
# MAILGRAB_BUILD selects the build directory (default: build/).
set -eu
n=${1:-50000}
kind=${2:-small}
case $n in *[!0-9]* | '') echo "usage: $0 [MESSAGES] [small|typical]" >&2; exit 2 ;; esac
case $kind in small | typical) ;; *) echo "usage: $0 [MESSAGES] [small|typical]" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
mailgrab=${MAILGRAB_BUILD:-$root/build}/src/mailgrab
[ -x "$mailgrab" ] || { echo "build mailgrab first (ninja -C build)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/mailgrab-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
cores=$(nproc)

echo "generating $n $kind messages..."
python3 - "$root/tests/integration" "$work/corpus" "$n" "$kind" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
if sys.argv[4] == "small":
    import test_stats
    test_stats.generate(sys.argv[2], int(sys.argv[3]), seed=7)
else:
    from mgtest import corpus
    corpus.deliver(sys.argv[2] + "/INBOX", 0, int(sys.argv[3]), seed=7)
PY
bytes=$(du -sb --apparent-size "$work/corpus" | cut -f1)

# Wall time, and CPU time (user + system of the whole process tree, from
# GNU time): MB/s of wall time, per core used, and per CPU second.
run() {
    label=$1
    ncores=$2
    shift 2
    /usr/bin/time -f '%e %U %S' -o "$work/time" "$@" >/dev/null
    python3 -c 'import sys
label, n, b, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t, u, s = (float(x) for x in open(sys.argv[5]).read().split()[-3:])
cpu = max(u + s, 0.01)
print("%-34s %6.2f s %6.2f s cpu %8.0f msgs/s %7.1f MB/s %7.1f MB/s/core %7.1f MB/cpu-s" %
      (label, t, cpu, n / t, b / t / 1e6, b / t / 1e6 / c, b / cpu / 1e6))' \
        "$label" "$n" "$bytes" "$ncores" "$work/time"
}

out=$work/out
mkdir "$out"
echo "corpus: $n messages, $bytes bytes, $cores cores"
run "mailgrab stats --jobs 1 (tables)" 1 "$mailgrab" stats "$work/corpus" --tz UTC --jobs 1
run "mailgrab stats --jobs 1" 1 "$mailgrab" stats "$work/corpus" --tz UTC --jobs 1 \
    --me alice@example.com --csv "$out/long.csv" --messages-csv "$out/rows.csv" \
    --json "$out/stats.json" --html "$out/report.html"
run "mailgrab stats --jobs $cores" "$cores" "$mailgrab" stats "$work/corpus" --tz UTC \
    --jobs "$cores" --me alice@example.com --csv "$out/long.csv" \
    --messages-csv "$out/rows.csv" --json "$out/stats.json" --html "$out/report.html"
run "python3 email+Counter" 1 python3 "$root/bench/py_stats.py" "$work/corpus" \
    "$root/config/stopwords.txt" --me alice@example.com --messages-csv "$out/py-rows.csv" \
    --json "$out/py.json"
