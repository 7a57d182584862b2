//! A minimal reader (and writer) of the `text/event-stream` format, as the
//! HTML standard defines it for `EventSource`: lines end in LF, CR or CRLF;
//! `event`, `data` and `id` fields; comments (`:`) and `retry` ignored; a
//! blank line dispatches the event.
//!
//! Hand-written rather than a crate: the checker needs to see exactly which
//! fields each event carried (an `id` line or not), which the event-source
//! crates hide behind the browser's "last event id" bookkeeping, and the
//! whole format is fifty lines.

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The `event` field; `message` when the event named none.
    pub event: String,
    /// The `id` field of this very event, if it had one. (`EventSource`
    /// carries the last id over to later events; the checker needs to know
    /// whether the server sent one.)
    pub id: Option<String>,
    /// The `data` lines, joined with `\n`.
    pub data: String,
}

impl Event {
    /// The event in the wire format, ending with its blank line.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if self.event != "message" {
            out.push_str(&format!("event: {}\n", self.event));
        }
        if let Some(id) = &self.id {
            out.push_str(&format!("id: {id}\n"));
        }
        for line in self.data.split('\n') {
            out.push_str(&format!("data: {line}\n"));
        }
        out.push('\n');
        out
    }
}

/// Reads events out of a byte stream fed in arbitrary chunks.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// The previous byte was a CR: a LF right after it ends nothing more.
    after_cr: bool,
    event: Option<String>,
    id: Option<String>,
    data: Option<String>,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(ev) = self.line_done(&line) {
                        out.push(ev);
                    }
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(b);
                }
            }
        }
        out
    }

    fn line_done(&mut self, line: &[u8]) -> Option<Event> {
        if line.is_empty() {
            return self.dispatch();
        }
        let line = String::from_utf8_lossy(line);
        // A byte order mark may open the stream.
        let line = line.strip_prefix('\u{feff}').unwrap_or(&line);
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                // As the standard does it: each line and a LF, the last LF
                // dropped at dispatch.
                let data = self.data.get_or_insert_with(String::new);
                data.push_str(value);
                data.push('\n');
            }
            // The standard ignores an id containing NUL.
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<Event> {
        let event = self.event.take();
        let id = self.id.take();
        // The standard dispatches nothing for an event without data.
        let mut data = self.data.take()?;
        data.pop();
        Some(Event {
            event: event.filter(|e| !e.is_empty()).unwrap_or_else(|| "message".to_owned()),
            id,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_across_chunks_and_line_ends() {
        let mut p = Parser::new();
        let mut got = p.feed(b"event: state\r\nid: 7\r\ndata: {\"a\"");
        assert!(got.is_empty());
        got.extend(p.feed(b":1}\r\n\r\n: comment\n\nevent:ping\rdata:7\r\r"));
        got.extend(p.feed(b"data: x\ndata: y\n\n"));
        assert_eq!(
            got,
            vec![
                Event { event: "state".into(), id: Some("7".into()), data: "{\"a\":1}".into() },
                Event { event: "ping".into(), id: None, data: "7".into() },
                Event { event: "message".into(), id: None, data: "x\ny".into() },
            ]
        );
    }

    #[test]
    fn no_data_no_event_and_encode_round_trips() {
        let mut p = Parser::new();
        assert!(p.feed(b"event: state\nid: 3\n\n").is_empty());
        let ev = Event { event: "state".into(), id: Some("9".into()), data: "{}\n[]".into() };
        assert_eq!(p.feed(ev.encode().as_bytes()), vec![ev]);
    }
}
