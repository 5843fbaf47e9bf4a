#!/usr/bin/env bash
# The Prometheus alerting rules shipped with the packages
# (ci/packaging/alerts/jobcomp-kafka.rules.yml): syntax (promtool check rules)
# and behaviour on series shaped like the plugin's during an outage
# (promtool test rules, jobcomp-kafka.rules.test.yml); and docs/operating.md's
# prometheus.yml block (its rule_files path replaced by the rules file) passes
# promtool check config. A second or two.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/ci/install-promtool.sh"
alerts=$top/ci/packaging/alerts
promtool check rules "$alerts/jobcomp-kafka.rules.yml"
(cd "$alerts" && promtool test rules jobcomp-kafka.rules.test.yml)

tmp=$(mktemp -d /tmp/jk-alerts.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
awk '/<!-- docs-block: run-by ci\/test-alerts.sh -->/ { want = 1; next }
     want && /^```/ { if (inside) exit; inside = 1; next }
     inside { print }' "$top/docs/operating.md" >"$tmp/prometheus.yml"
grep -q '^rule_files:' "$tmp/prometheus.yml" || { echo "error: no prometheus.yml block in docs/operating.md" >&2; exit 1; }
cp "$alerts/jobcomp-kafka.rules.yml" "$tmp/"
sed -i "s#/etc/prometheus/rules/jobcomp-kafka.rules.yml#$tmp/jobcomp-kafka.rules.yml#" "$tmp/prometheus.yml"
grep -q "$tmp/jobcomp-kafka.rules.yml" "$tmp/prometheus.yml" || { echo "error: the block names another rules path" >&2; exit 1; }
promtool check config "$tmp/prometheus.yml"
