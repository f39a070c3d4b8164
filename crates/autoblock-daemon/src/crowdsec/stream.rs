//! Reading a `/v1/decisions/stream` answer without holding it: a [`DeserializeSeed`] walks
//! the JSON object and hands every decision of its `deleted` and `new` arrays to a
//! [`Sink`] as soon as it is parsed, and [`convert`] turns one decision into what the
//! bouncer does with it.
//!
//! It owns the decision format (scope `Ip`/`Range`, type `ban`, Go durations, `::ffff:`
//! mapped addresses as IPv4). It does no I/O and does not touch the kernel: the bouncer
//! feeds the sink's output into the controller's bulk loader.

use std::fmt;
use std::time::SystemTime;

use autoblock::{Entry, Net};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::duration;

/// Which array of the answer a decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    /// `new`: decisions to enforce.
    New,
    /// `deleted`: decisions that ended (deleted or expired).
    Deleted,
}

/// One decision as the Local API sends it (fields the bouncer does not use are skipped).
#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct Decision {
    /// The decision's id in the Local API (0 when absent).
    #[serde(default)]
    pub id: i64,
    /// Remaining time, a Go duration (`3h59m58.1s`; negative once ended).
    #[serde(default)]
    pub duration: String,
    /// Where the decision comes from (`cscli`, `crowdsec`, `CAPI`, `lists:…`).
    #[serde(default)]
    pub origin: String,
    /// `Ip`, `Range`, or a scope a firewall cannot enforce (`Country`, `AS`, `Username`).
    #[serde(default)]
    pub scope: String,
    /// `ban`, `captcha`, …
    #[serde(default, rename = "type")]
    pub kind: String,
    /// The address or network.
    #[serde(default)]
    pub value: String,
}

/// What one decision means for the firewall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Block this entry (with its expiry).
    Block(Entry),
    /// Unblock this network.
    Unblock(Net),
    /// Nothing to do, and why (another type or scope, already expired).
    Ignore(&'static str),
    /// The decision cannot be enforced: the reason, with the offending text.
    Bad(String),
}

/// Longest comment kept on an element (the origin is shortened to fit).
const MAX_ORIGIN: usize = 48;

/// The network a decision's scope and value name, or why not.
fn net_of(d: &Decision) -> Result<Option<Net>, String> {
    if d.scope.eq_ignore_ascii_case("ip") {
        let net = Net::parse(&d.value, false).map_err(|e| e.to_string())?;
        if !net.is_host() {
            return Err(format!(
                "scope Ip holds a network {:?} (use scope Range)",
                d.value
            ));
        }
        Ok(Some(net))
    } else if d.scope.eq_ignore_ascii_case("range") {
        // A range with host bits set is enforced as the network it lies in.
        Net::parse(&d.value, true)
            .map(Some)
            .map_err(|e| e.to_string())
    } else {
        Ok(None)
    }
}

/// What the bouncer does with decision `d` of list `list`, read at `now`.
pub fn convert(list: List, d: &Decision, now: SystemTime) -> Action {
    if !d.kind.eq_ignore_ascii_case("ban") {
        return Action::Ignore("not a ban");
    }
    let net = match net_of(d) {
        Ok(Some(n)) => n,
        Ok(None) => return Action::Ignore("scope is neither Ip nor Range"),
        Err(e) => return Action::Bad(e),
    };
    if list == List::Deleted {
        return Action::Unblock(net);
    }
    let dur = match duration::parse(&d.duration) {
        Ok(g) => g,
        Err(e) => return Action::Bad(e),
    };
    let Some(left) = dur.remaining() else {
        return Action::Ignore("already expired");
    };
    let mut origin: String = d
        .origin
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ORIGIN)
        .collect();
    if origin.is_empty() {
        origin.push_str("unknown");
    }
    let mut e = Entry::new(net).with_comment(format!("crowdsec {origin}"));
    e.expires = Some(now + left);
    Action::Block(e)
}

/// Receives the decisions of an answer in document order.
pub trait Sink {
    /// Decision number `index` (1-based within its array) of `list`. An error stops the
    /// parse (the receiver went away).
    fn decision(&mut self, list: List, index: u64, d: Decision) -> Result<(), String>;

    /// The array `list` ended (it may have been `null` or missing: then this is not called).
    fn end_of(&mut self, list: List) -> Result<(), String>;
}

/// The [`DeserializeSeed`] of a whole stream answer: `{"deleted": [...], "new": [...]}`.
#[derive(Debug)]
pub struct StreamSeed<'a, S> {
    /// Where the decisions go.
    pub sink: &'a mut S,
}

impl<'de, S: Sink> DeserializeSeed<'de> for StreamSeed<'_, S> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for StreamSeed<'_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decisions stream object {\"deleted\": [...], \"new\": [...]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let list = match key.as_ref() {
                "new" => List::New,
                "deleted" => List::Deleted,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            map.next_value_seed(ListSeed {
                sink: &mut *self.sink,
                list,
            })?;
        }
        Ok(())
    }
}

/// One array (or `null`) of decisions.
struct ListSeed<'a, S> {
    sink: &'a mut S,
    list: List,
}

impl<'de, S: Sink> DeserializeSeed<'de> for ListSeed<'_, S> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for ListSeed<'_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of decisions or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0u64;
        while let Some(d) = seq.next_element::<Decision>()? {
            index += 1;
            self.sink
                .decision(self.list, index, d)
                .map_err(de::Error::custom)?;
        }
        self.sink.end_of(self.list).map_err(de::Error::custom)
    }
}

/// Parses a whole answer from `reader` into `sink`; the error names the position in the
/// body where the JSON went wrong.
pub fn parse<R: std::io::Read, S: Sink>(reader: R, sink: &mut S) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    StreamSeed { sink }.deserialize(&mut de)?;
    de.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Default)]
    struct Collect(Vec<(List, u64, Decision)>, Vec<List>);

    impl Sink for Collect {
        fn decision(&mut self, list: List, index: u64, d: Decision) -> Result<(), String> {
            self.0.push((list, index, d));
            Ok(())
        }
        fn end_of(&mut self, list: List) -> Result<(), String> {
            self.1.push(list);
            Ok(())
        }
    }

    fn dec(scope: &str, value: &str, duration: &str) -> Decision {
        Decision {
            id: 0,
            duration: duration.into(),
            origin: "cscli".into(),
            scope: scope.into(),
            kind: "ban".into(),
            value: value.into(),
        }
    }

    // An answer as recorded from crowdsec 1.4.6 (`startup=true` after one delete).
    const RECORDED: &str = r#"{"deleted":[{"duration":"-256.888669ms","id":1,"origin":"cscli","scenario":"manual 'ban' from 'tester'","scope":"Ip","type":"ban","value":"192.0.2.7"}],"new":[{"duration":"1h29m53.276039218s","id":2,"origin":"cscli","scenario":"manual 'ban' from 'tester'","scope":"Range","type":"ban","value":"198.51.100.0/24"},{"duration":"3h59m53.276036814s","id":3,"origin":"cscli","scenario":"manual 'ban' from 'tester'","scope":"Ip","type":"ban","value":"::ffff:203.0.113.9"},{"duration":"3h59m54.276036033s","id":4,"origin":"cscli","scenario":"manual 'ban' from 'tester'","scope":"Ip","type":"ban","value":"2001:db8::5"}]}"#;

    #[test]
    fn recorded_answer_in_document_order() {
        let mut c = Collect::default();
        parse(RECORDED.as_bytes(), &mut c).unwrap();
        assert_eq!(c.1, vec![List::Deleted, List::New]);
        let got: Vec<(List, u64, &str)> =
            c.0.iter()
                .map(|(l, i, d)| (*l, *i, d.value.as_str()))
                .collect();
        assert_eq!(
            got,
            vec![
                (List::Deleted, 1, "192.0.2.7"),
                (List::New, 1, "198.51.100.0/24"),
                (List::New, 2, "::ffff:203.0.113.9"),
                (List::New, 3, "2001:db8::5"),
            ]
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let Action::Block(e) = convert(List::New, &c.0[2].2, now) else {
            panic!("not a block");
        };
        assert_eq!(e.net, Net::parse("203.0.113.9", false).unwrap());
        assert_eq!(
            e.expires,
            Some(now + Duration::new(3 * 3600 + 59 * 60 + 53, 276_036_814))
        );
        assert_eq!(e.comment.as_deref(), Some("crowdsec cscli"));
        let Action::Block(e) = convert(List::New, &c.0[1].2, now) else {
            panic!("not a block");
        };
        assert_eq!(e.net.to_string(), "198.51.100.0/24");
        assert_eq!(
            convert(List::Deleted, &c.0[0].2, now),
            Action::Unblock(Net::parse("192.0.2.7", false).unwrap())
        );
    }

    #[test]
    fn nulls_and_unknown_keys() {
        let mut c = Collect::default();
        parse(
            r#"{"deleted":null,"new":null,"extra":{"a":[1,2]}}"#.as_bytes(),
            &mut c,
        )
        .unwrap();
        assert!(c.0.is_empty());
        assert!(c.1.is_empty());
        let mut c = Collect::default();
        parse(r#"{}"#.as_bytes(), &mut c).unwrap();
        assert!(c.0.is_empty());
    }

    #[test]
    fn broken_json_names_the_position() {
        let mut c = Collect::default();
        let e = parse(
            r#"{"new":[{"value":"192.0.2.1","scope":"Ip"},{"value":"#.as_bytes(),
            &mut c,
        )
        .unwrap_err();
        assert_eq!(
            c.0.len(),
            1,
            "the first decision was delivered before the error"
        );
        assert!(e.to_string().contains("line 1 column"), "{e}");
        let e = parse(r#"[1]"#.as_bytes(), &mut c).unwrap_err();
        assert!(e.to_string().contains("decisions stream object"), "{e}");
        assert!(parse(r#"{} x"#.as_bytes(), &mut c).is_err());
    }

    #[test]
    fn sink_error_stops_the_parse() {
        struct Stop;
        impl Sink for Stop {
            fn decision(&mut self, _: List, _: u64, _: Decision) -> Result<(), String> {
                Err("receiver gone".into())
            }
            fn end_of(&mut self, _: List) -> Result<(), String> {
                Ok(())
            }
        }
        let e = parse(r#"{"new":[{"value":"x"}]}"#.as_bytes(), &mut Stop).unwrap_err();
        assert!(e.to_string().contains("receiver gone"), "{e}");
    }

    #[test]
    fn conversions() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            convert(List::New, &dec("Ip", "192.0.2.1", "-1s"), now),
            Action::Ignore("already expired")
        );
        let mut captcha = dec("Ip", "192.0.2.1", "1h");
        captcha.kind = "captcha".into();
        assert_eq!(
            convert(List::New, &captcha, now),
            Action::Ignore("not a ban")
        );
        assert_eq!(
            convert(List::New, &dec("Country", "FR", "1h"), now),
            Action::Ignore("scope is neither Ip nor Range")
        );
        let Action::Bad(e) = convert(List::New, &dec("Ip", "192.0.2.0/24", "1h"), now) else {
            panic!("accepted a network in scope Ip");
        };
        assert!(e.contains("192.0.2.0/24"), "{e}");
        let Action::Bad(e) = convert(List::New, &dec("Ip", "not-an-ip", "1h"), now) else {
            panic!("accepted garbage");
        };
        assert!(e.contains("not-an-ip"), "{e}");
        let Action::Bad(e) = convert(List::New, &dec("Ip", "192.0.2.1", "1 hour"), now) else {
            panic!("accepted a bad duration");
        };
        assert!(e.contains("1 hour"), "{e}");
        // Ranges keep their prefix; host bits are masked; mapped ranges become IPv4.
        let Action::Block(e) = convert(List::New, &dec("range", "10.1.2.3/16", "1h"), now) else {
            panic!("range refused");
        };
        assert_eq!(e.net.to_string(), "10.1.0.0/16");
        let Action::Block(e) = convert(List::New, &dec("Range", "2001:db8::/48", "1h"), now) else {
            panic!("range refused");
        };
        assert_eq!(e.net.to_string(), "2001:db8::/48");
        let mut weird = dec("Ip", "192.0.2.1", "1h");
        weird.origin = "li\nst".into();
        let Action::Block(e) = convert(List::New, &weird, now) else {
            panic!("refused");
        };
        assert_eq!(e.comment.as_deref(), Some("crowdsec list"));
    }
}
