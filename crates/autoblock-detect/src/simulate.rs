//! Replaying detections through a jail's policy with the lines' own
//! timestamps, to see when each address would have been banned.
//!
//! Deliberately not here: reading the log (the caller feeds a [`Scanner`]
//! and passes its detections on) and applying anything.
//!
//! [`Scanner`]: crate::Scanner

use jiff::Timestamp;

use crate::policy::{BanDecision, PolicyState};
use crate::scanner::{Detection, Event};

/// One ban the replay would have decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimEvent {
    /// The line whose failure completed the ban.
    pub line_no: u64,
    /// The decision.
    pub ban: BanDecision,
}

/// Feeds detections, in log order, into a [`PolicyState`].
///
/// Detections without a timestamp take the last timestamp seen (or the
/// start time given to [`Simulator::new`]).
#[derive(Debug)]
pub struct Simulator {
    state: PolicyState,
    clock: Timestamp,
}

impl Simulator {
    /// A replay into `state`, starting at `start` for lines without time.
    pub fn new(state: PolicyState, start: Timestamp) -> Simulator {
        Simulator {
            state,
            clock: start,
        }
    }

    /// Applies one detection; returns the ban it completes, if any.
    pub fn push(&mut self, d: &Detection<'_>) -> Option<SimEvent> {
        if let Some(t) = d.time {
            self.clock = t;
        }
        match d.event {
            Event::Failure(f) => self.state.record(&f, self.clock).map(|ban| SimEvent {
                line_no: d.line_no,
                ban,
            }),
            Event::Forgive { host, count } => {
                self.state.forgive(host, count);
                None
            }
        }
    }

    /// The policy state (offences, counters).
    pub fn state(&self) -> &PolicyState {
        &self.state
    }

    /// Ends the replay, returning the state.
    pub fn into_state(self) -> PolicyState {
        self.state
    }
}

/// Replays `detections` into `state`; returns the bans in order.
pub fn simulate<'a>(
    state: PolicyState,
    start: Timestamp,
    detections: impl IntoIterator<Item = Detection<'a>>,
) -> (Vec<SimEvent>, PolicyState) {
    let mut sim = Simulator::new(state, start);
    let bans = detections
        .into_iter()
        .filter_map(|d| sim.push(&d))
        .collect();
    (bans, sim.into_state())
}
