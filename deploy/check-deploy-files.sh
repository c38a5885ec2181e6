#!/usr/bin/env bash
# Checks the deploy files with the real tools, as CI runs them (.ci/run installs them):
#   hadolint                      the Dockerfile
#   kubectl kustomize             deploy/kubernetes builds; kubernetes-validate --strict
#                                 checks every rendered resource against the schemas
#   docker-compose config         deploy/docker-compose.yml (Compose v1 too), and which
#                                 services each profile starts
#   systemd-analyze verify        the unit, installed by deploy/systemd/install.sh under
#                                 a temporary root; its Documentation= file is there
#   promtool                      deploy/prometheus/alerts.yaml and its unit tests
# Any complaint from any of them fails the check.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The systemd installation takes a few seconds of pip; start it first.
DESTDIR="$work/root" bash deploy/systemd/install.sh > "$work/install.log" 2>&1 &
install_pid=$!

echo "== hadolint Dockerfile"
hadolint --failure-threshold info Dockerfile

echo "== kubectl kustomize deploy/kubernetes | kubernetes-validate --strict"
cmp rules/default.yaml deploy/kubernetes/rules/default.yaml \
  || { echo "deploy/kubernetes/rules/default.yaml differs from rules/default.yaml:" \
            "cp rules/default.yaml deploy/kubernetes/rules/" >&2; exit 1; }
kubectl kustomize deploy/kubernetes > "$work/kubernetes.yaml"
kubernetes-validate --strict --quiet "$work/kubernetes.yaml"
grep '^kind:' "$work/kubernetes.yaml" | tr '\n' ' '; echo

echo "== docker-compose config (profiles single and replicas)"
for profile in single replicas; do
  docker-compose --project-directory deploy -f deploy/docker-compose.yml -p riskwatch \
    --profile "$profile" config > "$work/compose-$profile.yaml"
done
python3 - "$work/compose-single.yaml" "$work/compose-replicas.yaml" <<'EOF'
"""What each profile starts (Compose v1's config does not filter by profile): a service
starts when it has no profile or names the one given."""
import sys
from pathlib import Path

import yaml

expected = {"single": {"riskwatch"}, "replicas": {"postgres", "riskwatch-a", "riskwatch-b"}}
for path, profile in zip(sys.argv[1:], ("single", "replicas"), strict=True):
    services = yaml.safe_load(Path(path).read_text())["services"]
    started = {name for name, service in services.items()
               if not service.get("profiles") or profile in service["profiles"]}
    if started != expected[profile]:
        sys.exit(f"--profile {profile} starts {sorted(started)}, not {sorted(expected[profile])}")
    for name in started:
        for volume in services[name].get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("/") and not Path(source).exists():
                sys.exit(f"{name} mounts {source}, which is not shipped")
        secrets = {s["source"] if isinstance(s, dict) else s
                   for s in services[name].get("secrets", [])}
        if name.startswith("riskwatch-") and "RISKWATCH_STATE" not in secrets:
            sys.exit(f"replica {name} has no RISKWATCH_STATE secret")
    print(f"--profile {profile}: {', '.join(sorted(started))}")
EOF

echo "== promtool check rules / test rules deploy/prometheus"
promtool check rules deploy/prometheus/alerts.yaml
(cd deploy/prometheus && promtool test rules alerts.test.yaml)

echo "== systemd-analyze verify deploy/systemd/riskwatch.service (installed)"
if ! wait "$install_pid"; then
  cat "$work/install.log" >&2
  exit 1
fi
root="$work/root"
# what the unit refers to outside the installation: kill(1) and systemd's own units
mkdir -p "$root/usr/bin" "$root/usr/lib/systemd"
ln -sfn usr/bin "$root/bin"
cp /usr/bin/kill "$root/usr/bin/kill"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
systemd-analyze verify --root="$root" /etc/systemd/system/riskwatch.service \
  > "$work/verify.log" 2>&1 || true
if [ -s "$work/verify.log" ]; then
  cat "$work/verify.log" >&2
  exit 1
fi
for doc in $(sed -n 's|^Documentation=||p' deploy/systemd/riskwatch.service); do
  case "$doc" in
    file://*) test -f "$root${doc#file://}" || { echo "Documentation=$doc is not installed" >&2; exit 1; } ;;
    man:*|http://*|https://*) ;;
    *) echo "Documentation=$doc: not a URL systemd shows" >&2; exit 1 ;;
  esac
done
grep -q '^RestartPreventExitStatus=2$' deploy/systemd/riskwatch.service
echo "unit verified; Documentation= installed; RestartPreventExitStatus=2"

echo "deploy files checked: hadolint, kustomize + kubernetes-validate, docker-compose config" \
  "(2 profiles), promtool, systemd-analyze verify"
