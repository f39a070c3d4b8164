//! End-to-end tests of the daemon's Prometheus endpoint (`metrics = "127.0.0.1:9641"`), in a
//! fresh test bed: a real `autoblock run` follows a log file; a scrape before and after sshd
//! failure lines shows the line, failure and ban counters move, one active ban, and the drop
//! rule's kernel counters once a packet of the banned source was dropped. The endpoint
//! listens only where configured (loopback here: the host's link address refuses), and a
//! taken address stops the start with an error naming it.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use autoblock_tests::{
    addr, autoblock_bin, output_text, sshd_failure_lines, tool, write_daemon_config, Netns,
    RunningDaemon, TestBed,
};

const METRICS: &str = "127.0.0.1:9641";

fn start(ns: &Netns, dir: &Path) -> RunningDaemon {
    RunningDaemon::start(
        ns,
        &dir.join("autoblock.toml"),
        dir.join("daemon.log"),
        "info",
        Duration::from_secs(10),
        || true,
    )
}

/// `GET /metrics` over a plain TCP connection opened in `ns`: (status line, body).
fn get(ns: &Netns, to: SocketAddr, path: &str) -> std::io::Result<(String, String)> {
    let path = path.to_owned();
    ns.run(move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        Ok((
            head.lines().next().unwrap_or("").to_owned(),
            body.to_owned(),
        ))
    })
}

fn scrape(ns: &Netns) -> String {
    let (status, body) = get(ns, METRICS.parse().unwrap(), "/metrics").expect("scrape");
    assert!(status.contains(" 200 "), "{status}\n{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    body
}

/// The value of one series (`name{labels}` exactly as exposed), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .map_or(0.0, |l| l[series.len()..].trim().parse().unwrap())
}

const LINES: &str = r#"autoblock_log_lines_total{jail="sshd",filter="sshd"}"#;
const FAILURES: &str = r#"autoblock_failures_total{jail="sshd",filter="sshd"}"#;
const BANS: &str = r#"autoblock_bans_total{reason="sshd"}"#;
const ACTIVE_V4: &str = r#"autoblock_active_bans{layout="set",family="ipv4"}"#;
const ACTIVE_V6: &str = r#"autoblock_active_bans{layout="set",family="ipv6"}"#;
const DROPPED_V4: &str = r#"autoblock_dropped_packets{layout="set",family="ipv4"}"#;
const DROPPED_BYTES_V4: &str = r#"autoblock_dropped_bytes{layout="set",family="ipv4"}"#;

/// Polls scrapes until `f` holds (or panics after `bound` with the last scrape).
fn scrape_until(ns: &Netns, bound: Duration, what: &str, f: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = scrape(ns);
        if f(&text) {
            return text;
        }
        assert!(start.elapsed() < bound, "{what} within {bound:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_scrape_shows_lines_failures_bans_and_dropped_packets_move() {
    let bed = TestBed::new();
    let ns = bed.host();
    tool(ns, &["ip", "link", "set", "lo", "up"]);
    let dir = tempfile::tempdir().unwrap();
    write_daemon_config(dir.path(), "set", &format!("metrics = \"{METRICS}\""));
    let d = start(ns, dir.path());
    assert!(
        d.log_text().contains("metrics: serving"),
        "{}",
        d.log_text()
    );

    let before = scrape(ns);
    assert_eq!(value(&before, LINES), 0.0, "{before}");
    assert_eq!(value(&before, FAILURES), 0.0, "{before}");
    assert_eq!(value(&before, BANS), 0.0, "{before}");
    assert_eq!(value(&before, ACTIVE_V4), 0.0, "{before}");
    // The start-up reconciliation is a transaction the daemon made.
    assert!(
        value(&before, "autoblock_transactions_total") >= 1.0,
        "{before}"
    );

    let attacker = IpAddr::V4(addr::V4_BLOCKED);
    let below = IpAddr::V4(addr::V4_OTHER_24);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("auth.log"))
        .unwrap();
    f.write_all(sshd_failure_lines(below, 2, 2000).as_bytes())
        .unwrap();
    f.write_all(sshd_failure_lines(attacker, 3, 1000).as_bytes())
        .unwrap();
    drop(f);

    let after = scrape_until(
        ns,
        Duration::from_secs(5),
        "5 lines, 5 failures, 1 ban",
        |t| {
            value(t, LINES) == 5.0
                && value(t, FAILURES) == 5.0
                && value(t, BANS) == 1.0
                && value(t, ACTIVE_V4) == 1.0
        },
    );
    assert_eq!(value(&after, ACTIVE_V6), 0.0, "{after}");
    assert!(
        value(&after, "autoblock_transactions_total")
            > value(&before, "autoblock_transactions_total"),
        "{after}"
    );
    assert!(
        value(&after, "autoblock_transaction_seconds_count")
            == value(&after, "autoblock_transactions_total"),
        "{after}"
    );
    assert_eq!(value(&after, "autoblock_self_heals_total"), 0.0, "{after}");

    // A packet of the banned source is dropped, and the drop rule's kernel counter shows it.
    assert!(!bed.send_udp(attacker, 0), "the banned source is dropped");
    let counted = scrape_until(
        ns,
        Duration::from_secs(8),
        "the dropped packet counted",
        |t| value(t, DROPPED_V4) >= 1.0,
    );
    assert!(value(&counted, DROPPED_BYTES_V4) >= 28.0, "{counted}");
    assert!(value(&counted, "autoblock_store_bytes") > 0.0, "{counted}");
    // Still one ban, one failure count: the numbers agree with each other.
    assert_eq!(value(&counted, BANS), 1.0, "{counted}");
    assert_eq!(value(&counted, ACTIVE_V4), 1.0, "{counted}");

    // Only GET /metrics answers.
    let (status, _) = get(ns, METRICS.parse().unwrap(), "/").unwrap();
    assert!(status.contains(" 404 "), "{status}");

    // Listening on loopback only: the host's link address refuses, from inside and outside.
    let link: SocketAddr = (IpAddr::V4(addr::HOST_V4), 9641).into();
    for (who, from) in [("host", bed.host()), ("outside", bed.outside())] {
        let e = get(from, link, "/metrics").expect_err("the link address must not answer");
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{who}: {e}"
        );
    }
}

#[test]
fn without_the_key_nothing_listens_and_a_taken_address_fails_the_start() {
    let bed = TestBed::new();
    let ns = bed.host();
    tool(ns, &["ip", "link", "set", "lo", "up"]);
    let dir = tempfile::tempdir().unwrap();

    // Off by default: the daemon runs, the port refuses.
    write_daemon_config(dir.path(), "set", "");
    let d = start(ns, dir.path());
    let e = get(ns, METRICS.parse().unwrap(), "/metrics").expect_err("no metrics by default");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    drop(d);

    // Taken: a clear start-up error naming the address, exit non-zero.
    let taken = ns.run(|| std::net::TcpListener::bind(METRICS).unwrap());
    write_daemon_config(dir.path(), "set", &format!("metrics = \"{METRICS}\""));
    let mut cmd = Command::new(autoblock_bin());
    cmd.args(["run", "--config"])
        .arg(dir.path().join("autoblock.toml"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    let out = ns.output(cmd).unwrap();
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("metrics: cannot listen on {METRICS}")),
        "{text}"
    );
    drop(taken);
}
