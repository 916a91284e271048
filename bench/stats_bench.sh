#!/bin/sh
# stats_bench.sh [MESSAGES] - time `mailgrab stats` (--jobs 1 and 2) against a
# straightforward Python stdlib equivalent on a generated corpus.
# MAILGRAB_BUILD selects the build directory (default: build/).
set -eu
n=${1:-50000}
case $n in *[!0-9]* | '') echo "usage: $0 [MESSAGES]" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
mailgrab=${MAILGRAB_BUILD:-$root/build}/src/mailgrab
[ -x "$mailgrab" ] || { echo "build mailgrab first (ninja -C build)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/mailgrab-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

echo "generating $n messages..."
python3 - "$root/tests/integration" "$work/corpus" "$n" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import test_stats
test_stats.generate(sys.argv[2], int(sys.argv[3]), seed=7)
PY
bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"]["bytes"])' \
    "$work/corpus/expected.json")

run() {
    label=$1
    shift
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    python3 -c 'import sys
label, n, b, s, e = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
t = e - s
print("%-28s %8.2f s %10.0f msgs/s %8.1f MB/s" % (label, t, n / t, b / t / 1e6))' \
        "$label" "$n" "$bytes" "$start" "$end"
}

echo "corpus: $n messages, $bytes bytes"
run "mailgrab stats --jobs 1" "$mailgrab" stats "$work/corpus" --tz UTC --csv - --jobs 1
run "mailgrab stats --jobs 2" "$mailgrab" stats "$work/corpus" --tz UTC --csv - --jobs 2
run "python3 email+Counter" python3 "$root/bench/py_stats.py" "$work/corpus" \
    "$root/config/stopwords.txt"
