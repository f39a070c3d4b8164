//! The reboot scenarios of the VM stage: state set up before a real reboot
//! of the guest (`systemctl reboot`, checked by a changed
//! `/proc/sys/kernel/random/boot_id`) and verified after it.
//!
//! - .deb install: the package `cargo xtask package` built on the host,
//!   `dpkg -i` in the guest: the version, the units and the conffile are
//!   there, the packaged configuration passes `autoblock config check`, and
//!   the package enabled and started nothing;
//! - chain layout: entries blocked with the sysconfig mirror → reboot →
//!   `iptables.service` restored them, `iptables -L INPUT-AUTO -n -v` shows
//!   them, `autoblock list` reads their expiry, and a packet from a blocked
//!   source (a namespace inside the guest) is dropped while another passes;
//! - set layout: bans with timeouts, autoblock's boot unit
//!   (packaging/autoblock-restore.service) → reboot → restored with their
//!   remaining time;
//! - the daemon from the packaged unit: failed password logins (sshpass)
//!   from the attacker namespace against the guest's sshd, read from
//!   `/var/log/secure` (rsyslog) → banned and dropped → reboot → the daemon
//!   started from its store holds the ban again; then `systemctl restart
//!   iptables`, `nft flush ruleset`, starting and reloading firewalld, each
//!   healed within [`HEAL_BOUND`] (measured in the guest).
//!
//! Every scenario sets up first, one reboot serves them all, then each is
//! checked; the firewall disruptions of the daemon scenario come last, when
//! every other check is done. It deliberately does not retry or relax a
//! check: a failure is a FAIL line with the guest's own output.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use super::lab::Guest;
use super::{Lab, Report, StepResult};
use crate::util::workspace_root;

/// The guest-side end of the veth pair and the two sources in the
/// namespace "attacker": `BLOCKED` is blocked, `OTHER` is not.
const GUEST_ADDR: &str = "10.99.0.1";
const BLOCKED: &str = "10.99.0.2";
const OTHER: &str = "10.99.0.3";
const BLOCKED6: &str = "fd00:99::2";
/// Banned in the set layout.
const SET_BANNED: &str = "10.99.0.4";
/// The sshd brute-forcer of the daemon scenario.
const ATTACKER: &str = "10.99.0.5";
/// The daemon scenario's own nf_tables table: the daemon makes its table
/// hold exactly its store at start-up, so sharing the set scenario's
/// `inet autoblock` would remove that scenario's ban.
const DAEMON_TABLE: &str = "autoblockd";
/// Prefix of a CLI command that must read the kernel even while the
/// daemon scenario's daemon runs (the CLI sends `list` to a running
/// daemon's control socket, and that daemon keeps its own table).
const KERNEL_ONLY: &str = "AUTOBLOCK_CONTROL_SOCKET=/run/autoblock/no-daemon-here.sock";
/// How soon a firewall disruption must be healed.
const HEAL_BOUND: Duration = Duration::from_secs(1);

/// (Re)creates the namespace `attacker` inside the guest, joined to the
/// guest's root namespace by a veth pair, with both source addresses.
fn attacker_setup() -> String {
    format!(
        "set -e; ip netns del attacker 2>/dev/null || true; ip link del vm-veth0 2>/dev/null || true; \
         ip netns add attacker; ip link add vm-veth0 type veth peer name vm-veth1; \
         ip link set vm-veth1 netns attacker; \
         ip addr add {GUEST_ADDR}/24 dev vm-veth0; ip link set vm-veth0 up; \
         ip -n attacker addr add {BLOCKED}/24 dev vm-veth1; \
         ip -n attacker addr add {OTHER}/24 dev vm-veth1; \
         ip -n attacker addr add {SET_BANNED}/24 dev vm-veth1; \
         ip -n attacker addr add {ATTACKER}/24 dev vm-veth1; \
         ip -n attacker link set vm-veth1 up; ip -n attacker link set lo up"
    )
}

/// Whether a ping from `source` in the attacker namespace gets an answer.
fn ping(guest: &Guest, source: &str) -> Result<bool> {
    let out = guest.root_output(&format!(
        "ip netns exec attacker ping -n -c 1 -W 2 -I {source} {GUEST_ADDR} >/dev/null 2>&1"
    ))?;
    Ok(out.status.success())
}

/// Blocked dropped, other answered.
fn packet_check(guest: &Guest, blocked: &str) -> Result<StepResult> {
    guest.root(&attacker_setup())?;
    // The unblocked source first: it proves the path works at all.
    ensure!(
        ping(guest, OTHER)?,
        "a ping from the unblocked {OTHER} got no answer"
    );
    ensure!(
        !ping(guest, blocked)?,
        "a ping from the blocked {blocked} was answered"
    );
    Ok(StepResult::Pass)
}

/// Runs the scenarios, one PASS/FAIL line per step into `report`. `deb` is
/// the .deb built on the host and the host build's `autoblock --version`
/// (`None` on the Alma machines).
pub fn run_all(
    _lab: &Lab,
    guest: &Guest,
    deb: Option<(Result<PathBuf, String>, String)>,
    report: &mut Report,
) {
    // Setup of every scenario before the one reboot. The .deb first: it
    // checks that nothing is enabled yet.
    let t = Instant::now();
    let deb_ok = match deb {
        None => {
            report.step(
                "deb: install from the .deb",
                Ok(StepResult::NotPossible(
                    "only the debian12 machine installs the .deb; installing the RPM on \
                     Alma is not written yet"
                        .to_owned(),
                )),
                Duration::ZERO,
            );
            false
        }
        Some((Err(why), _)) => {
            report.step(
                "deb: install from the .deb",
                Ok(StepResult::Fail(format!(
                    "the host could not build it: {why}"
                ))),
                t.elapsed(),
            );
            false
        }
        Some((Ok(path), version)) => {
            let done = deb_install(guest, &path, &version);
            let ok = matches!(done, Ok(StepResult::Pass));
            report.step(
                "deb: dpkg -i; version, units, conffile, config check, nothing enabled",
                done,
                t.elapsed(),
            );
            ok
        }
    };

    let t = Instant::now();
    let chain_ready = chain_setup(guest);
    let chain_ok = matches!(chain_ready, Ok(StepResult::Pass));
    report.step(
        "chain: block + mirror into /etc/sysconfig",
        chain_ready,
        t.elapsed(),
    );
    if chain_ok {
        let t = Instant::now();
        report.step(
            "chain: blocked source dropped before the reboot",
            packet_check(guest, BLOCKED),
            t.elapsed(),
        );
    }

    let t = Instant::now();
    let set_ready = set_setup(guest);
    let set_ok = matches!(set_ready, Ok(StepResult::Pass));
    report.step(
        "set: bans with timeouts + boot unit",
        set_ready,
        t.elapsed(),
    );

    let mut daemon_ok = false;
    if deb_ok {
        let t = Instant::now();
        let ready = daemon_setup(guest);
        daemon_ok = matches!(ready, Ok(StepResult::Pass));
        report.step(
            "daemon: packaged unit, sshd brute force from a namespace banned",
            ready,
            t.elapsed(),
        );
        if daemon_ok {
            let t = Instant::now();
            report.step(
                "daemon: banned source dropped before the reboot",
                packet_check(guest, ATTACKER),
                t.elapsed(),
            );
        }
    } else {
        report.step(
            "daemon: packaged unit, sshd brute force banned",
            Ok(StepResult::Fail(
                "not run: the .deb it runs from is not installed".to_owned(),
            )),
            Duration::ZERO,
        );
    }

    let t = Instant::now();
    let rebooted = guest.reboot();
    let reboot_ok = rebooted.is_ok();
    report.step(
        "reboot (systemctl reboot, new boot_id)",
        rebooted.map(|_| StepResult::Pass),
        t.elapsed(),
    );
    if !reboot_ok {
        return;
    }

    if chain_ok {
        let t = Instant::now();
        report.step(
            "chain: iptables.service restored INPUT-AUTO",
            chain_restored(guest),
            t.elapsed(),
        );
        let t = Instant::now();
        report.step(
            "chain: autoblock list reads the expiry",
            chain_list(guest),
            t.elapsed(),
        );
        let t = Instant::now();
        report.step(
            "chain: blocked source dropped after the reboot",
            packet_check(guest, BLOCKED),
            t.elapsed(),
        );
    }
    if set_ok {
        let t = Instant::now();
        report.step(
            "set: bans restored with their remaining time",
            set_restored(guest),
            t.elapsed(),
        );
        let t = Instant::now();
        report.step(
            "set: banned source dropped after the reboot",
            packet_check(guest, SET_BANNED),
            t.elapsed(),
        );
    }
    if daemon_ok {
        let t = Instant::now();
        let restored = daemon_restored(guest);
        let restored_ok = matches!(restored, Ok(StepResult::Pass));
        report.step(
            "daemon: started from its store after the reboot, ban in the kernel",
            restored,
            t.elapsed(),
        );
        let t = Instant::now();
        report.step(
            "daemon: banned source dropped after the reboot",
            packet_check(guest, ATTACKER),
            t.elapsed(),
        );
        // Last: these disrupt the whole ruleset.
        if restored_ok {
            for (what, script) in DISRUPTIONS {
                let t = Instant::now();
                report.step(
                    &format!("daemon: healed after `{what}`"),
                    heal_check(guest, script),
                    t.elapsed(),
                );
            }
        }
    }
}

fn chain_setup(guest: &Guest) -> Result<StepResult> {
    guest.root(&format!(
        "set -e; autoblock block {BLOCKED} --timeout 2h --comment vm-reboot; \
         autoblock block {BLOCKED6} --timeout 2h --comment vm-reboot"
    ))?;
    let v4 = guest.root("cat /etc/sysconfig/iptables")?;
    let v6 = guest.root("cat /etc/sysconfig/ip6tables")?;
    ensure!(
        v4.contains(&format!("-A INPUT-AUTO -s {BLOCKED}/32")),
        "/etc/sysconfig/iptables has no rule for {BLOCKED}:\n{v4}"
    );
    ensure!(
        v4.contains("-A INPUT -j INPUT-AUTO"),
        "/etc/sysconfig/iptables has no jump to INPUT-AUTO:\n{v4}"
    );
    ensure!(
        v6.contains(&format!("{BLOCKED6}/128")),
        "/etc/sysconfig/ip6tables has no rule for {BLOCKED6}:\n{v6}"
    );
    Ok(StepResult::Pass)
}

fn chain_restored(guest: &Guest) -> Result<StepResult> {
    let active = guest.root("systemctl is-active iptables.service ip6tables.service")?;
    ensure!(
        active.lines().all(|l| l.trim() == "active"),
        "the iptables services are not active: {active}"
    );
    let listed = guest.root("iptables -L INPUT-AUTO -n -v")?;
    ensure!(
        listed.contains(BLOCKED),
        "`iptables -L INPUT-AUTO -n -v` does not show {BLOCKED}:\n{listed}"
    );
    let listed6 = guest.root("ip6tables -L INPUT-AUTO -n -v")?;
    ensure!(
        listed6.contains(BLOCKED6),
        "`ip6tables -L INPUT-AUTO -n -v` does not show {BLOCKED6}:\n{listed6}"
    );
    Ok(StepResult::Pass)
}

/// `autoblock list --json` shows the blocked entries with a future expiry.
fn chain_list(guest: &Guest) -> Result<StepResult> {
    let out = guest.root(&format!("{KERNEL_ONLY} autoblock list --json"))?;
    for addr in [BLOCKED, BLOCKED6] {
        let entry = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| {
                v["net"]
                    .as_str()
                    .is_some_and(|n| n.split('/').next() == Some(addr))
            });
        let Some(entry) = entry else {
            bail!("`autoblock list --json` has no entry for {addr}:\n{out}");
        };
        expires_in_future(guest, &entry, addr)?;
    }
    Ok(StepResult::Pass)
}

/// The entry's `expires` lies in the future (by the guest's clock) and at
/// most two hours ahead.
fn expires_in_future(guest: &Guest, entry: &serde_json::Value, addr: &str) -> Result<()> {
    let Some(expires) = entry["expires"].as_str() else {
        bail!("the entry for {addr} has no expiry: {entry}");
    };
    let left: i64 = guest
        .root(&format!(
            "echo $(( $(date -d '{expires}' +%s) - $(date +%s) ))"
        ))?
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("cannot compute the time left of {expires}: {e}"))?;
    ensure!(
        left > 0 && left <= 2 * 3600,
        "the entry for {addr} expires at {expires}, {left} s from now (expected 0..7200)"
    );
    Ok(())
}

fn set_setup(guest: &Guest) -> Result<StepResult> {
    let unit =
        std::fs::read_to_string(workspace_root().join("packaging/autoblock-restore.service"))?;
    // The packaged binary and unit when the .deb is installed; otherwise
    // the host-built binary and the unit from the source tree.
    guest.root(&format!(
        "set -e; [ -x /usr/bin/autoblock ] || install -m 755 /usr/local/bin/autoblock /usr/bin/autoblock; \
         if [ ! -f /lib/systemd/system/autoblock-restore.service ]; then \
         cat > /etc/systemd/system/autoblock-restore.service <<'UNIT'\n{unit}\nUNIT\n\
         fi; \
         systemctl daemon-reload; systemctl enable --now autoblock-restore.service; \
         autoblock --layout set --no-mirror block {SET_BANNED} --timeout 2h"
    ))?;
    Ok(StepResult::Pass)
}

fn set_restored(guest: &Guest) -> Result<StepResult> {
    let out = guest.root(&format!(
        "{KERNEL_ONLY} autoblock --layout set --no-mirror list --json"
    ))?;
    let entry = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["net"]
                .as_str()
                .is_some_and(|n| n.split('/').next() == Some(SET_BANNED))
        });
    let Some(entry) = entry else {
        bail!("the set layout has no entry for {SET_BANNED} after the reboot:\n{out}");
    };
    expires_in_future(guest, &entry, SET_BANNED)?;
    Ok(StepResult::Pass)
}

/// The units the .deb installs.
const DEB_UNITS: [&str; 3] = [
    "autoblock.service",
    "autoblock-restore.service",
    "autoblock-chain-restore.service",
];

/// Copies the .deb in, installs it with `dpkg -i` and checks what it put
/// there and that it enabled and started nothing.
fn deb_install(guest: &Guest, deb: &std::path::Path, host_version: &str) -> Result<StepResult> {
    let name = deb
        .file_name()
        .context("the .deb path has no file name")?
        .to_string_lossy()
        .into_owned();
    guest.copy_in(&[deb], "/tmp")?;
    // One script (each ssh round trip costs seconds in an emulated guest);
    // `key: value` lines, checked below.
    let out = guest
        .root(&format!(
            "set -e; dpkg -i '/tmp/{name}' >/tmp/dpkg.out 2>&1 || {{ cat /tmp/dpkg.out; exit 1; }}; \
             rm -f '/tmp/{name}'; \
             echo \"version: $(/usr/bin/autoblock --version)\"; \
             for u in {units}; do \
               echo \"unit: $u $(test -f /lib/systemd/system/$u && echo present || echo missing) \
                 $(systemctl is-enabled $u 2>&1 || true) $(systemctl is-active $u 2>&1 || true)\"; \
             done; \
             echo \"conffiles: $(dpkg-query -W -f='${{Conffiles}}' autoblock | tr '\\n' ' ')\"; \
             if out=$(autoblock config check /etc/autoblock/autoblock.toml 2>&1); \
             then echo \"check: ok $out\"; else echo \"check: failed $out\"; fi",
            units = DEB_UNITS.join(" ")
        ))
        .context("dpkg -i")?;
    let field = |key: &str| -> Vec<&str> {
        out.lines()
            .filter_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .collect()
    };
    let version = field("version:").join("");
    ensure!(
        version == host_version.trim(),
        "the packaged `autoblock --version` says {version:?}, the host's build {:?}",
        host_version.trim()
    );
    let units = field("unit:");
    ensure!(
        units.len() == DEB_UNITS.len(),
        "no state for every unit:\n{out}"
    );
    for unit in units {
        let words: Vec<&str> = unit.split_whitespace().collect();
        ensure!(
            words.get(1) == Some(&"present"),
            "/lib/systemd/system/{} is missing",
            words[0]
        );
        ensure!(
            words.get(2) == Some(&"disabled"),
            "the package left {} {:?} (it must enable nothing)",
            words[0],
            words.get(2)
        );
        ensure!(
            words.get(3) == Some(&"inactive"),
            "{} is {:?} after dpkg -i (the package must start nothing)",
            words[0],
            words.get(3)
        );
    }
    let conffiles = field("conffiles:").join(" ");
    ensure!(
        conffiles.contains("/etc/autoblock/autoblock.toml"),
        "/etc/autoblock/autoblock.toml is not a conffile of the package: {conffiles:?}"
    );
    let check = field("check:").join(" ");
    ensure!(
        check.starts_with("ok"),
        "`autoblock config check /etc/autoblock/autoblock.toml` {check}"
    );
    Ok(StepResult::Pass)
}

/// A guest shell test for "ADDR is an element of the daemon's table".
fn in_daemon_table(addr: &str) -> String {
    let re = addr.replace('.', "\\.");
    format!("nft list table inet {DAEMON_TABLE} 2>/dev/null | grep -Eq '(^|[^0-9.]){re}([^0-9]|$)'")
}

/// The packaged configuration (its sshd jail reads `/var/log/secure`) in
/// its own table, the packaged unit enabled and started, then failed
/// password logins from the attacker namespace until the daemon bans it.
fn daemon_setup(guest: &Guest) -> Result<StepResult> {
    guest.root(&attacker_setup())?;
    guest
        .root(&format!(
            "set -e; cfg=/etc/autoblock/autoblock.toml; \
         grep -q '^layout = \"set\"' $cfg; \
         sed -i 's/^layout = \"set\"$/layout = \"set\"\\ntable = \"{DAEMON_TABLE}\"/' $cfg; \
         grep -q '^table = \"{DAEMON_TABLE}\"' $cfg; \
         autoblock config check $cfg; \
         touch /var/log/secure; \
         systemctl enable --now autoblock.service; systemctl is-active autoblock.service"
        ))
        .context("starting the packaged autoblock.service")?;
    // One failed password per connection; once banned, connecting times out.
    let out = guest.root(&format!(
        "for i in $(seq 1 12); do \
           if {banned}; then echo \"banned after $((i - 1)) attempts\"; exit 0; fi; \
           ip netns exec attacker timeout 20 sshpass -p wrong-password ssh -b {ATTACKER} \
             -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o PubkeyAuthentication=no -o PreferredAuthentications=password \
             -o NumberOfPasswordPrompts=1 -o ConnectTimeout=5 vagrant@{GUEST_ADDR} true \
             >/dev/null 2>&1 || true; \
         done; \
         for i in $(seq 1 100); do \
           if {banned}; then echo banned; exit 0; fi; sleep 0.2; \
         done; \
         echo \"not banned; /var/log/secure ends:\"; tail -5 /var/log/secure; \
         journalctl -u autoblock.service -n 20 --no-pager; exit 1",
        banned = in_daemon_table(ATTACKER)
    ))?;
    println!("vm: daemon: {}", out.lines().next().unwrap_or("").trim());
    Ok(StepResult::Pass)
}

/// After the reboot: the packaged unit is active and the ban is back in
/// its table (the daemon started from its store).
fn daemon_restored(guest: &Guest) -> Result<StepResult> {
    let active = guest.root_output("systemctl is-active autoblock.service")?;
    let active = String::from_utf8_lossy(&active.stdout).trim().to_owned();
    if active != "active" {
        let log = guest
            .root("journalctl -b -u autoblock.service -n 30 --no-pager")
            .unwrap_or_default();
        bail!("autoblock.service is {active:?} after the reboot:\n{log}");
    }
    let table = guest
        .root(&format!("nft list table inet {DAEMON_TABLE}"))
        .unwrap_or_default();
    ensure!(
        guest
            .root_output(&in_daemon_table(ATTACKER))?
            .status
            .success(),
        "the daemon's table holds no ban of {ATTACKER} after the reboot:\n{table}"
    );
    Ok(StepResult::Pass)
}

/// The firewall disruptions the daemon must heal: what is printed, and the
/// guest command.
const DISRUPTIONS: [(&str, &str); 4] = [
    (
        "systemctl restart iptables",
        "systemctl restart iptables.service",
    ),
    ("nft flush ruleset", "nft flush ruleset"),
    (
        "systemctl start firewalld",
        "systemctl start firewalld.service",
    ),
    ("firewall-cmd --reload", "firewall-cmd --reload >/dev/null"),
];

/// Runs `command` in the guest, then polls (in the guest) until the ban is
/// back in the daemon's table; fails beyond [`HEAL_BOUND`] after the
/// command returned, or when the banned source's packets then pass. The
/// time is printed with the result.
fn heal_check(guest: &Guest, command: &str) -> Result<StepResult> {
    let out = guest.root(&format!(
        "set -e; {command}; t1=$(date +%s%N); gone=no; \
         while ! {banned}; do gone=yes; \
           if [ $(( $(date +%s%N) - t1 )) -gt 10000000000 ]; then \
             echo \"not healed within 10 s\"; journalctl -u autoblock.service -n 10 --no-pager; exit 1; \
           fi; sleep 0.01; \
         done; t2=$(date +%s%N); \
         echo \"$(( (t2 - t1) / 1000000 )) $gone\"",
        banned = in_daemon_table(ATTACKER)
    ))?;
    let mut words = out.split_whitespace();
    let ms: u64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .with_context(|| format!("unexpected output of the heal check: {out:?}"))?;
    let gone = words.next() == Some("yes");
    println!(
        "vm: daemon: `{command}`: ban {} {ms} ms after the command returned",
        if gone {
            "back in the kernel"
        } else {
            "still in the kernel (never seen missing)"
        }
    );
    let active = guest.root_output("systemctl is-active autoblock.service")?;
    ensure!(
        String::from_utf8_lossy(&active.stdout).trim() == "active",
        "autoblock.service is no longer active after `{command}`"
    );
    ensure!(
        Duration::from_millis(ms) <= HEAL_BOUND,
        "healed only {ms} ms after `{command}` returned (bound {} ms)",
        HEAL_BOUND.as_millis()
    );
    // The element alone is not enough: its chain and rule must drop again.
    packet_check(guest, ATTACKER).with_context(|| format!("after `{command}`"))
}
