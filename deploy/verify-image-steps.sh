#!/usr/bin/env bash
# Runs the Dockerfile's build and run steps in a clean virtual environment, since no
# Docker engine runs in CI: install the package as the build stage does, lay out
# /etc/riskwatch/rules and the state volume as the runtime stage does (under a temporary
# root), and check that the entrypoint starts, validates the rules and serves /healthz
# on all interfaces, as the HEALTHCHECK asks it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT

# build stage: RUN python -m venv /opt/riskwatch && pip install .
python3 -m venv "$root/opt/riskwatch"
"$root/opt/riskwatch/bin/pip" install --quiet --no-cache-dir "$repo" 2>&1 | grep -v '^WARNING: Location' || true
# runtime stage: COPY rules /etc/riskwatch/rules; the state volume; the ENV lines
mkdir -p "$root/etc/riskwatch" "$root/var/lib/riskwatch"
cp -r "$repo/rules" "$root/etc/riskwatch/rules"
export PATH="$root/opt/riskwatch/bin:$PATH"
export RISKWATCH_RULES="$root/etc/riskwatch/rules"
export RISKWATCH_STATE="sqlite:///$root/var/lib/riskwatch/state.db"
export RISKWATCH_LOG_FORMAT=json
port=$((20000 + RANDOM % 20000))
export RISKWATCH_HTTP="0.0.0.0:$port"

# ENTRYPOINT ["riskwatch"]: the console script is there and works
test -x "$root/opt/riskwatch/bin/riskwatch"
riskwatch --version
riskwatch rules validate "$RISKWATCH_RULES"

# a simulated Tread.fi for CMD ["run"] to watch
"$root/opt/riskwatch/bin/python" -c "
import sys, time
from riskwatch import demo
_, server = demo.serve()
print(server.url, flush=True)
time.sleep(120)
" > "$root/api-url" &
pids+=($!)
for _ in $(seq 1 50); do [ -s "$root/api-url" ] && break; sleep 0.1; done
export RISKWATCH_TREAD_URL="$(head -n 1 "$root/api-url")"
export RISKWATCH_TREAD_TOKEN=demo-token
export RISKWATCH_POLL_INTERVAL=1s

# CMD ["run"], then the HEALTHCHECK command
riskwatch run > "$root/run.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  if python3 -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=4).status == 200 else 1)" 2>/dev/null; then
    kill -TERM "${pids[-1]}"
    wait "${pids[-1]}"  # SIGTERM: a clean stop, exit 0
    echo "image steps verified: installed, rules valid, /healthz 200 on 0.0.0.0:$port, clean stop on SIGTERM"
    exit 0
  fi
  sleep 0.2
done
echo "the daemon did not answer /healthz; its log:" >&2
cat "$root/run.log" >&2
exit 1
