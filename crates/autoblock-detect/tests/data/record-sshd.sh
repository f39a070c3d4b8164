#!/bin/bash
# Records what the distribution's own sshd logs for each kind of failure.
#
# Runs as root on a scratch machine. Everything happens inside two network
# namespaces joined by a veth pair (server 10.77.0.1 / fd00:77::1, client
# 10.77.0.2 / fd00:77::2) and a private mount namespace whose /dev/log is a
# small datagram recorder, so nothing reaches the machine's own network or
# syslog. Scratch users abt_* are created and removed again.
#
# Usage: record-sshd.sh OUTDIR
# Writes OUTDIR/syslog.raw (the datagrams sshd and PAM sent to /dev/log, one
# per line) and OUTDIR/stderr.log (the same session logged with `sshd -e`).
set -euo pipefail
OUT=$(realpath "${1:?usage: record-sshd.sh OUTDIR}")
W=$(mktemp -d /tmp/abt-rec.XXXXXX)
SRV=abt-srv CLI=abt-cli
mkdir -p "$OUT"

cleanup() {
    set +e
    [ -f "$W/sshd.pid" ] && kill "$(cat "$W/sshd.pid")" 2>/dev/null
    [ -f "$W/rec.pid" ] && kill "$(cat "$W/rec.pid")" 2>/dev/null
    ip netns del $SRV 2>/dev/null; ip netns del $CLI 2>/dev/null
    for u in abt_alice abt_bob abt_carol abt_denied abt_nogroup; do userdel -r $u 2>/dev/null; done
    groupdel abtgrp 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT

# Network: two namespaces, one veth pair, no route anywhere else.
ip netns add $SRV; ip netns add $CLI
ip link add abt-s type veth peer name abt-c
ip link set abt-s netns $SRV; ip link set abt-c netns $CLI
ip -n $SRV addr add 10.77.0.1/24 dev abt-s; ip -n $CLI addr add 10.77.0.2/24 dev abt-c
ip -n $SRV addr add fd00:77::1/64 dev abt-s nodad; ip -n $CLI addr add fd00:77::2/64 dev abt-c nodad
for n in $SRV $CLI; do ip -n $n link set lo up; done
ip -n $SRV link set abt-s up; ip -n $CLI link set abt-c up

# Scratch users: two valid, one not in AllowUsers, one in DenyUsers, one outside AllowGroups.
groupadd abtgrp
for u in abt_alice abt_bob abt_carol abt_denied abt_nogroup; do
    useradd -m -s /bin/sh $u; echo "$u:pw-$u-ok" | chpasswd
done
usermod -aG abtgrp abt_alice; usermod -aG abtgrp abt_bob; usermod -aG abtgrp abt_denied
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$W/host_ed25519"
for i in 1 2 3 4; do ssh-keygen -q -t ed25519 -N '' -f "$W/client$i"; done

cat > "$W/sshd_config" <<CONF
Port 22
HostKey $W/host_ed25519
PidFile $W/sshd.pid
UsePAM yes
PasswordAuthentication yes
KbdInteractiveAuthentication yes
PermitRootLogin no
MaxAuthTries 4
LogLevel INFO
SyslogFacility AUTH
AllowUsers abt_alice abt_bob abt_denied abt_nogroup root
DenyUsers abt_denied
AllowGroups abtgrp root
CONF

# The recorder: a datagram socket on /dev/log in a private mount namespace.
cat > "$W/rec.py" <<'PY'
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
os.chmod("/dev/log", 0o666)
with open(sys.argv[1], "ab", buffering=0) as f:
    while True:
        d = s.recv(65536)
        f.write(d.rstrip(b"\0").rstrip(b"\n") + b"\n")
PY

# Client helpers. askpass answers the prompts from a list, one per prompt.
cat > "$W/askpass" <<'SH'
#!/bin/sh
n=$(cat "$ABT_ASKPASS_STATE" 2>/dev/null || echo 0)
echo $((n + 1)) > "$ABT_ASKPASS_STATE"
line=$(sed -n "$((n + 1))p" "$ABT_ASKPASS_LIST")
[ -n "$line" ] || exit 1
echo "$line"
SH
chmod +x "$W/askpass"
SSHOPTS=(-F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=no -o ConnectTimeout=5 -o IdentitiesOnly=yes -o IdentityFile=/dev/null)
# try HOST USER METHOD PASSWORD... : one connection that answers each prompt in turn.
try() {
    local host=$1 user=$2 method=$3; shift 3
    printf '%s\n' "$@" > "$W/pwlist"; rm -f "$W/pwstate"
    ABT_ASKPASS_LIST="$W/pwlist" ABT_ASKPASS_STATE="$W/pwstate" SSH_ASKPASS="$W/askpass" \
    SSH_ASKPASS_REQUIRE=force DISPLAY=none setsid -w \
    ip netns exec $CLI ssh "${SSHOPTS[@]}" -o PreferredAuthentications=$method \
        -o NumberOfPasswordPrompts=$# -l "$user" "$host" true </dev/null >/dev/null 2>&1 || true
    sleep 0.3
}
nc_cli() { ip netns exec $CLI nc "$@" || true; sleep 0.3; }

scenarios() {
    local A=10.77.0.1 B=fd00:77::1
    try $A abt_alice password wrong1                       # failed password, valid user
    try $A abt_alice password wrong1 wrong2                # two failures, one connection
    try $A nosuchuser password guess1                      # invalid user
    try $A abt_carol password pw-abt_carol-ok              # not listed in AllowUsers
    try $A abt_denied password pw-abt_denied-ok            # listed in DenyUsers
    try $A abt_nogroup password pw-abt_nogroup-ok          # none of the groups in AllowGroups
    try $A root password toor                              # root refused (PermitRootLogin no)
    try $A abt_alice password a b c d e                    # exceeds MaxAuthTries
    try $A nosuchuser2 password a b c d e                  # exceeds MaxAuthTries, invalid user
    try $A abt_alice keyboard-interactive wrong-kbd        # keyboard-interactive via PAM
    try $A nosuchuser3 keyboard-interactive wrong-kbd      # keyboard-interactive, invalid user
    ip netns exec $CLI ssh "${SSHOPTS[@]}" -o BatchMode=yes -o PreferredAuthentications=publickey \
        -i "$W/client1" -i "$W/client2" -i "$W/client3" -i "$W/client4" -o IdentitiesOnly=yes \
        -l abt_alice $A true </dev/null >/dev/null 2>&1 || true; sleep 0.3   # publickey failures
    ip netns exec $CLI ssh "${SSHOPTS[@]}" -o BatchMode=yes -o PreferredAuthentications=publickey \
        -i "$W/client1" -l nosuchuser4 $A true </dev/null >/dev/null 2>&1 || true; sleep 0.3
    try $A abt_bob password wrong-bob pw-abt_bob-ok        # a typo, then success: forgiven
    try $A guess_a password x                              # guessing run from the same address...
    try $A guess_b password y
    try $A abt_bob password pw-abt_bob-ok                  # ...then success as another user
    try $A abt_alice password                              # gives up at the prompt: pre-auth close
    ip netns exec $CLI ssh "${SSHOPTS[@]}" -o KexAlgorithms=diffie-hellman-group1-sha1 $A true </dev/null >/dev/null 2>&1 || true; sleep 0.3
    ip netns exec $CLI ssh "${SSHOPTS[@]}" -o Ciphers=aes128-cbc $A true </dev/null >/dev/null 2>&1 || true; sleep 0.3
    ip netns exec $CLI ssh "${SSHOPTS[@]}" -o HostKeyAlgorithms=ssh-rsa $A true </dev/null >/dev/null 2>&1 || true; sleep 0.3
    printf 'GET / HTTP/1.0\r\n\r\n' | nc_cli -q 2 $A 22 >/dev/null   # banner garbage
    nc_cli -z $A 22                                        # connect and close: scanner
    printf 'SSH-2.0-Scanner_1.0\r\n' | nc_cli -q 2 $A 22 >/dev/null  # banner, then close
    printf '\x16\x03\x01\x00\xa5\x01\x00\x00' | nc_cli -q 2 $A 22 >/dev/null # TLS hello bytes
    try $B abt_alice password wrong6                       # IPv6
    try $B nosuchuser6 password guess6
    try $A 'x from 192.0.2.9 port 1 ssh2' password z       # user names that look like log text
    try $A 'y rhost=192.0.2.8' keyboard-interactive z
    try $A abt_alice password pw-abt_alice-ok              # plain success
}

run_sshd() { # $1: extra args; $2: stderr file
    # shellcheck disable=SC2086
    ip netns exec $SRV /usr/sbin/sshd -D -f "$W/sshd_config" -o ListenAddress=10.77.0.1 \
        -o ListenAddress=[fd00:77::1]:22 $1 2>>"$2" &
    for _ in $(seq 50); do [ -s "$W/sshd.pid" ] && break; sleep 0.1; done
    sleep 0.3
}
stop_sshd() { kill "$(cat "$W/sshd.pid")"; for _ in $(seq 50); do [ -e "$W/sshd.pid" ] || break; sleep 0.1; done; sleep 0.3; rm -f "$W/sshd.pid"; }

export -f try nc_cli scenarios run_sshd stop_sshd
export W SRV CLI
SSHOPTS_S=$(declare -p SSHOPTS); export SSHOPTS_S

: > "$OUT/syslog.raw"; : > "$OUT/stderr.log"
unshare -m --propagation private bash -c '
    set -e
    eval "$SSHOPTS_S"
    mkdir -p "$W/olddev" && mount --bind /dev "$W/olddev"
    mount -t tmpfs -o mode=755 abt-dev /dev
    for f in $(ls -A "$W/olddev"); do
        [ "$f" = log ] && continue
        if [ -d "$W/olddev/$f" ] && [ ! -L "$W/olddev/$f" ]; then mkdir "/dev/$f"; mount --bind "$W/olddev/$f" "/dev/$f"
        elif [ -L "$W/olddev/$f" ]; then cp -a "$W/olddev/$f" /dev/
        else touch "/dev/$f"; mount --bind "$W/olddev/$f" "/dev/$f"; fi
    done
    python3 "$W/rec.py" "'"$OUT"'/syslog.raw" & echo $! > "$W/rec.pid"
    sleep 0.5
    run_sshd "" /dev/null;            scenarios; stop_sshd
    echo "--- sshd -e ---" >> "'"$OUT"'/syslog.raw"
    run_sshd "-e" "'"$OUT"'/stderr.log"; scenarios; stop_sshd
    kill "$(cat "$W/rec.pid")"
'
echo "recorded into $OUT"
