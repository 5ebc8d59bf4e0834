//! The YAML parser's events, with its scanner kept from reading more than
//! [`MAX_FLOW_AHEAD`] flow indicators (`,` `[` `]` `{` `}`) ahead of the last event.
//! saphyr scans a flow collection ahead of the events it has returned and keeps what it
//! scanned: a 1 MiB `[[a,a,...]]` costs hundreds of MB before the first event a caller
//! could count. Past the cap the input ends there, and [`Events::cut`] says so; the
//! caller refuses the document.
//!
//! One guard for both readers of YAML that must stay within their memory whatever they
//! are given: the buildpack's manifest (supply, package) and the sidecar's config
//! (config-server), which share nothing else.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

use saphyr_parser::{BufferedInput, Event, Marker, Parser, ScanError, Span};
use std::cell::Cell;
use std::rc::Rc;

/// Most flow indicators the scanner may read ahead of the last event.
pub const MAX_FLOW_AHEAD: usize = 8192;

/// The events of one text, guarded.
pub struct Events<'a> {
    parser: Parser<'a, BufferedInput<Guarded<'a>>>,
    ahead: Rc<Cell<Option<usize>>>,
    last: Marker,
}

/// Characters for the scanner, counting flow indicators in `ahead`; `None` once the
/// input was cut.
struct Guarded<'a> {
    chars: std::str::Chars<'a>,
    ahead: Rc<Cell<Option<usize>>>,
}

impl Iterator for Guarded<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let ahead = self.ahead.get()?;
        let c = self.chars.next()?;
        if matches!(c, ',' | '[' | ']' | '{' | '}') {
            if ahead >= MAX_FLOW_AHEAD {
                self.ahead.set(None);
                return None;
            }
            self.ahead.set(Some(ahead + 1));
        }
        Some(c)
    }
}

impl<'a> Events<'a> {
    /// The events of `text`.
    #[must_use]
    pub fn new(text: &'a str) -> Self {
        let ahead = Rc::new(Cell::new(Some(0)));
        let chars = Guarded {
            chars: text.chars(),
            ahead: Rc::clone(&ahead),
        };
        Events {
            parser: Parser::new_from_iter(chars),
            ahead,
            last: Marker::new(0, 1, 0),
        }
    }

    /// Whether the input was cut short: the document holds more than
    /// [`MAX_FLOW_AHEAD`] flow indicators before its next event.
    #[must_use]
    pub fn cut(&self) -> bool {
        self.ahead.get().is_none()
    }

    /// Where the last event ended.
    #[must_use]
    pub fn last_end(&self) -> Marker {
        self.last
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<(Event<'a>, Span), ScanError>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.parser.next()?;
        if let Ok((_, span)) = &next {
            self.last = span.end;
            if !self.cut() {
                self.ahead.set(Some(0));
            }
        }
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(commas: usize) -> String {
        format!("x: [[{}a]]\n", "a,".repeat(commas))
    }

    /// Reads `events` to the end of the stream (saphyr repeats `StreamEnd`), or to the
    /// first error; true if no error came.
    fn read_all(events: &mut Events<'_>) -> bool {
        for e in events {
            match e {
                Ok((Event::StreamEnd, _)) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        true
    }

    #[test]
    fn a_long_flow_collection_is_cut_at_the_cap_and_says_so() {
        let (short, long) = (nested(MAX_FLOW_AHEAD - 4), nested(MAX_FLOW_AHEAD + 100));
        let mut under = Events::new(&short);
        assert!(read_all(&mut under));
        assert!(!under.cut());
        let mut over = Events::new(&long);
        read_all(&mut over);
        assert!(over.cut());
        assert_eq!(over.last_end().line(), 1, "the last event before the cut");
    }

    #[test]
    fn block_collections_never_count() {
        let text = "a:\n".to_string() + &"- b\n".repeat(3 * MAX_FLOW_AHEAD);
        let mut events = Events::new(&text);
        assert!(read_all(&mut events));
        assert!(!events.cut());
    }
}
