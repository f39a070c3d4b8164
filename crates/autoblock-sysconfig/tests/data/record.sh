#!/bin/sh
# Records the iptables-save fixtures of this directory from the real tools.
# Runs everything in a fresh network namespace, so the machine's own
# firewall is never touched:
#
#   unshare -n sh crates/autoblock-sysconfig/tests/data/record.sh OUTDIR
#
# Needs root and the iptables package (iptables-nft 1.8.x).
set -eu
out=${1:?usage: record.sh OUTDIR}
ipt=iptables-nft
ip6t=ip6tables-nft

ip link set lo up

# filter: custom chains, conntrack, comments that need quoting, LOG, REJECT
$ipt -N SSH-IN
$ipt -N LOGDROP
$ipt -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
$ipt -A INPUT -i lo -j ACCEPT
$ipt -A INPUT -p icmp -j ACCEPT
$ipt -A INPUT -p tcp -m tcp --dport 22 -j SSH-IN
$ipt -A INPUT -m state --state NEW -m tcp -p tcp -s 10.32.1.0/24 --dport 3306 -j ACCEPT
$ipt -A INPUT -p udp -m multiport --dports 53,123 -m comment --comment "dns and ntp" -j ACCEPT
$ipt -A INPUT -j LOGDROP
$ipt -A SSH-IN -s 192.0.2.0/24 -m comment --comment "office \"north\" 'wing'" -j ACCEPT
$ipt -A SSH-IN -m limit --limit 3/min --limit-burst 5 -j ACCEPT
$ipt -A SSH-IN -j REJECT --reject-with tcp-reset -p tcp
$ipt -A LOGDROP -j LOG --log-prefix "dropped: " --log-level 6
$ipt -A LOGDROP -j DROP
$ipt -A FORWARD -j REJECT --reject-with icmp-host-prohibited
$ipt -A OUTPUT -o lo -c 12 3456 -j ACCEPT

# nat, mangle, raw
$ipt -t nat -N PORTFWD
$ipt -t nat -A PREROUTING -p tcp -m tcp --dport 8080 -j PORTFWD
$ipt -t nat -A PORTFWD -p tcp -j DNAT --to-destination 192.0.2.10:80
$ipt -t nat -A POSTROUTING -s 10.0.0.0/8 -o eth0 -j MASQUERADE
$ipt -t mangle -A PREROUTING -p tcp -m tcp --dport 443 -j MARK --set-xmark 0x1/0xffffffff
$ipt -t mangle -A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu
$ipt -t raw -A PREROUTING -p udp -m udp --dport 5060 -j CT --notrack
$ipt -t raw -A OUTPUT -o lo -j ACCEPT

# Some traffic on lo, so that counters are not all zero.
for i in 1 2 3; do python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b\"x\"*100, (\"127.0.0.1\", 9))"; done

iptables-nft-save -c >"$out/recorded-v4-counters.rules"
iptables-nft-save >"$out/recorded-v4.rules"

$ip6t -N INPUT-AUTO
$ip6t -A INPUT -j INPUT-AUTO
$ip6t -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
$ip6t -A INPUT -p ipv6-icmp -j ACCEPT
$ip6t -A INPUT -d fe80::/64 -p udp -m udp --dport 546 -m state --state NEW -j ACCEPT
$ip6t -A INPUT -j REJECT --reject-with icmp6-adm-prohibited
$ip6t -A INPUT-AUTO -s 2001:db8::/48 -m comment --comment "expires 2030-01-01T00:00:00Z" -j DROP
$ip6t -A INPUT-AUTO -s 2001:db8:1::9 -j REJECT
$ip6t -A INPUT-AUTO -s 2001:db8:2::/64 -j LOG --log-prefix "autoblock: "
$ip6t -t mangle -A POSTROUTING -p ipv6-icmp -j ACCEPT
ip6tables-nft-save -c >"$out/recorded-v6-counters.rules"
