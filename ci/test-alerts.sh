#!/usr/bin/env bash
# The Prometheus alerting rules shipped with the packages
# (ci/packaging/alerts/jobcomp-kafka.rules.yml): syntax (promtool check rules)
# and behaviour on series shaped like the plugin's during an outage
# (promtool test rules, jobcomp-kafka.rules.test.yml). A second or two.
set -euo pipefail
cd "$(dirname "$0")/packaging/alerts"
../../install-promtool.sh
promtool check rules jobcomp-kafka.rules.yml
promtool test rules jobcomp-kafka.rules.test.yml
