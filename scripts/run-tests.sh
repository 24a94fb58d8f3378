#!/usr/bin/env bash
# Run the Meson test suites and finish with one summary line: "N passed, N failed, N skipped".
# usage: run-tests.sh BUILD_DIR [meson test options...]
set -uo pipefail
build=${1:?usage: run-tests.sh BUILD_DIR [meson test options]}
shift
meson test -C "$build" --print-errorlogs --num-processes 2 "$@"
status=$?
python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, os, sys
if not os.path.exists(sys.argv[1]):
    print("no test ran: the build or the test setup failed (see above)")
    print("0 passed, 1 failed, 0 skipped")
    sys.exit(0)
counts = {"OK": 0, "FAIL": 0, "SKIP": 0, "TIMEOUT": 0, "ERROR": 0, "EXPECTEDFAIL": 0, "UNEXPECTEDPASS": 0}
skipped = []
for line in open(sys.argv[1]):
    t = json.loads(line)
    counts[t["result"]] = counts.get(t["result"], 0) + 1
    if t["result"] == "SKIP":
        reason = next((l for l in t.get("stdout", "").splitlines() if l.startswith("SKIP")), "")
        skipped.append(f'{t["name"]}: {reason}')
for s in skipped:
    print("skipped", s)
failed = counts["FAIL"] + counts["TIMEOUT"] + counts["ERROR"] + counts["UNEXPECTEDPASS"]
print(f'{counts["OK"] + counts["EXPECTEDFAIL"]} passed, {failed} failed, {counts["SKIP"]} skipped')
PY
exit $status
