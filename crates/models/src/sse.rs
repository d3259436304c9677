//! A Server-Sent Events decoder: bytes in, events (their name and data)
//! out.

/// Accumulates bytes and yields complete events.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
}

/// One event: its `event:` name, when it has one, and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let value = line.strip_prefix(name)?.strip_prefix(':')?;
    Some(value.strip_prefix(' ').unwrap_or(value))
}

impl SseDecoder {
    /// Feeds bytes; returns the data of every event completed by them (the
    /// `data:` lines of one event joined with `\n`). Comments and other
    /// fields are skipped.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.feed_events(bytes)
            .into_iter()
            .map(|e| e.data)
            .collect()
    }

    /// Feeds bytes; returns every event completed by them that has data,
    /// with its name.
    pub fn feed_events(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some((end, sep)) = find_boundary(&self.buffer) {
            let raw: Vec<u8> = self.buffer.drain(..end + sep).collect();
            let text = String::from_utf8_lossy(&raw[..end]);
            let mut event = None;
            let mut data: Vec<&str> = Vec::new();
            for line in text.lines() {
                if let Some(d) = field(line, "data") {
                    data.push(d);
                } else if let Some(name) = field(line, "event") {
                    event = Some(name.to_owned());
                }
            }
            if !data.is_empty() {
                events.push(SseEvent {
                    event,
                    data: data.join("\n"),
                });
            }
        }
        events
    }
}

/// The end of the first event and the length of its separator.
fn find_boundary(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_reads_are_reassembled() {
        let mut d = SseDecoder::default();
        assert!(d.feed(b"data: {\"a\"").is_empty());
        assert_eq!(
            d.feed(b":1}\n\n: comment\n\ndata: x\r\n\r\ndata: [DONE]\n\n"),
            vec!["{\"a\":1}", "x", "[DONE]"]
        );
        assert_eq!(
            d.feed(b"event: e\ndata: one\ndata: two\n\n"),
            vec!["one\ntwo"]
        );
    }

    #[test]
    fn event_names_are_kept() {
        let mut d = SseDecoder::default();
        assert_eq!(
            d.feed_events(b"event: ping\ndata: {}\n\ndata:x\n\n"),
            vec![
                SseEvent {
                    event: Some("ping".into()),
                    data: "{}".into()
                },
                SseEvent {
                    event: None,
                    data: "x".into()
                }
            ]
        );
    }
}
