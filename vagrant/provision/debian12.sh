#!/bin/sh
# Provisioning of the debian12 box: everything is already in the box (it is
# built offline by `cargo xtask vagrant box`), so this only checks that the
# box is RHEL-shaped and prints the versions the suite runs against.
set -eu
fail() { echo "provision: $*" >&2; exit 1; }
systemctl is-enabled iptables.service >/dev/null || fail "iptables.service is not enabled"
systemctl is-enabled firewalld.service >/dev/null 2>&1 && fail "firewalld must be disabled"
[ -f /etc/sysconfig/iptables ] || fail "/etc/sysconfig/iptables is missing"
grep -q '/var/log/secure' /etc/rsyslog.d/*.conf || fail "rsyslog does not write /var/log/secure"
echo "kernel $(uname -r); $(iptables --version); $(nft --version); $(systemctl --version | head -1)"
