//! Controller configuration: layout, chain name, action, allowlist and kernel capability
//! overrides, with a chained builder.

use crate::entry::Net;
use crate::error::InputError;

/// Which ruleset layout the controller writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Layout {
    /// iptables-compatible: one rule per entry in `ip filter`/`ip6 filter` chain `INPUT-AUTO`.
    #[default]
    Chain,
    /// nf_tables sets with per-element timeouts in table `inet autoblock`.
    Set,
}

/// What happens to packets from a blocked source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Action {
    /// Drop silently.
    #[default]
    Drop,
    /// Reject with ICMP port unreachable.
    Reject,
    /// Only log (the recipe's "test with LOG before DROP").
    Log,
    /// Log, then drop.
    LogDrop,
}

impl Action {
    /// Parses `drop`, `reject`, `log`, `log-drop`.
    pub fn parse(s: &str) -> Result<Action, InputError> {
        match s {
            "drop" => Ok(Action::Drop),
            "reject" => Ok(Action::Reject),
            "log" => Ok(Action::Log),
            "log-drop" => Ok(Action::LogDrop),
            _ => Err(InputError::BadConfig {
                what: "action",
                value: s.to_owned(),
                reason: "expected drop, reject, log or log-drop",
            }),
        }
    }

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Drop => "drop",
            Action::Reject => "reject",
            Action::Log => "log",
            Action::LogDrop => "log-drop",
        }
    }
}

/// Controller configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Layout.
    pub layout: Layout,
    /// Chain name of the chain layout (iptables allows at most 28 characters).
    pub chain: String,
    /// Table name of the set layout (family `inet`).
    pub table: String,
    /// Action.
    pub action: Action,
    /// Log prefix of `log`/`log-drop` (at most 29 bytes).
    pub log_prefix: String,
    /// Networks never to block, in addition to loopback and the host's addresses.
    pub allow: Vec<Net>,
    /// Also allowlist the addresses configured on this host's interfaces.
    pub allow_host_addresses: bool,
    /// Use `DESTROY*` messages: `None` = probe the kernel; `Some(false)` forces the fallback
    /// path older kernels need.
    pub use_destroy: Option<bool>,
    /// How often a transaction is rebuilt when another program changed the ruleset.
    pub max_retries: u32,
    /// Chain length past which the chain layout warns and suggests the set layout.
    pub warn_chain_len: usize,
    /// Hook of the set layout's base chain.
    pub set_hook: SetHook,
    /// Priority of the set layout's base chain; `None` = the hook's default
    /// ([`SetHook::default_priority`]).
    pub set_priority: Option<i32>,
    /// Hard limit of entries per set of the set layout. `None` (the default): sets grow
    /// automatically and a full set never surfaces; `Some(n)`: each set holds at most `n`
    /// entries and blocking more is an error naming the entry that did not fit.
    pub max_entries: Option<u32>,
    /// Refresh the timeout of an existing set element in place (`EXPIRATION`, kernels
    /// ≥ 6.12): `None` = probe the kernel; `Some(false)` forces the delete-and-add fallback
    /// older kernels need.
    pub refresh_timeouts: Option<bool>,
    /// Grow a set of the set layout in place by giving it a larger size (kernels ≥ 6.5
    /// apply a new size to an existing set): `None` = probe the kernel; `Some(false)` forces
    /// what older kernels need — sets created without a size (no limit; the kernel's
    /// resizable hash grows by itself), which never need growing. Ignored with
    /// [`Config::max_entries`] (a hard limit is a size on every kernel).
    pub resize_sets: Option<bool>,
}

/// Where the set layout's base chain hooks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SetHook {
    /// `input`, by default just before iptables' `filter` (priority -1): drops only traffic
    /// addressed to this host.
    #[default]
    Input,
    /// `prerouting`, by default at raw priority (-300): drops before connection tracking,
    /// so blocked sources cost no conntrack entry (forwarded traffic is dropped too).
    Prerouting,
}

impl SetHook {
    /// The chain's name in the set layout's table (`input` or `prerouting`).
    pub fn chain_name(self) -> &'static str {
        match self {
            SetHook::Input => "input",
            SetHook::Prerouting => "prerouting",
        }
    }

    /// Default priority: -1 for `input` (before `filter`), -300 (`raw`) for `prerouting`.
    pub fn default_priority(self) -> i32 {
        match self {
            SetHook::Input => -1,
            SetHook::Prerouting => -300,
        }
    }

    /// Parses `input` or `prerouting`.
    pub fn parse(s: &str) -> Result<SetHook, InputError> {
        match s {
            "input" => Ok(SetHook::Input),
            "prerouting" => Ok(SetHook::Prerouting),
            _ => Err(InputError::BadConfig {
                what: "hook",
                value: s.to_owned(),
                reason: "expected input or prerouting",
            }),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            layout: Layout::Chain,
            chain: "INPUT-AUTO".to_owned(),
            table: "autoblock".to_owned(),
            action: Action::Drop,
            log_prefix: "autoblock: ".to_owned(),
            allow: Vec::new(),
            allow_host_addresses: true,
            use_destroy: None,
            max_retries: 32,
            warn_chain_len: 5_000,
            set_hook: SetHook::Input,
            set_priority: None,
            max_entries: None,
            refresh_timeouts: None,
            resize_sets: None,
        }
    }
}

impl Config {
    /// Sets the layout.
    pub fn layout(mut self, l: Layout) -> Self {
        self.layout = l;
        self
    }
    /// Sets the chain name.
    pub fn chain(mut self, c: impl Into<String>) -> Self {
        self.chain = c.into();
        self
    }
    /// Sets the set-layout table name.
    pub fn table(mut self, t: impl Into<String>) -> Self {
        self.table = t.into();
        self
    }
    /// Sets the action.
    pub fn action(mut self, a: Action) -> Self {
        self.action = a;
        self
    }
    /// Sets the log prefix.
    pub fn log_prefix(mut self, p: impl Into<String>) -> Self {
        self.log_prefix = p.into();
        self
    }
    /// Adds networks to the allowlist.
    pub fn allow(mut self, nets: impl IntoIterator<Item = Net>) -> Self {
        self.allow.extend(nets);
        self
    }
    /// Forces (or forbids) the use of `DESTROY*` messages instead of probing.
    pub fn use_destroy(mut self, on: bool) -> Self {
        self.use_destroy = Some(on);
        self
    }

    /// Sets the hook (and optionally the priority) of the set layout's base chain.
    pub fn set_hook(mut self, hook: SetHook, priority: Option<i32>) -> Self {
        self.set_hook = hook;
        self.set_priority = priority;
        self
    }
    /// Sets a hard limit of entries per set (set layout).
    pub fn max_entries(mut self, n: u32) -> Self {
        self.max_entries = Some(n);
        self
    }
    /// Forces (or forbids) in-place timeout refresh instead of probing.
    pub fn refresh_timeouts(mut self, on: bool) -> Self {
        self.refresh_timeouts = Some(on);
        self
    }

    /// Forces (or forbids) growing sets in place by a new size instead of probing.
    pub fn resize_sets(mut self, on: bool) -> Self {
        self.resize_sets = Some(on);
        self
    }

    /// Checks names and lengths.
    pub fn validate(&self) -> Result<(), InputError> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        };
        if !name_ok(&self.chain) || self.chain.len() > 28 {
            return Err(InputError::BadConfig {
                what: "chain name",
                value: self.chain.clone(),
                reason: "use 1 to 28 letters, digits, '-', '_' or '.'",
            });
        }
        if matches!(
            self.chain.as_str(),
            "INPUT" | "OUTPUT" | "FORWARD" | "PREROUTING" | "POSTROUTING"
        ) {
            return Err(InputError::BadConfig {
                what: "chain name",
                value: self.chain.clone(),
                reason: "that is a built-in chain",
            });
        }
        if !name_ok(&self.table) || self.table.len() > 64 {
            return Err(InputError::BadConfig {
                what: "table name",
                value: self.table.clone(),
                reason: "use 1 to 64 letters, digits, '-', '_' or '.'",
            });
        }
        if self.max_entries == Some(0) {
            return Err(InputError::BadConfig {
                what: "max_entries",
                value: "0".to_owned(),
                reason: "a set must hold at least one entry",
            });
        }
        if self.log_prefix.len() > 29 || self.log_prefix.chars().any(char::is_control) {
            return Err(InputError::BadConfig {
                what: "log prefix",
                value: self.log_prefix.clone(),
                reason: "at most 29 bytes of printable text",
            });
        }
        Ok(())
    }
}
