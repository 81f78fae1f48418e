#!/bin/sh
# System packages the test suite drives for real: headless Chromium and its WebDriver (the
# console's browser test), the Prometheus server with promtool (deploy/ rules and scraping), and
# Redis (the rate-limiting plugin's shared counters).
# Installs only what is missing, so a machine that has them never touches apt.
set -eu
missing=""
need() { # need PACKAGE FILE: install PACKAGE when FILE is absent
  [ -x "$2" ] || missing="$missing $1"
}
need chromium /usr/bin/chromium
need chromium-driver /usr/bin/chromedriver
need prometheus /usr/bin/prometheus
need redis-server /usr/bin/redis-server  # Kong rate-limiting policy redis (tests/e2e/test_kong_e2e.py)
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing system packages:$missing — install them as root: apt-get install -y$missing" >&2
  exit 1
fi
echo "installing system packages:$missing"
export DEBIAN_FRONTEND=noninteractive
# Another apt run (a second checkout installing at the same time) holds the lock: wait for it.
apt-get -o DPkg::Lock::Timeout=600 update -q
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends $missing
