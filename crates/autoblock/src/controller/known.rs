//! What the chain layout knows for sure about its chains between operations, so that a
//! short operation on a long chain does not re-read the whole chain first.
//!
//! Reading a chain of 100,000 rules costs the kernel about a second (a rule dump restarts
//! its walk at the head of the chain for every 32 KiB part). After its own commit the
//! controller knows exactly what the chain holds: what it read at generation G plus what it
//! changed, at generation G+1 (a commit guarded by G is the only commit between G and G+1).
//! The next operation asks the kernel for the generation id (one small message); if it is
//! still G+1 nothing else changed and the known state is used as is. Any other generation id,
//! any doubt (the structure changed, echoed handles that do not add up) and the state is
//! forgotten and read again.
//!
//! Handles of new rules: the kernel numbers the objects of a table consecutively within a
//! batch, so the controller asks for the echo of only the first and the last new rule of each
//! family and checks that the numbers add up.
//!
//! The known state can be carried from one process to the next (`encode`/`decode`), tied to
//! the network namespace's cookie, which the kernel never gives to another namespace before a
//! reboot. Counters in a known state are not kept: reads that show counters (`list`,
//! `status`) always read the kernel. This module does no I/O itself.

use std::fmt::Write as _;

use autoblock_netlink::{Batch, OpId, RulePos};

use super::FamState;
use crate::chain::{ParsedRule, RuleKind};
use crate::entry::Net;

/// The chains' state at a generation.
#[derive(Debug)]
pub(super) struct Known {
    pub genid: u32,
    pub states: [FamState; 2],
}

/// The generation id a successful commit guarded by `genid` creates.
pub(super) fn next_genid(genid: u32) -> u32 {
    match genid.wrapping_add(1) {
        0 => 1,
        g => g,
    }
}

/// One change a planned batch makes to a chain.
#[derive(Debug)]
enum Change {
    Add {
        fam: usize,
        op: OpId,
        rule: ParsedRule,
        pos: RulePos,
    },
    Replace {
        fam: usize,
        handle: u64,
        rule: ParsedRule,
    },
    Delete {
        fam: usize,
        handle: u64,
    },
    /// The table, `INPUT`, the chain and the jump were made to exist; `jump` is the new jump
    /// at the head of `INPUT`, when one was inserted (old ones were deleted).
    Structure {
        fam: usize,
        jump: Option<OpId>,
    },
}

/// The changes of one planned batch, recorded while planning.
#[derive(Debug, Default)]
pub(super) struct Track {
    changes: Vec<Change>,
}

impl Track {
    /// The structure of family `fam` was completed; `jump` inserted the jump.
    pub fn structure(&mut self, fam: usize, jump: Option<OpId>) {
        self.changes.push(Change::Structure { fam, jump });
    }

    pub fn add(
        &mut self,
        fam: usize,
        op: OpId,
        net: Net,
        kind: &RuleKind,
        comment: Option<&str>,
        pos: RulePos,
    ) {
        self.changes.push(Change::Add {
            fam,
            op,
            rule: rule(net, kind, comment, 0),
            pos,
        });
    }

    pub fn replace(
        &mut self,
        fam: usize,
        handle: u64,
        net: Net,
        kind: &RuleKind,
        comment: Option<&str>,
    ) {
        self.changes.push(Change::Replace {
            fam,
            handle,
            rule: rule(net, kind, comment, handle),
        });
    }

    pub fn delete(&mut self, fam: usize, handle: u64) {
        self.changes.push(Change::Delete { fam, handle });
    }

    /// Handles of existing rules the batch deletes or replaces: what to check against the
    /// kernel when the state came from a previous operation.
    pub fn touched(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.changes.iter().filter_map(|c| match c {
            Change::Replace { fam, handle, .. } | Change::Delete { fam, handle } => {
                Some((*fam, *handle))
            }
            Change::Add { .. } | Change::Structure { .. } => None,
        })
    }

    /// Asks for the echo of the first and last new rule of each family.
    pub fn request_echoes(&self, b: &mut Batch) {
        for c in &self.changes {
            if let Change::Structure { jump: Some(op), .. } = c {
                b.request_echo(*op);
            }
        }
        for fam in 0..2 {
            let mut adds = self.changes.iter().filter_map(|c| match c {
                Change::Add { fam: f, op, .. } if *f == fam => Some(*op),
                _ => None,
            });
            if let Some(first) = adds.next() {
                b.request_echo(first);
                if let Some(last) = adds.next_back() {
                    b.request_echo(last);
                }
            }
        }
    }

    /// The state after the batch was committed, or `None` when it cannot be known for sure.
    pub fn apply(self, mut states: [FamState; 2], echoed: &[(OpId, u64)]) -> Option<[FamState; 2]> {
        // Handles of the new rules, per family: consecutive from the first echoed one.
        let mut next = [None::<u64>; 2];
        let mut count = [0u64; 2];
        let mut last = [None::<u64>; 2];
        for c in &self.changes {
            if let Change::Add { fam, op, .. } = c {
                let h = echoed.iter().find(|(o, _)| o == op).map(|(_, h)| *h);
                if count[*fam] == 0 {
                    next[*fam] = Some(h?);
                }
                if h.is_some() {
                    last[*fam] = h;
                }
                count[*fam] += 1;
            }
        }
        for fam in 0..2 {
            if count[fam] > 0 && last[fam]? != next[fam]? + count[fam] - 1 {
                return None;
            }
        }
        for c in self.changes {
            match c {
                Change::Add {
                    fam, mut rule, pos, ..
                } => {
                    let h = next[fam]?;
                    next[fam] = Some(h + 1);
                    rule.handle = h;
                    let rules = &mut states[fam].rules;
                    let at = match pos {
                        RulePos::Append => rules.len(),
                        RulePos::Head => 0,
                        RulePos::After(a) => rules.iter().position(|r| r.handle == a)? + 1,
                        RulePos::Before(a) => rules.iter().position(|r| r.handle == a)?,
                        _ => return None,
                    };
                    // Foreign rules are not kept in order with ours: a position relative to
                    // one of them, or a head insert in a chain that has some, is not known.
                    if !states[fam].foreign.is_empty() && !matches!(pos, RulePos::Append) {
                        return None;
                    }
                    rules.insert(at, rule);
                }
                Change::Replace { fam, handle, rule } => {
                    let r = states[fam].rules.iter_mut().find(|r| r.handle == handle)?;
                    r.comment = rule.comment;
                    r.kind = rule.kind;
                    r.net = rule.net;
                }
                Change::Delete { fam, handle } => {
                    let rules = &mut states[fam].rules;
                    let at = rules.iter().position(|r| r.handle == handle)?;
                    rules.remove(at);
                }
                Change::Structure { fam, jump } => {
                    let st = &mut states[fam];
                    st.table = true;
                    st.input = true;
                    st.chain = true;
                    match jump {
                        Some(op) => {
                            let h = echoed.iter().find(|(o, _)| *o == op)?.1;
                            st.jumps = vec![h];
                            st.jump_first = true;
                            st.first_input = Some(h);
                        }
                        None => st.jumps.truncate(1),
                    }
                }
            }
        }
        Some(states)
    }
}

fn rule(net: Net, kind: &RuleKind, comment: Option<&str>, handle: u64) -> ParsedRule {
    ParsedRule {
        net,
        kind: kind.clone(),
        comment: comment.map(str::to_owned),
        packets: 0,
        bytes: 0,
        handle,
    }
}

const MAGIC: &str = "autoblock-chain-state 1";

/// Encodes a known state for another process in the same network namespace.
pub(super) fn encode(k: &Known, cookie: u64, chain: &str) -> Vec<u8> {
    let mut s =
        String::with_capacity(64 + 40 * (k.states[0].rules.len() + k.states[1].rules.len()));
    let _ = writeln!(s, "{MAGIC}\n{cookie} {} {}", k.genid, hex(chain));
    for (i, st) in k.states.iter().enumerate() {
        let _ = writeln!(
            s,
            "f {i} {} {} {} {} {} {} {}",
            st.table as u8,
            st.input as u8,
            st.chain as u8,
            st.jump_first as u8,
            st.first_input.map_or("-".to_owned(), |h| h.to_string()),
            list(&st.jumps),
            list(&st.foreign),
        );
        for r in &st.rules {
            let kind = match &r.kind {
                RuleKind::Drop => "D".to_owned(),
                RuleKind::Reject => "R".to_owned(),
                RuleKind::Log { prefix } => format!("L{}", hex(prefix)),
            };
            let _ = writeln!(
                s,
                "{} {} {kind} {}",
                r.handle,
                r.net,
                r.comment
                    .as_deref()
                    .map_or("-".to_owned(), |c| format!("+{}", hex(c)))
            );
        }
    }
    s.into_bytes()
}

/// Decodes what [`encode`] wrote, if it belongs to this namespace (`cookie`) and chain.
pub(super) fn decode(bytes: &[u8], cookie: u64, chain: &str) -> Option<Known> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let mut head = lines.next()?.split(' ');
    if head.next()?.parse::<u64>().ok()? != cookie {
        return None;
    }
    let genid = head.next()?.parse().ok()?;
    if unhex(head.next()?)? != chain {
        return None;
    }
    let mut states: [FamState; 2] = Default::default();
    let mut cur: Option<usize> = None;
    for line in lines {
        let w: Vec<&str> = line.split(' ').collect();
        if w.first() == Some(&"f") {
            let [_, i, t, inp, ch, jf, fi, jumps, foreign] = w.as_slice() else {
                return None;
            };
            let i: usize = i.parse().ok().filter(|i| *i < 2)?;
            let st = &mut states[i];
            st.table = *t == "1";
            st.input = *inp == "1";
            st.chain = *ch == "1";
            st.jump_first = *jf == "1";
            st.first_input = if *fi == "-" {
                None
            } else {
                Some(fi.parse().ok()?)
            };
            st.jumps = unlist(jumps)?;
            st.foreign = unlist(foreign)?;
            cur = Some(i);
            continue;
        }
        let [handle, net, kind, comment] = w.as_slice() else {
            return None;
        };
        let kind = match *kind {
            "D" => RuleKind::Drop,
            "R" => RuleKind::Reject,
            k => RuleKind::Log {
                prefix: unhex(k.strip_prefix('L')?)?,
            },
        };
        let comment = match *comment {
            "-" => None,
            c => Some(unhex(c.strip_prefix('+')?)?),
        };
        states[cur?].rules.push(ParsedRule {
            net: net.parse().ok()?,
            kind,
            comment,
            packets: 0,
            bytes: 0,
            handle: handle.parse().ok()?,
        });
    }
    Some(Known { genid, states })
}

fn list(h: &[u64]) -> String {
    if h.is_empty() {
        return "-".to_owned();
    }
    h.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn unlist(s: &str) -> Option<Vec<u64>> {
    if s == "-" {
        return Some(Vec::new());
    }
    s.split(',').map(|h| h.parse().ok()).collect()
}

fn hex(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn unhex(s: &str) -> Option<String> {
    if s.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(net: &str, kind: RuleKind, comment: Option<&str>, handle: u64) -> ParsedRule {
        rule(net.parse().unwrap(), &kind, comment, handle)
    }

    fn sample() -> Known {
        let mut states: [FamState; 2] = Default::default();
        states[0] = FamState {
            table: true,
            input: true,
            chain: true,
            jumps: vec![3],
            jump_first: true,
            first_input: Some(3),
            rules: vec![
                r("198.51.100.9/32", RuleKind::Drop, None, 5),
                r(
                    "203.0.113.0/24",
                    RuleKind::Log {
                        prefix: "autoblock: ".into(),
                    },
                    Some("expires=2026-11-25T10:00:00Z; ssh, brute force"),
                    6,
                ),
            ],
            foreign: vec![],
        };
        states[1].table = true;
        Known { genid: 42, states }
    }

    #[test]
    fn encoding_round_trips_and_is_tied_to_namespace_and_chain() {
        let k = sample();
        let bytes = encode(&k, 7, "INPUT-AUTO");
        let back = decode(&bytes, 7, "INPUT-AUTO").expect("decodes");
        assert_eq!(back.genid, 42);
        assert_eq!(back.states[0].rules, k.states[0].rules);
        assert_eq!(back.states[0].jumps, vec![3]);
        assert_eq!(back.states[0].first_input, Some(3));
        assert!(back.states[1].table && !back.states[1].chain);
        assert!(decode(&bytes, 8, "INPUT-AUTO").is_none(), "other namespace");
        assert!(decode(&bytes, 7, "OTHER").is_none(), "other chain");
        assert!(
            decode(&bytes[..bytes.len() - 3], 7, "INPUT-AUTO").is_none(),
            "cut short"
        );
        assert!(decode(b"garbage", 7, "INPUT-AUTO").is_none());
    }

    #[test]
    fn apply_numbers_new_rules_from_the_echoed_handles() {
        let k = sample();
        let mut t = Track::default();
        let net: Net = "192.0.2.0/24".parse().unwrap();
        t.add(0, OpId(0), net, &RuleKind::Drop, None, RulePos::Append);
        t.add(
            0,
            OpId(1),
            "192.0.2.77".parse().unwrap(),
            &RuleKind::Drop,
            Some("x"),
            RulePos::Append,
        );
        t.add(
            0,
            OpId(2),
            "192.0.2.78".parse().unwrap(),
            &RuleKind::Drop,
            None,
            RulePos::Before(5),
        );
        t.delete(0, 6);
        let states = t
            .apply(k.states, &[(OpId(0), 10), (OpId(2), 12)])
            .expect("known");
        let got: Vec<(u64, String)> = states[0]
            .rules
            .iter()
            .map(|r| (r.handle, r.net.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                (12, "192.0.2.78/32".to_owned()),
                (5, "198.51.100.9/32".to_owned()),
                (10, "192.0.2.0/24".to_owned()),
                (11, "192.0.2.77/32".to_owned()),
            ]
        );
    }

    #[test]
    fn apply_gives_up_when_handles_do_not_add_up_or_structure_changed() {
        let mut t = Track::default();
        t.add(
            0,
            OpId(0),
            "192.0.2.1".parse().unwrap(),
            &RuleKind::Drop,
            None,
            RulePos::Append,
        );
        t.add(
            0,
            OpId(1),
            "192.0.2.2".parse().unwrap(),
            &RuleKind::Drop,
            None,
            RulePos::Append,
        );
        assert!(t
            .apply(sample().states, &[(OpId(0), 10), (OpId(1), 15)])
            .is_none());
        let mut t = Track::default();
        t.add(
            0,
            OpId(0),
            "192.0.2.1".parse().unwrap(),
            &RuleKind::Drop,
            None,
            RulePos::Append,
        );
        assert!(t.apply(sample().states, &[]).is_none(), "no echo");
        let mut t = Track::default();
        t.structure(1, Some(OpId(0)));
        assert!(t.apply(sample().states, &[]).is_none(), "jump not echoed");
        let mut t = Track::default();
        t.delete(0, 99);
        assert!(t.apply(sample().states, &[]).is_none(), "unknown handle");
    }

    #[test]
    fn next_genid_skips_zero() {
        assert_eq!(next_genid(41), 42);
        assert_eq!(next_genid(u32::MAX), 1);
    }
}
