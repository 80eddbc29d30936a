#!/usr/bin/env bash
# Tools the deployment tests and the HSM tests run for real (they fail, never skip, without them):
#   promtool  (Debian package prometheus)  checks the Prometheus config, runs rule unit tests
#   prometheus (Debian package prometheus) the real server of tests/integration/test_prometheus_scrape.py
#   stunnel   (Debian package stunnel4)    the TLS proxy of tests/integration/test_tls.py
#   chromium  (Debian package chromium)    the browser Playwright drives in tests/integration/test_inbox_browser.py
#   softhsm2-util (Debian package softhsm2) makes the PKCS#11 tokens of tests/unit/test_hsm.py
#                                          (the package also brings /usr/lib/softhsm/libsofthsm2.so)
# Installs what is missing with apt-get (needs root, as on CI); otherwise says what to install.
set -euo pipefail
declare -A package=([promtool]=prometheus [prometheus]=prometheus [stunnel4]=stunnel4 [chromium]=chromium [softhsm2-util]=softhsm2)
missing=()
for tool in "${!package[@]}"; do
  command -v "$tool" >/dev/null || missing+=("${package[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "missing tools; install the Debian packages: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: only the binaries; installing prometheus starts no server here
apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
for tool in "${!package[@]}"; do
  command -v "$tool" >/dev/null || { echo "$tool still missing after install" >&2; exit 1; }
done
