#!/bin/bash
# Builds the debian12 Vagrant box (libvirt provider) from Debian packages
# alone: debootstrap of bookworm from MIRROR, made RHEL-shaped (iptables
# service restoring /etc/sysconfig/iptables, authpriv to /var/log/secure,
# firewalld installed but disabled), crowdsec installed but disabled (for
# the suite's CrowdSec tests), a vagrant user with the key in
# VAGRANT_PUBKEY, and an ext4 disk booted directly with the box's kernel
# and initrd (vagrant-libvirt's kernel/initrd/cmd_line), so no partition
# table, loop device or boot loader is needed.
#
# usage: build.sh WORKDIR OUTBOX   (env: MIRROR, VAGRANT_PUBKEY, TREE_CACHE)
# Called by `cargo xtask vagrant box`, which caches OUTBOX by a hash of
# this directory; it does not register the box itself.
set -euo pipefail

work=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
: "${MIRROR:?MIRROR must name the Debian mirror}"
: "${VAGRANT_PUBKEY:?VAGRANT_PUBKEY must name the public key file}"
root=$work/root
# /proc of the chroot, should an interrupted run have left it mounted.
unmount_proc() { if mountpoint -q "$root/proc"; then umount "$root/proc"; fi; }
unmount_proc 2>/dev/null || true
trap unmount_proc EXIT
rm -rf "$work"
mkdir -p "$work"

packages=$(grep -v '^#' "$here/packages.txt" | grep -v '^$' | paste -sd, -)
apt_packages=$(grep -v '^#' "$here/packages-apt.txt" | grep -v '^$' | paste -sd' ' -)

# packages-apt.txt, installed with apt-get in a chroot of the fresh tree:
# a non-empty online API credentials file first (crowdsec's postinst then
# does not register online), a policy-rc.d refusing every service start
# (removed afterwards), /proc mounted for the maintainer scripts.
install_apt_packages() {
    echo "box: apt-get install $apt_packages (in the chroot, service start-up refused)"
    mkdir -p "$root/etc/crowdsec"
    [ -s "$root/etc/crowdsec/online_api_credentials.yaml" ] ||
        echo '# no online API in the test box' > "$root/etc/crowdsec/online_api_credentials.yaml"
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    printf 'deb %s bookworm main\n' "$MIRROR" > "$root/etc/apt/sources.list"
    [ -c "$root/dev/urandom" ] || mknod -m 666 "$root/dev/urandom" c 1 9
    mount -t proc proc "$root/proc"
    local status=0
    {
        chroot "$root" apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive chroot "$root" \
                apt-get install -y -q --no-install-recommends $apt_packages
    } > "$work/apt.log" 2>&1 || status=$?
    unmount_proc
    rm -f "$root/usr/sbin/policy-rc.d"
    if [ "$status" != 0 ]; then
        tail -30 "$work/apt.log"
        echo "box: apt-get install $apt_packages failed ($status)" >&2
        exit 1
    fi
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/*
}

# The pristine debootstrap tree, packages-apt.txt included, is kept
# (TREE_CACHE, a tar named by a hash of the package lists and the mirror), so
# a change to the configuration below does not pay for debootstrap again.
if [ -n "${TREE_CACHE:-}" ] && [ -f "$TREE_CACHE" ]; then
    echo "box: debootstrap tree from $TREE_CACHE"
    mkdir -p "$root"
    tar -C "$root" -xf "$TREE_CACHE"
else
    echo "box: debootstrap bookworm from $MIRROR"
    debootstrap --variant=minbase --include="$packages" bookworm "$root" "$MIRROR" \
        > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; exit 1; }
    install_apt_packages
    if [ -n "${TREE_CACHE:-}" ]; then
        mkdir -p "$(dirname "$TREE_CACHE")"
        tar -C "$root" -cf "$TREE_CACHE.tmp" . && mv -f "$TREE_CACHE.tmp" "$TREE_CACHE"
    fi
fi

echo "box: configuring the guest"
in_root() { chroot "$root" "$@"; }
echo debian12 > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 debian12\n::1 localhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
echo 'LABEL=root / ext4 rw,errors=remount-ro 0 1' > "$root/etc/fstab"
printf 'deb %s bookworm main\n' "$MIRROR" > "$root/etc/apt/sources.list"
cat > "$root/etc/systemd/network/50-dhcp.network" <<'NET'
[Match]
Name=en* eth*

[Network]
DHCP=yes
NET
in_root systemctl enable systemd-networkd.service
in_root systemctl disable systemd-networkd-wait-online.service || true
in_root systemctl enable serial-getty@ttyS0.service

# ssh: host keys made on first boot, the vagrant user with its key.
rm -f "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system/ssh.service.d"
# (ExecStartPre= first: Debian's `sshd -t` check would fail without keys.)
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
    > "$root/etc/systemd/system/ssh.service.d/host-keys.conf"
echo 'UseDNS no' > "$root/etc/ssh/sshd_config.d/vagrant.conf"
in_root useradd --create-home --shell /bin/bash vagrant
echo 'vagrant:vagrant' | in_root chpasswd
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$root/etc/sudoers.d/vagrant"
chmod 440 "$root/etc/sudoers.d/vagrant"
install -d -m 700 -o 1000 -g 1000 "$root/home/vagrant/.ssh"
install -m 600 -o 1000 -g 1000 "$VAGRANT_PUBKEY" "$root/home/vagrant/.ssh/authorized_keys"

# RHEL-shaped firewall persistence and logging.
install -d "$root/etc/sysconfig" "$root/usr/libexec/iptables"
install -m 755 "$here/files/iptables.init" "$root/usr/libexec/iptables/iptables.init"
ln -sf iptables.init "$root/usr/libexec/iptables/ip6tables.init"
install -m 600 "$here/files/sysconfig-iptables" "$root/etc/sysconfig/iptables"
install -m 600 "$here/files/sysconfig-iptables" "$root/etc/sysconfig/ip6tables"
install -m 644 "$here/files/iptables.service" "$root/etc/systemd/system/iptables.service"
install -m 644 "$here/files/ip6tables.service" "$root/etc/systemd/system/ip6tables.service"
in_root systemctl enable iptables.service ip6tables.service
install -m 644 "$here/files/rsyslog-secure.conf" "$root/etc/rsyslog.d/50-secure.conf"
in_root systemctl disable firewalld.service || true
in_root systemctl disable nftables.service || true
# CrowdSec is there for the suite's tests, which run their own Local API.
in_root systemctl disable crowdsec.service crowdsec-firewall-bouncer.service
in_root update-alternatives --set iptables /usr/sbin/iptables-nft
in_root update-alternatives --set ip6tables /usr/sbin/ip6tables-nft

# A fresh identity on every machine made from the box.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
in_root apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/*.log

echo "box: disk image"
cp -L "$root/vmlinuz" "$work/vmlinuz"
cp -L "$root/initrd.img" "$work/initrd.img"
truncate -s 4G "$work/disk.raw"
mkfs.ext4 -q -F -L root -d "$root" "$work/disk.raw"
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$work/box.img"
rm -f "$work/disk.raw"
rm -rf "$root"

printf '{"provider":"libvirt","format":"qcow2","virtual_size":4}\n' > "$work/metadata.json"
cat > "$work/Vagrantfile" <<'VF'
# debian12 box (autoblock): direct kernel boot of the box's own kernel.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.kernel = File.join(File.dirname(__FILE__), "vmlinuz")
    libvirt.initrd = File.join(File.dirname(__FILE__), "initrd.img")
    libvirt.cmd_line = "root=LABEL=root rw console=ttyS0 net.ifnames=0"
  end
end
VF
echo "box: packing $out"
mkdir -p "$(dirname "$out")"
tar -C "$work" -cf "$out.tmp" metadata.json Vagrantfile box.img vmlinuz initrd.img
mv -f "$out.tmp" "$out"
rm -rf "$work"
