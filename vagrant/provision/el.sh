#!/bin/sh
# Provisioning of the AlmaLinux 8/9 machines (public boxes, internet needed):
# RHEL's own iptables service (iptables-services), nftables, firewalld
# installed but disabled, rsyslog (RHEL writes authpriv to /var/log/secure
# by default), SELinux tooling, and a Rust toolchain so the suite is built
# inside the guest against its own glibc. SELinux stays as the box has it
# (enforcing).
set -eu
dnf -y -q install iptables-services iptables-nft nftables firewalld rsyslog strace \
    iproute iputils openssh-clients policycoreutils-python-utils gcc rust cargo \
    tar rsync
systemctl disable --now firewalld.service 2>/dev/null || true
systemctl enable --now rsyslog.service
systemctl enable --now iptables.service ip6tables.service
echo "kernel $(uname -r); $(iptables --version); $(nft --version); SELinux $(getenforce)"
