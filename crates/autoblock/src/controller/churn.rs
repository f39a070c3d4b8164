//! One transaction that blocks some networks and unblocks others in the set layout, without
//! reading the elements first: the fast path of the async service's coalesced rounds.
//!
//! [`Controller::block`] and [`Controller::unblock`] look every entry up before they plan
//! (to refresh or replace what exists, and to report what was already in place): one round
//! trip per entry. Under churn almost every block is of a new address and almost every
//! unblock of a present one, so this path instead *asserts* that, and lets the kernel check
//! it: blocks are `NEWSETELEM` with `NLM_F_EXCL` (an existing element is `EEXIST`), unblocks
//! are `DELSETELEM` (a missing or expired element is `ENOENT`). If the assertion fails the
//! kernel aborts the whole transaction and this returns `Ok(None)`: nothing was applied, and
//! the caller takes the regular path, which reports those entries precisely.
//!
//! It owns only that assertion; structure, growth, naming and committing are the set layout's
//! (`set.rs`). It does nothing for the chain layout, for expiry times already past, or on
//! kernels that do not report a set's element count (where counting would need a dump).

use std::collections::BTreeMap;
use std::time::SystemTime;

use autoblock_netlink::{ElemOp, ElemRef, Family};

use super::set::{timeout_ms, SLabel, SetKey};
use super::*;

/// `EEXIST`: a block of an element that exists.
const EEXIST: i32 = 17;
/// `ENOENT`: an unblock of an element that does not exist (or has expired).
const ENOENT: i32 = 2;

impl<T: Transport> Controller<T> {
    /// Set layout: blocks `blocks` and unblocks `unblocks` in one transaction, asserting that
    /// every block is new and every unblock present. `blocks` must be validated
    /// ([`Controller::validate`]); all networks must be distinct. Returns the reports of the
    /// blocks and of the unblocks, or `Ok(None)` (nothing applied) when the assertion does not
    /// hold or this path does not apply; then use [`Controller::block`] and
    /// [`Controller::unblock`].
    pub(crate) fn set_churn(
        &mut self,
        blocks: &[Entry],
        unblocks: &[Net],
    ) -> Result<Option<(Report, Report)>, Error> {
        if self.cfg.layout != Layout::Set || (blocks.is_empty() && unblocks.is_empty()) {
            return Ok(None);
        }
        let span = info_span!(
            "set_churn",
            blocks = blocks.len(),
            unblocks = unblocks.len()
        );
        let _g = span.enter();
        let now = SystemTime::now();
        let mut timeouts = Vec::with_capacity(blocks.len());
        let mut udata = Vec::with_capacity(blocks.len());
        for e in blocks {
            let Some(t) = timeout_ms(e.expires, now) else {
                return Ok(None);
            };
            timeouts.push(t);
            udata.push(match e.comment.as_deref().filter(|c| !c.is_empty()) {
                Some(c) => match udata::comment(c) {
                    Some(u) => Some(u),
                    None => return Ok(None),
                },
                None => None,
            });
        }
        let mut nets: Vec<Net> = Vec::with_capacity(blocks.len() + unblocks.len());
        nets.extend(blocks.iter().map(|e| e.net));
        nets.extend_from_slice(unblocks);
        // Per set: indexes into `nets` of its blocks and of its unblocks.
        let mut groups: BTreeMap<SetKey, (Vec<u32>, Vec<u32>)> = BTreeMap::new();
        for (i, n) in nets.iter().enumerate() {
            let g = groups.entry(SetKey::of(n)).or_default();
            if i < blocks.len() {
                g.0.push(i as u32);
            } else {
                g.1.push(i as u32);
            }
        }
        // Probed before the first read: the probe commits, which moves the generation.
        self.probe_resize()?;
        for _ in 0..self.cfg.max_retries {
            let (genid, st) = self.set_read()?;
            let mut needs = Vec::with_capacity(groups.len());
            for (k, (bi, ui)) in &groups {
                let count = match st.sets.get(k) {
                    None if !ui.is_empty() => return Ok(None),
                    None => 0,
                    Some(s) => match s.count {
                        Some(c) => u64::from(c),
                        None => return Ok(None),
                    },
                };
                if !bi.is_empty() {
                    needs.push((*k, count + bi.len() as u64));
                }
            }
            if self.set_grow(genid, &st, &needs)? {
                continue;
            }
            let mut b = Batch::with_capacity(4096 + nets.len() * 48);
            let mut labels = Vec::with_capacity(8 + 2 * groups.len());
            self.set_structure(&mut b, &mut labels, &st, &needs)?;
            let table = self.cfg.table.clone();
            for (k, (bi, ui)) in &groups {
                let name = k.name();
                if !bi.is_empty() {
                    let mut w = b.elements(ElemOp::Create, Family::Inet, &table, &name);
                    for &i in bi {
                        let i = i as usize;
                        let key = nets[i].octets();
                        w.push(&ElemRef {
                            key: &key,
                            timeout: timeouts[i],
                            userdata: udata[i].as_deref(),
                            ..Default::default()
                        });
                    }
                    w.finish();
                    labels.push(SLabel::Elems(bi.clone()));
                }
                if !ui.is_empty() {
                    let mut w = b.elements(ElemOp::Delete, Family::Inet, &table, &name);
                    for &i in ui {
                        let key = nets[i as usize].octets();
                        w.push(&ElemRef {
                            key: &key,
                            ..Default::default()
                        });
                    }
                    w.finish();
                    labels.push(SLabel::Elems(ui.clone()));
                }
            }
            match self.set_commit(&mut b, genid, &labels, &nets) {
                Ok(true) => {
                    let blocked = Report {
                        changed: blocks.iter().map(|e| e.net).collect(),
                        ..Report::default()
                    };
                    let unblocked = Report {
                        changed: unblocks.to_vec(),
                        ..Report::default()
                    };
                    return Ok(Some((blocked, unblocked)));
                }
                Ok(false) => continue,
                Err(Error::Rejected { error, .. })
                    if error.errno == EEXIST || error.errno == ENOENT =>
                {
                    debug!(
                        errno = error.errno,
                        "churn assertion failed; taking the regular path"
                    );
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::TooManyRetries(self.cfg.max_retries))
    }
}
