#!/usr/bin/env bash
# Runs the Dockerfile's build and run steps in a clean virtual environment, since no
# Docker engine runs in CI: install the dependencies from pyproject.toml alone, then the
# package without them, as the build stage does; lay out /etc/riskwatch/rules, the
# healthcheck and the state volume (the working directory) as the runtime stage does,
# under a temporary root; and check that the entrypoint starts, validates the rules,
# keeps its SQLite state in the working directory, and answers the HEALTHCHECK command
# on the address RISKWATCH_HTTP names.
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

quiet() { grep -v '^WARNING: Location' || true; }
# nothing from this shell's environment: only what the image sets
for name in $(env | grep -o '^RISKWATCH_[A-Z_]*' || true); do unset "$name"; done

# build stage: the venv; the dependencies from pyproject.toml alone; then riskwatch itself
python3 -m venv "$root/opt/riskwatch"
(cd "$repo" && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))") > "$root/requirements.txt"
"$root/opt/riskwatch/bin/pip" install --quiet --no-cache-dir -r "$root/requirements.txt" 2>&1 | quiet
"$root/opt/riskwatch/bin/pip" install --quiet --no-cache-dir --no-deps "$repo" 2>&1 | quiet
# runtime stage: COPY rules /etc/riskwatch/rules; the healthcheck; the ENV lines; the
# WORKDIR that is the state volume
mkdir -p "$root/etc/riskwatch" "$root/var/lib/riskwatch"
cp -r "$repo/rules" "$root/etc/riskwatch/rules"
cp "$repo/deploy/healthcheck.py" "$root/opt/riskwatch/healthcheck.py"
export PATH="$root/opt/riskwatch/bin:$PATH"
export RISKWATCH_RULES="$root/etc/riskwatch/rules"
port=$((20000 + RANDOM % 20000))
export RISKWATCH_HTTP="0.0.0.0:$port"
mkdir -p "$root/run/secrets"  # mounted secrets: none here
export RISKWATCH_SECRETS_DIR="$root/run/secrets"
cd "$root/var/lib/riskwatch"

# ENTRYPOINT ["riskwatch"]: the console script is there and works
test -x "$root/opt/riskwatch/bin/riskwatch"
riskwatch --version
riskwatch rules validate "$RISKWATCH_RULES"

# a simulated Tread.fi for CMD ["run"] to watch
"$root/opt/riskwatch/bin/python" -c "
import sys, time
from riskwatch.demo import simulation
_, server = simulation.serve()
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
  if python "$root/opt/riskwatch/healthcheck.py" 2>/dev/null; then
    kill -TERM "${pids[-1]}"
    wait "${pids[-1]}"  # SIGTERM: a clean stop, exit 0
    test -s "$root/var/lib/riskwatch/riskwatch-state.db"  # the state landed in the volume
    echo "image steps verified: installed, rules valid, healthcheck 200 on 0.0.0.0:$port," \
      "state in the working directory, clean stop on SIGTERM"
    exit 0
  fi
  sleep 0.2
done
echo "the daemon did not answer /healthz; its log:" >&2
cat "$root/run.log" >&2
exit 1
