//! Server-sent events: read incrementally from HTTP upstreams (the WHATWG
//! "event stream interpretation": lines end in CRLF, LF or CR; `data`
//! lines join with LF; an incomplete event at the end is discarded).
//!
//! The gateway forwards no byte of an upstream's stream as it came: each
//! event is taken apart into the fields a client acts on (`id`, `event`,
//! `retry`, `data`) and written again by [`Event::write`]. Comments and
//! unknown fields are dropped. A line or an event larger than the limit
//! ends the stream. [`Event::write`] writes every event the gateway sends,
//! whatever the upstream.

use bytes::{Bytes, BytesMut};

/// One dispatched event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub retry: Option<u64>,
    /// The joined `data` lines; `None` when the event had none (an event
    /// that only sets the last event id, as priming events may).
    pub data: Option<Vec<u8>>,
}

impl Event {
    /// The event in wire form, with `data` replaced by `data` (one line:
    /// the gateway's compact JSON never holds a line break).
    pub fn write(&self, data: Option<&[u8]>) -> Bytes {
        let mut out = BytesMut::new();
        if let Some(id) = &self.id {
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(b"\n");
        }
        if let Some(e) = &self.event {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(e.as_bytes());
            out.extend_from_slice(b"\n");
        }
        if let Some(r) = self.retry {
            out.extend_from_slice(format!("retry: {r}\n").as_bytes());
        }
        if let Some(d) = data {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(d);
            out.extend_from_slice(b"\n");
        }
        out.extend_from_slice(b"\n");
        out.freeze()
    }

    fn is_empty(&self) -> bool {
        self.id.is_none() && self.event.is_none() && self.retry.is_none() && self.data.is_none()
    }
}

/// A comment that keeps an idle stream open through proxies.
pub fn keep_alive() -> Bytes {
    Bytes::from_static(b":\n\n")
}

/// The stream broke a limit (a line or an event over `max` bytes) or is not
/// UTF-8 where a field name or value must be text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

/// Reads events out of the chunks of one stream.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    pending: Event,
    size: usize,
    max: usize,
    /// How much of `buf` is known to hold no line end.
    scanned: usize,
}

impl Decoder {
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            pending: Event::default(),
            size: 0,
            max,
            scanned: 0,
        }
    }

    /// Feeds one chunk; returns the events it completes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, Refused> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        loop {
            let rest = &self.buf[start..];
            // The partial line kept from the last chunk was searched already:
            // a long line in many chunks costs linear time, not quadratic.
            let from = if start == 0 { self.scanned } else { 0 };
            let Some(end) = rest[from..]
                .iter()
                .position(|b| *b == b'\n' || *b == b'\r')
                .map(|i| i + from)
            else {
                break;
            };
            // A CR at the very end may be the first half of a CRLF.
            let width = match (rest[end], rest.get(end + 1)) {
                (b'\r', Some(b'\n')) => 2,
                (b'\r', None) => break,
                _ => 1,
            };
            let line = rest[..end].to_vec();
            start += end + width;
            if let Some(e) = self.line(&line)? {
                out.push(e);
            }
        }
        self.buf.drain(..start);
        // What is left holds no line end, but for a CR that may start a CRLF.
        self.scanned = self.buf.len().saturating_sub(1);
        // Such a CR already ends the line: counting it would refuse a line of exactly `max`
        // bytes when its CRLF arrives split across two chunks, and accept it otherwise.
        let line_len = self.buf.len() - usize::from(self.buf.last() == Some(&b'\r'));
        if line_len > self.max {
            return Err(Refused("an event stream line is too long"));
        }
        Ok(out)
    }

    fn line(&mut self, line: &[u8]) -> Result<Option<Event>, Refused> {
        if line.is_empty() {
            self.size = 0;
            let e = std::mem::take(&mut self.pending);
            return Ok((!e.is_empty()).then_some(e));
        }
        self.size += line.len();
        if self.size > self.max {
            return Err(Refused("an event is too large"));
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (name, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let text = || {
            std::str::from_utf8(value)
                .map(str::to_string)
                .map_err(|_| Refused("an event field is not UTF-8"))
        };
        match name {
            b"data" => {
                let d = self.pending.data.get_or_insert_with(Vec::new);
                if !d.is_empty() {
                    d.push(b'\n');
                }
                d.extend_from_slice(value);
            }
            // An id with NUL is ignored (WHATWG); it cannot hold a line break.
            b"id" if !value.contains(&0) => self.pending.id = Some(text()?),
            b"event" => self.pending.event = Some(text()?),
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.pending.retry = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut d = Decoder::new(1024);
        chunks.iter().flat_map(|c| d.push(c).unwrap()).collect()
    }

    #[test]
    fn fields_and_line_endings() {
        let text = b"id: 7\r\nevent: message\rretry: 500\ndata: {\"a\":\ndata: 1}\n\n: keep-alive\n\nid: 8\n\n";
        let want = vec![
            Event {
                id: Some("7".into()),
                event: Some("message".into()),
                retry: Some(500),
                data: Some(b"{\"a\":\n1}".to_vec()),
            },
            Event {
                id: Some("8".into()),
                ..Event::default()
            },
        ];
        assert_eq!(all(&[text]), want);
        // Byte by byte (a CRLF split across chunks is one line end).
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(all(&bytes), want);
    }

    #[test]
    fn what_is_written_is_only_the_decided_fields() {
        let e = all(&[b"id: 1\nfoo: bar\ndata: x\n\n"]).remove(0);
        assert_eq!(&e.write(Some(b"{}"))[..], b"id: 1\ndata: {}\n\n");
        assert_eq!(&e.write(None)[..], b"id: 1\n\n");
    }

    #[test]
    fn incomplete_and_oversized() {
        assert!(all(&[b"data: {}\n"]).is_empty(), "no blank line, no event");
        let mut d = Decoder::new(16);
        assert!(d.push(&[b'x'; 17]).is_err());
        let mut d = Decoder::new(16);
        assert!(d.push(b"data: 12345\ndata: 12345\n").is_err());
        let mut d = Decoder::new(16);
        assert!(d.push(b"id: \xff\n").is_err());
        assert!(all(&[b"retry: 1x\nid: a\0b\n\n"]).is_empty());
    }
}
