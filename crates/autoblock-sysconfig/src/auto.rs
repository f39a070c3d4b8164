//! autoblock's part of the `*filter` section: the rule type
//! ([`AutoRule`]), how `iptables-save` prints such a rule
//! ([`render_rule`]), reading the rules back, and the minimal edit that
//! makes a file hold exactly a given list of them
//! ([`RulesetFile::set_auto_chain`], [`RulesetFile::remove_auto_chain`]).
//!
//! Layout maintained (as `iptables-save` prints it from the kernel):
//!
//! ```text
//! *filter
//! :INPUT ACCEPT [0:0]
//! ...
//! :INPUT-AUTO - [0:0]              <- declaration
//! -A INPUT -j INPUT-AUTO           <- jump, the first `-A INPUT` line
//! -A INPUT ...                     <- other people's rules, untouched
//! -A INPUT-AUTO -s 192.0.2.9/32 -m comment --comment "..." -j DROP
//! COMMIT
//! ```
//!
//! Only the last `*filter` section is edited: `iptables-restore` replaces
//! the whole table at each `*filter` line, so only the last one survives a
//! restore. Lines of other tables and sections are never touched. This
//! module does no I/O.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use crate::addr::canonical_source;
use crate::error::{ChainNameProblem, ModelError};
use crate::lex::{save_string, Counters, LineEnding};
use crate::model::{check_chain_name, is_any_builtin, Line, LineKind, RulesetFile};

/// Longest comment iptables stores (`XT_MAX_COMMENT_LEN` 256 with the
/// NUL); `iptables` silently cuts longer ones, so they are refused here.
pub const MAX_COMMENT_LEN: usize = 255;

/// Longest `--log-prefix` (29 bytes plus NUL); longer ones are cut by
/// `iptables`, so they are refused here.
pub const MAX_LOG_PREFIX_LEN: usize = 29;

/// Address family: which file and which ICMP reject type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4: `/etc/sysconfig/iptables`, `icmp-port-unreachable`.
    V4,
    /// IPv6: `/etc/sysconfig/ip6tables`, `icmp6-port-unreachable`.
    V6,
}

impl Family {
    /// File name in the sysconfig directory: `iptables` or `ip6tables`.
    pub fn file_name(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    /// What `REJECT` without options rejects with in this family.
    pub fn default_reject_with(self) -> &'static str {
        match self {
            Family::V4 => "icmp-port-unreachable",
            Family::V6 => "icmp6-port-unreachable",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// What a rule of autoblock's chain does with a matching packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AutoTarget {
    /// `-j DROP`.
    Drop,
    /// `-j REJECT --reject-with icmp-port-unreachable` (IPv4) or
    /// `icmp6-port-unreachable` (IPv6).
    Reject,
    /// `-j LOG --log-prefix PREFIX` (no `--log-prefix` when empty).
    Log {
        /// At most [`MAX_LOG_PREFIX_LEN`] bytes, no control characters.
        prefix: String,
    },
}

/// What [`RulesetFile::auto_jump`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AutoJump {
    /// `:CHAIN - [p:b]` is in the section.
    pub declared: bool,
    /// `-A INPUT -j CHAIN` (or `-I`) is in the section.
    pub jump: bool,
    /// The jump is the first rule of `INPUT` after a restore.
    pub jump_first: bool,
}

/// One rule of autoblock's chain as `iptables-save` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AutoRule {
    /// Address or prefix: `192.0.2.9/32`, `2001:db8::/48`. A bare address
    /// means a full-length prefix. Printed canonically (host bits cleared,
    /// IPv6 as `inet_ntop` writes it), so pass the canonical form if the
    /// value must read back unchanged.
    pub source: String,
    /// Comment (autoblock puts the expiry here); at most
    /// [`MAX_COMMENT_LEN`] bytes, no NUL, CR or LF.
    pub comment: Option<String>,
    /// What happens to matching packets.
    pub target: AutoTarget,
}

impl AutoRule {
    /// The rule as it reads back from a file after being written: the
    /// source in canonical form (`192.0.2.9` becomes `192.0.2.9/32`,
    /// `10.1.2.3/8` becomes `10.0.0.0/8`, a /0 prefix `0.0.0.0/0` or
    /// `::/0`). Errors like [`render_rule`] for values that cannot be
    /// stored.
    ///
    /// ```
    /// use autoblock_sysconfig::{AutoRule, AutoTarget, Family};
    ///
    /// let rule = AutoRule { source: "2001:DB8::1/48".into(), comment: None, target: AutoTarget::Drop };
    /// assert_eq!(rule.canonical(Family::V6)?.source, "2001:db8::/48");
    /// # Ok::<(), autoblock_sysconfig::ModelError>(())
    /// ```
    pub fn canonical(&self, family: Family) -> Result<AutoRule, ModelError> {
        // Validates comment and prefix as well.
        rule_words("X", family, self)?;
        let source = canonical_source(&self.source, family)
            .map_err(|reason| ModelError::InvalidSource {
                address: self.source.clone(),
                family,
                reason,
            })?
            .unwrap_or_else(|| any_source(family).to_owned());
        Ok(AutoRule {
            source,
            ..self.clone()
        })
    }
}

/// The source of a rule without `-s`.
fn any_source(family: Family) -> &'static str {
    match family {
        Family::V4 => "0.0.0.0/0",
        Family::V6 => "::/0",
    }
}

/// One word of a rendered rule and whether it goes through
/// `xtables_save_string` quoting.
type Word = (String, bool);

fn rule_words(chain: &str, family: Family, rule: &AutoRule) -> Result<Vec<Word>, ModelError> {
    check_auto_chain(chain)?;
    let mut w: Vec<Word> = vec![("-A".into(), false), (chain.into(), false)];
    let source =
        canonical_source(&rule.source, family).map_err(|reason| ModelError::InvalidSource {
            address: rule.source.clone(),
            family,
            reason,
        })?;
    if let Some(source) = source {
        w.push(("-s".into(), false));
        w.push((source, false));
    }
    if let Some(comment) = &rule.comment {
        let bad = |reason| ModelError::InvalidComment {
            comment: comment.clone(),
            reason,
        };
        if comment.len() > MAX_COMMENT_LEN {
            return Err(bad("longer than 255 bytes"));
        }
        if has_line_breaking_char(comment) {
            return Err(bad("contains NUL, CR or LF"));
        }
        for s in ["-m", "comment", "--comment"] {
            w.push((s.into(), false));
        }
        w.push((comment.clone(), true));
    }
    w.push(("-j".into(), false));
    match &rule.target {
        AutoTarget::Drop => w.push(("DROP".into(), false)),
        AutoTarget::Reject => {
            w.push(("REJECT".into(), false));
            w.push(("--reject-with".into(), false));
            w.push((family.default_reject_with().into(), false));
        }
        AutoTarget::Log { prefix } => {
            let bad = |reason| ModelError::InvalidLogPrefix {
                prefix: prefix.clone(),
                reason,
            };
            if prefix.len() > MAX_LOG_PREFIX_LEN {
                return Err(bad("longer than 29 bytes"));
            }
            if has_line_breaking_char(prefix) {
                return Err(bad("contains NUL, CR or LF"));
            }
            w.push(("LOG".into(), false));
            if !prefix.is_empty() {
                w.push(("--log-prefix".into(), false));
                w.push((prefix.clone(), true));
            }
        }
    }
    Ok(w)
}

fn has_line_breaking_char(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, 0 | b'\n' | b'\r'))
}

fn join_words(words: &[Word]) -> String {
    let mut out = String::new();
    for (i, (w, quoted)) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if *quoted {
            out.push_str(&save_string(w));
        } else {
            out.push_str(w);
        }
    }
    out
}

/// The line `iptables-save` (iptables-nft 1.8.x) prints for `rule` in
/// `chain`, without counters, e.g.
///
/// ```
/// use autoblock_sysconfig::{render_rule, AutoRule, AutoTarget, Family};
///
/// let rule = AutoRule {
///     source: "192.0.2.9/32".into(),
///     comment: Some("ssh brute force".into()),
///     target: AutoTarget::Drop,
/// };
/// assert_eq!(
///     render_rule("INPUT-AUTO", Family::V4, &rule)?,
///     r#"-A INPUT-AUTO -s 192.0.2.9/32 -m comment --comment "ssh brute force" -j DROP"#
/// );
/// let log = AutoRule {
///     source: "10.0.0.0/8".into(),
///     comment: None,
///     target: AutoTarget::Log { prefix: "autoblock: ".into() },
/// };
/// assert_eq!(
///     render_rule("INPUT-AUTO", Family::V4, &log)?,
///     r#"-A INPUT-AUTO -s 10.0.0.0/8 -j LOG --log-prefix "autoblock: ""#
/// );
/// # Ok::<(), autoblock_sysconfig::ModelError>(())
/// ```
///
/// Errors if the chain name, source, comment or prefix cannot be stored.
pub fn render_rule(chain: &str, family: Family, rule: &AutoRule) -> Result<String, ModelError> {
    Ok(join_words(&rule_words(chain, family, rule)?))
}

/// Checks that `chain` can be autoblock's chain: a valid user-chain name
/// that is not a built-in chain of any table.
pub fn check_auto_chain(chain: &str) -> Result<(), ModelError> {
    let invalid = |reason| ModelError::InvalidChainName {
        name: chain.to_owned(),
        reason,
    };
    check_chain_name(chain).map_err(invalid)?;
    if is_any_builtin(chain) {
        return Err(invalid(ChainNameProblem::BuiltinName));
    }
    Ok(())
}

/// Which of autoblock's lines a line is.
#[derive(Debug, PartialEq, Eq)]
enum Ours {
    Declaration,
    Jump,
    Rule,
    No,
}

fn is(word: &[u8], names: &[&str]) -> bool {
    names.iter().any(|n| n.as_bytes() == word)
}

fn classify(line: &Line, chain: &str) -> Ours {
    match line.kind() {
        LineKind::Chain { name, .. } if name == chain => Ours::Declaration,
        LineKind::Command { words }
            if words.len() == 2
                && is(&words[0], &["-N", "--new-chain"])
                && words[1] == chain.as_bytes() =>
        {
            Ours::Declaration
        }
        LineKind::Rule { chain: c, .. } if c == chain => Ours::Rule,
        LineKind::Rule {
            chain: c, words, ..
        } if c == "INPUT"
            && words.len() == 4
            && is(&words[0], &["-A", "--append", "-I", "--insert"])
            && is(&words[2], &["-j", "--jump"])
            && words[3] == chain.as_bytes() =>
        {
            Ours::Jump
        }
        _ => Ours::No,
    }
}

/// True if a line (other than autoblock's own) names `chain` as a jump or
/// goto target or as the chain of a command.
fn references(line: &Line, chain: &str) -> bool {
    let words = match line.kind() {
        LineKind::Rule { words, .. } | LineKind::Command { words } => words,
        _ => return false,
    };
    let c = chain.as_bytes();
    words.get(1).is_some_and(|w| w == c)
        || words
            .windows(2)
            .any(|p| is(&p[0], &["-j", "--jump", "-g", "--goto"]) && p[1] == c)
}

fn new_line(text: String, ending: LineEnding, kind: LineKind) -> Line {
    Line::new(text.into_bytes(), ending, kind)
}

impl RulesetFile {
    /// Index range (`*filter` line, `COMMIT` line) of the last `*filter`
    /// section.
    fn last_filter(&self) -> Option<(usize, usize)> {
        self.sections()
            .into_iter()
            .filter(|(t, _, _)| *t == "filter")
            .map(|(_, s, e)| (s, e))
            .next_back()
    }

    /// Appends `*filter` with the three built-in chains (policy ACCEPT) and
    /// `COMMIT`, giving the last line a line ending if it has none.
    fn append_filter(&mut self) -> (usize, usize) {
        let ending = self.preferred_ending();
        if let Some(last) = self.lines.last_mut() {
            if last.ending() == LineEnding::None {
                // A last line ending in CR becomes a CR LF line once a LF
                // follows; say so in the model, or it would read back
                // differently from what it is.
                if last.strip_trailing_cr() {
                    last.set_ending(LineEnding::CrLf);
                } else {
                    last.set_ending(ending);
                }
            }
        }
        let start = self.lines.len();
        self.lines.push(new_line(
            "*filter".into(),
            ending,
            LineKind::Table {
                name: "filter".into(),
            },
        ));
        for chain in ["INPUT", "FORWARD", "OUTPUT"] {
            self.lines.push(new_line(
                format!(":{chain} ACCEPT [0:0]"),
                ending,
                LineKind::Chain {
                    name: chain.into(),
                    policy: Some("ACCEPT".into()),
                    counters: Some(Counters::default()),
                },
            ));
        }
        self.lines
            .push(new_line("COMMIT".into(), ending, LineKind::Commit));
        (start, self.lines.len() - 1)
    }

    /// Where autoblock's chain stands in the last `*filter` section: whether
    /// it is declared, and whether the jump `-A INPUT -j CHAIN` exists and is
    /// the rule a restore puts first in `INPUT` (the first `-A INPUT` line,
    /// or the last `-I INPUT` line when there are any).
    pub fn auto_jump(&self, chain: &str) -> AutoJump {
        let mut out = AutoJump::default();
        let Some((start, end)) = self.last_filter() else {
            return out;
        };
        let mut first_append: Option<bool> = None;
        let mut last_insert: Option<bool> = None;
        for line in &self.lines[start..=end] {
            match line.kind() {
                LineKind::Chain { name, .. } if name == chain => out.declared = true,
                LineKind::Rule {
                    chain: c, words, ..
                } if c == "INPUT" => {
                    let is_jump =
                        words.len() == 4 && words[2] == b"-j" && words[3] == chain.as_bytes();
                    out.jump |= is_jump;
                    if words.first().map(Vec::as_slice) == Some(b"-I") {
                        last_insert = Some(is_jump);
                    } else if first_append.is_none() {
                        first_append = Some(is_jump);
                    }
                }
                _ => {}
            }
        }
        out.jump_first = last_insert.or(first_append).unwrap_or(false);
        out
    }

    /// Reads back autoblock's rules: the `-A CHAIN` lines of the last
    /// `*filter` section, in order. Empty if there is no such section or
    /// chain. A line of another shape (someone edited the chain by hand)
    /// is an error naming the line.
    pub fn auto_rules(&self, chain: &str, family: Family) -> Result<Vec<AutoRule>, ModelError> {
        let Some((start, end)) = self.last_filter() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (i, line) in self.lines[start..=end].iter().enumerate() {
            if let LineKind::Rule {
                chain: c, words, ..
            } = line.kind()
            {
                if c == chain {
                    let rule = parse_auto_rule(words, family)
                        .ok_or_else(|| ModelError::foreign(start + i + 1, chain, line.text()))?;
                    out.push(rule);
                }
            }
        }
        Ok(out)
    }

    /// Makes the last `*filter` section hold autoblock's chain with exactly
    /// `rules` (in order):
    ///
    /// - the declaration `:CHAIN - [0:0]` (an existing one is kept as it
    ///   is, unless it comes after the first `-A INPUT` line);
    /// - the jump `-A INPUT -j CHAIN` as the first `-A INPUT` line (an
    ///   existing jump line is reused with its counters; duplicates go).
    ///   In a hand-written file with `-I INPUT` lines, which restore puts
    ///   at the head of INPUT, the jump is `-I INPUT -j CHAIN` after the
    ///   last of them instead, so that it still ends up first;
    /// - the rules where the chain's rules were, else before `COMMIT`.
    ///   Lines of rules that stay are reused byte for byte (counters kept).
    ///
    /// Every other line keeps its bytes and order. Without a `*filter`
    /// section one is appended (`INPUT`, `FORWARD`, `OUTPUT` policy
    /// ACCEPT). Validates all rules before changing anything.
    pub fn set_auto_chain(
        &mut self,
        chain: &str,
        family: Family,
        rules: &[AutoRule],
    ) -> Result<(), ModelError> {
        check_auto_chain(chain)?;
        let rendered = rules
            .iter()
            .map(|r| rule_words(chain, family, r))
            .collect::<Result<Vec<_>, _>>()?;
        let (start, end) = match self.last_filter() {
            Some(range) => range,
            None => self.append_filter(),
        };
        let ending = self.preferred_ending();
        let section: Vec<Line> = self.lines.drain(start..=end).collect();
        let edited = edit_section(section, chain, &rendered, ending);
        self.lines.splice(start..start, edited);
        Ok(())
    }

    /// Removes the jump and the chain's rules from the last `*filter`
    /// section, and the declaration too unless another line still refers
    /// to the chain (removing it would make the file fail to restore).
    /// Nothing else changes.
    pub fn remove_auto_chain(&mut self, chain: &str) {
        let Some((start, end)) = self.last_filter() else {
            return;
        };
        let section: Vec<Line> = self.lines.drain(start..=end).collect();
        let mut kept: Vec<Line> = section
            .into_iter()
            .filter(|l| !matches!(classify(l, chain), Ours::Jump | Ours::Rule))
            .collect();
        let referenced = kept
            .iter()
            .any(|l| classify(l, chain) == Ours::No && references(l, chain));
        if !referenced {
            kept.retain(|l| classify(l, chain) != Ours::Declaration);
        }
        self.lines.splice(start..start, kept);
    }
}

/// The edit behind [`RulesetFile::set_auto_chain`] on one section
/// (`*filter` .. `COMMIT`, both included).
fn edit_section(
    section: Vec<Line>,
    chain: &str,
    rules: &[Vec<Word>],
    ending: LineEnding,
) -> Vec<Line> {
    // Take autoblock's lines out; remember where they were, counted in
    // lines of `rest`.
    let mut rest: Vec<Line> = Vec::with_capacity(section.len() + rules.len() + 2);
    let mut decl: Option<(usize, Line)> = None;
    let mut jump: Option<Line> = None;
    let mut rules_at: Option<usize> = None;
    let mut old: HashMap<Vec<u8>, VecDeque<Line>> = HashMap::new();
    for line in section {
        match classify(&line, chain) {
            Ours::Declaration => {
                if decl.is_none() {
                    decl = Some((rest.len(), line));
                }
            }
            Ours::Jump => {
                if jump.is_none() {
                    jump = Some(line);
                }
            }
            Ours::Rule => {
                rules_at.get_or_insert(rest.len());
                old.entry(line.rule_text_without_counters().to_vec())
                    .or_default()
                    .push_back(line);
            }
            Ours::No => rest.push(line),
        }
    }

    let first_rule = rest
        .iter()
        .position(|l| matches!(l.kind(), LineKind::Rule { .. } | LineKind::Command { .. }))
        .unwrap_or(rest.len());
    let first_input = rest
        .iter()
        .position(|l| matches!(l.kind(), LineKind::Rule { chain, .. } if chain == "INPUT"));
    // After the last chain declaration that precedes all rules, else right
    // after the `*filter` line.
    let decl_block_end = rest[..first_rule]
        .iter()
        .rposition(|l| matches!(l.kind(), LineKind::Chain { .. }))
        .map_or(1, |i| i + 1);
    // `-I INPUT` lines (hand-written files) insert at the head of INPUT
    // when restored, in file order, so an `-A` jump would not be first:
    // then the jump is itself an `-I INPUT` line after the last of them.
    let last_insert = rest.iter().rposition(|l| {
        matches!(l.kind(), LineKind::Rule { chain, words, .. }
            if chain == "INPUT" && is(&words[0], &["-I", "--insert"]))
    });
    let limit = first_input.unwrap_or(usize::MAX);
    let decl_at = match &decl {
        Some((at, _)) if *at <= limit => *at,
        _ => decl_block_end.min(limit),
    };
    let jump_at = match (last_insert, first_input) {
        (Some(i), _) => i + 1,
        (None, Some(i)) => i,
        (None, None) => decl_block_end.max(decl_at),
    };
    let commit_at = rest.len().saturating_sub(1);
    let rules_at = rules_at.map_or(commit_at, |at| at.max(decl_at));

    let decl_line = decl.map(|(_, l)| l).unwrap_or_else(|| {
        new_line(
            format!(":{chain} - [0:0]"),
            ending,
            LineKind::Chain {
                name: chain.into(),
                policy: None,
                counters: Some(Counters::default()),
            },
        )
    });
    let command = if last_insert.is_some() { "-I" } else { "-A" };
    let jump_line = jump
        .filter(|l| match l.kind() {
            LineKind::Rule { words, .. } => {
                is(&words[0], &["-I", "--insert"]) == last_insert.is_some()
            }
            _ => false,
        })
        .unwrap_or_else(|| {
            new_line(
                format!("{command} INPUT -j {chain}"),
                ending,
                LineKind::Rule {
                    chain: "INPUT".into(),
                    counters: None,
                    words: [command, "INPUT", "-j", chain]
                        .iter()
                        .map(|w| w.as_bytes().to_vec())
                        .collect(),
                },
            )
        });
    let rule_lines: Vec<Line> = rules
        .iter()
        .map(|words| {
            let text = join_words(words);
            match old.get_mut(text.as_bytes()).and_then(VecDeque::pop_front) {
                Some(line) => line,
                None => new_line(
                    text,
                    ending,
                    LineKind::Rule {
                        chain: chain.into(),
                        counters: None,
                        words: words.iter().map(|(w, _)| w.as_bytes().to_vec()).collect(),
                    },
                ),
            }
        })
        .collect();

    // Merge: at each position of `rest`, first the declaration, then the
    // jump, then the rules, then the `rest` line itself.
    let mut inserts: Vec<(usize, u8, Vec<Line>)> = vec![
        (decl_at, 0, vec![decl_line]),
        (jump_at, 1, vec![jump_line]),
        (rules_at, 2, rule_lines),
    ];
    inserts.sort_by_key(|(at, order, _)| (*at, *order));
    let mut out = Vec::with_capacity(rest.len() + 2 + rules.len());
    let mut inserts = inserts.into_iter().peekable();
    for (i, line) in rest.into_iter().enumerate() {
        while let Some((_, _, lines)) = inserts.next_if(|(at, _, _)| *at <= i) {
            out.extend(lines);
        }
        out.push(line);
    }
    for (_, _, lines) in inserts {
        out.extend(lines);
    }
    out
}

/// Reads a rule of the shape [`render_rule`] produces; `None` for anything
/// else.
fn parse_auto_rule(words: &[Vec<u8>], family: Family) -> Option<AutoRule> {
    let text = |w: &Vec<u8>| String::from_utf8(w.clone()).ok();
    let mut w = words.iter().skip(2).peekable();
    if !is(words.first()?, &["-A", "--append"]) {
        return None;
    }
    let mut source = any_source(family).to_owned();
    if w.next_if(|x| is(x, &["-s", "--source", "--src"])).is_some() {
        source = text(w.next()?)?;
    }
    let mut comment = None;
    if w.next_if(|x| is(x, &["-m", "--match"])).is_some() {
        if !is(w.next()?, &["comment"]) || !is(w.next()?, &["--comment"]) {
            return None;
        }
        comment = Some(text(w.next()?)?);
    }
    if !is(w.next()?, &["-j", "--jump"]) {
        return None;
    }
    let target = match w.next()?.as_slice() {
        b"DROP" => AutoTarget::Drop,
        b"REJECT" => {
            if w.next_if(|x| is(x, &["--reject-with"])).is_some()
                && !is(w.next()?, &[family.default_reject_with()])
            {
                return None;
            }
            AutoTarget::Reject
        }
        b"LOG" => {
            let mut prefix = String::new();
            if w.next_if(|x| is(x, &["--log-prefix"])).is_some() {
                prefix = text(w.next()?)?;
            }
            AutoTarget::Log { prefix }
        }
        _ => return None,
    };
    if w.next().is_some() {
        return None;
    }
    Some(AutoRule {
        source,
        comment,
        target,
    })
}
