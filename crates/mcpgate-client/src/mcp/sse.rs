//! An incremental `text/event-stream` parser (WHATWG HTML "Server-sent events", §9.2.6), as
//! MCP Streamable HTTP uses it: `data` lines joined by `\n`, `id` kept as the last event id
//! (even on events without data, such as MCP's priming event), `retry` as the reconnection
//! delay in milliseconds, comments ignored. Lines end in `\n`, `\r\n` or `\r`.

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `id`, if the event set one.
    pub id: Option<String>,
    /// `event` type (`message` when absent).
    pub event: Option<String>,
    /// The joined `data` lines.
    pub data: String,
    /// `retry`, in milliseconds.
    pub retry: Option<u64>,
}

/// Feeds bytes in, takes events out. Bounded: a single event larger than `max_event` bytes is
/// an error (a server cannot make the client buffer without limit).
#[derive(Debug)]
pub struct SseParser {
    buf: Vec<u8>,
    current: SseEvent,
    has_data: bool,
    has_fields: bool,
    pending_cr: bool,
    max_event: usize,
}

/// The event exceeded the size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("server-sent event larger than {0} bytes")]
pub struct SseTooLarge(pub usize);

impl SseParser {
    /// A parser that refuses events over `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        Self {
            buf: Vec::new(),
            current: SseEvent::default(),
            has_data: false,
            has_fields: false,
            pending_cr: false,
            max_event,
        }
    }

    /// Consumes `chunk` and returns every event it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseTooLarge> {
        let mut out = Vec::new();
        for &b in chunk {
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.pending_cr = b == b'\r';
                    let line = std::mem::take(&mut self.buf);
                    if let Some(event) = self.line(&line) {
                        out.push(event);
                    }
                }
                _ => {
                    self.buf.push(b);
                    if self.buf.len() + self.current.data.len() > self.max_event {
                        return Err(SseTooLarge(self.max_event));
                    }
                }
            }
        }
        Ok(out)
    }

    fn line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            if !self.has_fields {
                return None;
            }
            let mut event = std::mem::take(&mut self.current);
            self.has_fields = false;
            if self.has_data {
                // The spec strips one trailing LF added by joining.
                if event.data.ends_with('\n') {
                    event.data.pop();
                }
            }
            self.has_data = false;
            return Some(event);
        }
        if line[0] == b':' {
            return None;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
            None => (text.into_owned(), String::new()),
        };
        self.has_fields = true;
        match field.as_str() {
            "data" => {
                self.current.data.push_str(&value);
                self.current.data.push('\n');
                self.has_data = true;
            }
            "event" => self.current.event = Some(value),
            "id" if !value.contains('\0') => self.current.id = Some(value),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.current.retry = value.parse().ok();
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mcp_style_streams() {
        let mut p = SseParser::new(1 << 20);
        let events = p
            .feed(b"id: event-1\nretry: 500\ndata: \n\nevent: message\nid: e2\ndata: {\"a\":1}\n\n")
            .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].id.as_deref(), Some("event-1"));
        assert_eq!(events[0].retry, Some(500));
        assert_eq!(events[0].data, "");
        assert_eq!(events[1].data, "{\"a\":1}");
        assert_eq!(events[1].event.as_deref(), Some("message"));
    }

    #[test]
    fn handles_split_chunks_crlf_comments_and_multiline_data() {
        let mut p = SseParser::new(1 << 20);
        let mut all = Vec::new();
        for chunk in [
            &b": keepalive\r\ndata: li"[..],
            b"ne1\r\ndata:line2\r",
            b"\n\r\n",
        ] {
            all.extend(p.feed(chunk).unwrap());
        }
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].data, "line1\nline2");
        assert!(p.feed(b"\n\n").unwrap().is_empty());
    }

    #[test]
    fn bounded() {
        let mut p = SseParser::new(16);
        assert!(p.feed(b"data: 0123456789abcdefghij").is_err());
    }
}
