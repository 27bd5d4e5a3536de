#!/usr/bin/env bash
# Debian packages some tests drive as real programs; installed when missing (CI runs as root on
# a fresh machine). Idempotent and quiet: a machine that has them does nothing here.
set -euo pipefail
need=()
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || need+=(faketime)  # clock skew tests
command -v chromium >/dev/null || need+=(chromium)  # the dashboard's browser tests (Playwright)
command -v promtool >/dev/null || need+=(prometheus)  # promtool: deploy/prometheus checks
command -v wrk >/dev/null || need+=(wrk)  # the serving benchmarks' load generator, its test
command -v systemd-analyze >/dev/null || need+=(systemd)  # deploy/systemd unit checks
command -v nginx >/dev/null || need+=(nginx)  # load balancer in front of cloud replicas
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "tests need Debian packages: ${need[*]} (run as root, or apt-get install them)" >&2
  exit 0
fi
echo "installing Debian packages for the tests: ${need[*]}"
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
