//! The chain layout's known state: after its own commit the controller plans the next change
//! without re-reading the chain. These tests check, in fresh network namespaces, that what it
//! believes always equals what a fresh read shows — through mixed operations, after another
//! program changed the chain, and when the state is handed to another process.

use autoblock::{Action, Config, Controller, Entry, Net};
use autoblock_tests::{iptables, Netns};

/// One operation of a scripted sequence.
type Step = Box<dyn Fn(&mut Controller)>;

fn net(s: &str) -> Net {
    s.parse().unwrap()
}

/// What a controller believes (`chain_rules` answers from its known state when it has one)
/// next to what a fresh controller reads, without counters.
fn believed_and_read(ctl: &mut Controller, cfg: &Config) -> (Vec<String>, Vec<String>) {
    let show = |rules: Vec<(autoblock::IpFamily, autoblock::chain::ParsedRule)>| -> Vec<String> {
        rules
            .into_iter()
            .map(|(f, r)| format!("{f:?} {} {:?} {:?} h{}", r.net, r.kind, r.comment, r.handle))
            .collect()
    };
    let believed = show(ctl.chain_rules().expect("chain rules"));
    let read = show(
        Controller::open(cfg.clone())
            .expect("open")
            .chain_rules()
            .expect("chain rules"),
    );
    (believed, read)
}

#[test]
fn the_known_state_matches_a_fresh_read_through_mixed_operations() {
    let ns = Netns::new();
    ns.run(|| {
        let cfg = Config::default();
        let mut ctl = Controller::open(cfg.clone()).unwrap();
        let e = |s: &str| Entry::new(net(s));
        let steps: Vec<Step> = vec![
            Box::new(move |c| {
                c.block(&[e("198.51.100.9"), e("2001:db8:1::/48"), e("203.0.113.0/24")])
                    .unwrap();
            }),
            Box::new(move |c| {
                c.block(&[e("198.51.100.10").with_comment("one"), e("2001:db8::7")])
                    .unwrap();
            }),
            // A comment change replaces rules in place.
            Box::new(move |c| {
                c.block(&[e("198.51.100.9").with_comment("now with a comment")])
                    .unwrap();
            }),
            Box::new(move |c| {
                c.unblock(&[net("203.0.113.0/24"), net("2001:db8::7")])
                    .unwrap();
            }),
            Box::new(move |c| {
                c.sync(&[e("198.51.100.9"), e("192.0.2.0/28"), e("2001:db8:1::/48")])
                    .unwrap();
            }),
            // Nothing to do: the state stays known.
            Box::new(move |c| {
                c.block(&[e("192.0.2.0/28")]).unwrap();
            }),
        ];
        for (i, step) in steps.iter().enumerate() {
            step(&mut ctl);
            assert!(ctl.chain_state().is_some(), "state known after step {i}");
            let (believed, read) = believed_and_read(&mut ctl, &cfg);
            assert_eq!(believed, read, "after step {i}");
        }
        // A log-drop controller converts actions: two rules per entry, positioned.
        let ld = cfg.clone().action(Action::LogDrop);
        let mut c2 = Controller::open(ld.clone()).unwrap();
        c2.block(&[e("198.51.100.9"), e("198.51.100.77")]).unwrap();
        c2.block(&[e("198.51.100.78").with_comment("x")]).unwrap();
        assert!(c2.chain_state().is_some(), "state known after conversion");
        let (believed, read) = believed_and_read(&mut c2, &ld);
        assert_eq!(believed, read, "after log-drop conversion");
        assert!(read.len() >= 8, "{read:?}");
    });
}

#[test]
fn another_writer_makes_the_controller_read_again() {
    let ns = Netns::new();
    let cfg = Config::default();
    let state = ns.run({
        let cfg = cfg.clone();
        move || {
            let mut ctl = Controller::open(cfg).unwrap();
            ctl.block(&[
                Entry::new(net("198.51.100.9")),
                Entry::new(net("198.51.100.10")),
            ])
            .unwrap();
            ctl.chain_state().expect("a state to hand on")
        }
    });
    // Another program deletes one rule and adds its own for the same address.
    iptables(
        &ns,
        &["-D", "INPUT-AUTO", "-s", "198.51.100.9", "-j", "DROP"],
    );
    iptables(
        &ns,
        &["-A", "INPUT-AUTO", "-s", "198.51.100.10", "-j", "DROP"],
    );
    ns.run(move || {
        let mut ctl = Controller::open(cfg.clone()).unwrap();
        assert!(ctl.use_chain_state(&state), "same namespace and chain");
        // Both rules for .10 must go, although the handed-on state knew only one.
        let r = ctl
            .unblock(&[net("198.51.100.10"), net("198.51.100.9")])
            .unwrap();
        assert_eq!(r.changed, vec![net("198.51.100.10")]);
        assert_eq!(r.unchanged, vec![net("198.51.100.9")]);
        let (believed, read) = believed_and_read(&mut ctl, &cfg);
        assert_eq!(believed, read);
        assert!(read.is_empty(), "{read:?}");
    });
}

#[test]
fn a_state_from_another_namespace_is_refused() {
    let a = Netns::new();
    let b = Netns::new();
    let state = a.run(|| {
        let mut ctl = Controller::open(Config::default()).unwrap();
        ctl.block(&[Entry::new(net("198.51.100.9"))]).unwrap();
        ctl.chain_state().expect("a state")
    });
    b.run(move || {
        let mut ctl = Controller::open(Config::default()).unwrap();
        assert!(!ctl.use_chain_state(&state), "namespace cookie differs");
        assert!(!Controller::open(Config::default().chain("OTHER-AUTO"))
            .unwrap()
            .use_chain_state(&state));
    });
}

#[test]
fn the_cli_hands_the_state_to_the_next_process() {
    let ns = Netns::new();
    let run_dir = tempfile::tempdir().unwrap();
    let env = [("AUTOBLOCK_RUNTIME_DIR", run_dir.path().to_str().unwrap())];
    let out = ns.autoblock_env(
        &["--no-mirror", "block", "198.51.100.9", "198.51.100.10"],
        &env,
    );
    assert!(out.status.success(), "{out:?}");
    let files: Vec<_> = std::fs::read_dir(run_dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "one state file");
    // The next process unblocks without dumping the chain: with AUTOBLOCK_LOG=debug the
    // controller says so.
    let out = ns.autoblock_env(
        &["--no-mirror", "unblock", "198.51.100.9"],
        &[env[0], ("AUTOBLOCK_LOG", "autoblock=debug")],
    );
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chain state known"), "{err}");
    let rules = iptables(&ns, &["-S", "INPUT-AUTO"]);
    assert!(!rules.contains("198.51.100.9/32"), "{rules}");
    assert!(rules.contains("198.51.100.10/32"), "{rules}");
}
