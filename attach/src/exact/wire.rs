//! The bytes a hook sends to the tracer over its Unix socket, and their decoder.
//!
//! The hook (`_tracer_exact_hook.py`, and on 3.12+ its native accelerator
//! `native/tracer_native.c`, which writes the event records) writes this format and
//! [`Message::parse`] / [`Record::parse`] read it; the three change together. Everything is little-endian.
//! A `str` is a `u32` byte length and that many bytes of UTF-8 (Python's
//! `surrogatepass`: lone surrogates are encoded as three-byte sequences).
//!
//! # Messages
//!
//! The stream is a sequence of frames: `u32` length (of what follows), `u8` type, body.
//!
//! | type | name | body |
//! |---|---|---|
//! | 1 | HELLO | `str` token, `u32` pid, `u32` ppid, `str` Python version (`3.12.1`), `str` executable, `u32` n + n × `str` argv (`/proc/self/cmdline`), `i64` wall clock ns, `i64` `perf_counter_ns` read right after it, `str` mechanism (`sys.monitoring tool 3`, `sys.settrace`, `none`), `str` cwd, then optionally `u8` clock: 0 (or absent) events are stamped with `perf_counter_ns`, 1 with ticks of the CPU's time-stamp counter, followed by the first anchor (`i64` ticks, `i64` `perf_counter_ns` at the same moment) |
//! | 2 | ERROR | `str` why the hook is not tracing (e.g. no free `sys.monitoring` tool id) |
//! | 3 | BATCH | `u64` events dropped so far (a running total), then records until the end of the frame |
//! | 4 | BYE | `u64` events dropped in total; the process is exiting and sent everything |
//!
//! HELLO comes first and once; a connection that starts otherwise, or with the wrong
//! token, is closed. Nothing flows from the tracer to the hook: the hook notices that
//! the tracer is gone when its socket reports the end.
//!
//! # Records (in a BATCH)
//!
//! Each starts with a `u8` tag. Event timestamps (`ts`) are `perf_counter_ns`
//! readings, turned into wall-clock time with the HELLO's pair of clocks; or, when
//! the HELLO says so, ticks of the time-stamp counter, turned into `perf_counter_ns`
//! by interpolating between the two anchors around them: each BATCH then starts with
//! an anchor read after every event in it, so its events lie between the anchor
//! before it (the previous batch's, or the HELLO's) and its own. `code` and
//! `thread` are small ids defined by earlier records of the same connection.
//!
//! | tag | record | fields |
//! |---|---|---|
//! | `K` | code | `u32` id, `u32` base id (the code object it names: itself, or on 3.8–3.10 the code of which this is a `Class.method` name), `str` function, `str` module, `str` file, `i32` first line, `u16` n + n × `str` argument names |
//! | `T` | thread | `u32` id, `i64` OS thread id, `str` name |
//! | `E` | callee | `u32` id, `str` function, `str` module, `str` file (empty for C), `i32` first line (0 for C) |
//! | `c` | call | `u32` code, `u32` thread, `i64` ts, `i32` caller's line (−1: none), `u16` n (0xFFFF: values off) + n × (`u16` argument index, value) |
//! | `r` | return | `u32` code, `u32` thread, `i64` ts, `i32` line, value |
//! | `y` | yield | as return |
//! | `s` | resume | `u32` code, `u32` thread, `i64` ts, `i32` line |
//! | `x` | exception | `u32` code, `u32` thread, `i64` ts, `i32` line, `str` qualified type, `str` message |
//! | `g` | gap | `u32` caller code, `u32` thread, `i64` ts of the first call, `i32` caller's line, `u32` callee, `u32` count |
//! | `l` | limited | `u32` code, `u32` calls counted but not recorded (`max_calls`) |
//! | `A` | anchor | `i64` ticks, `i64` `perf_counter_ns` read at the same moment |
//!
//! Gap records of one call come before the record that ends that call.
//!
//! # Values
//!
//! A value is a description the tracer prints with sampled mode's rules
//! ([`super::value`]), one `u8` tag first:
//!
//! | tag | value |
//! |---|---|
//! | `z` | no value (values are off) |
//! | `N` `T` `F` | `None`, `True`, `False` |
//! | `i` | `i64` int |
//! | `I` | bigger int: `u8` 1 if negative, `u32` n, n bytes of magnitude, least significant first |
//! | `H` | an int too big to print: `u64` bits, `u64` address |
//! | `f` | `f64` float |
//! | `s` | `str` (the first 4096 characters) |
//! | `b` | `u32` n, n bytes (the first 4096) |
//! | `l` `t` | list, tuple: `u32` total items, `u32` n shown, n values |
//! | `d` | dict: `u32` total, `u32` n, n × (key value, value) |
//! | `S` | set: `str` type name, `u8` 1 if exactly `set`, `u32` total, `u32` n, n values |
//! | `n` | named tuple: `str` type name, `u32` total, `u32` n, n × (`str` field, value) |
//! | `p` | `str` placeholder for a container too deep or in a cycle (`[...]`) |
//! | `P` | Python function: `str` qualified name, `u64` address |
//! | `C` | class: `str` qualified name |
//! | `o` | other object: `str` qualified type name, `u64` address |
//! | `R` | redacted by name (a dict value under a secret key) |
//! | `X` | `str` type of the exception that stopped the description |
//! | `.` | the text is already longer than the cut: the value ends here |

use std::fmt;

/// Bytes that do not follow the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed message from the hook: {0}")]
pub struct WireError(pub String);

fn malformed(what: impl fmt::Display) -> WireError {
    WireError(what.to_string())
}

/// Message types.
pub const MSG_HELLO: u8 = 1;
pub const MSG_ERROR: u8 = 2;
pub const MSG_BATCH: u8 = 3;
pub const MSG_BYE: u8 = 4;

/// The largest frame accepted (a batch is far smaller; this bounds a bad peer).
pub const MAX_FRAME: usize = 256 << 20;

/// A cursor over the bytes of one frame.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| malformed(format!("{n} bytes wanted at {}", self.pos)))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn i32(&mut self) -> Result<i32, WireError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn f64(&mut self) -> Result<f64, WireError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// A length-prefixed byte string.
    pub fn blob(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// A length-prefixed string, lossily decoded (a lone surrogate becomes U+FFFD).
    pub fn string(&mut self) -> Result<String, WireError> {
        let bytes = self.blob()?;
        Ok(code_points(bytes)
            .into_iter()
            .map(|c| char::from_u32(c).unwrap_or('\u{fffd}'))
            .collect())
    }
}

/// The code points of Python's `surrogatepass` UTF-8, lone surrogates included (as
/// their own code points, which Python's `repr()` prints as `\ud800`). A byte that
/// starts no valid sequence becomes U+FFFD.
pub fn code_points(bytes: &[u8]) -> Vec<u32> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (len, init) = match b {
            0x00..=0x7f => (1, u32::from(b)),
            0xc2..=0xdf => (2, u32::from(b & 0x1f)),
            0xe0..=0xef => (3, u32::from(b & 0x0f)),
            0xf0..=0xf4 => (4, u32::from(b & 0x07)),
            _ => (0, 0),
        };
        let continuation = bytes
            .get(i + 1..i + len.max(1))
            .filter(|rest| len > 0 && rest.iter().all(|c| c & 0xc0 == 0x80));
        match continuation {
            Some(rest) => {
                let value = rest
                    .iter()
                    .fold(init, |acc, c| (acc << 6) | u32::from(c & 0x3f));
                out.push(value);
                i += len;
            }
            None => {
                out.push(0xfffd);
                i += 1;
            }
        }
    }
    out
}

/// The handshake of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub token: String,
    pub pid: u32,
    pub ppid: u32,
    pub python_version: String,
    pub executable: String,
    pub argv: Vec<String>,
    pub wall_ns: i64,
    pub perf_ns: i64,
    pub mechanism: String,
    pub cwd: String,
    /// How events are stamped.
    pub clock: EventClock,
}

/// The clock of a process's event timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClock {
    /// `perf_counter_ns`.
    PerfCounter,
    /// Ticks of the time-stamp counter, from this anchor on.
    Ticks(Anchor),
}

/// A reading of the time-stamp counter and of `perf_counter_ns` at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub ticks: i64,
    pub perf_ns: i64,
}

impl Anchor {
    fn parse(r: &mut Reader<'_>) -> Result<Anchor, WireError> {
        Ok(Anchor {
            ticks: r.i64()?,
            perf_ns: r.i64()?,
        })
    }
}

/// One frame of the stream.
#[derive(Debug, Clone)]
pub enum Message<'a> {
    Hello(Hello),
    Error(String),
    /// The running total of dropped events, and the records.
    Batch {
        dropped: u64,
        records: Reader<'a>,
    },
    Bye {
        dropped: u64,
    },
}

impl<'a> Message<'a> {
    /// Decodes one frame (type byte and body, without the length).
    pub fn parse(frame: &'a [u8]) -> Result<Message<'a>, WireError> {
        let mut r = Reader::new(frame);
        match r.u8()? {
            MSG_HELLO => {
                let token = r.string()?;
                let pid = r.u32()?;
                let ppid = r.u32()?;
                let python_version = r.string()?;
                let executable = r.string()?;
                let argc = r.u32()? as usize;
                let mut argv = Vec::with_capacity(argc.min(4096));
                for _ in 0..argc {
                    argv.push(r.string()?);
                }
                let wall_ns = r.i64()?;
                let perf_ns = r.i64()?;
                let mechanism = r.string()?;
                let cwd = r.string()?;
                let clock = match if r.is_empty() { 0 } else { r.u8()? } {
                    0 => EventClock::PerfCounter,
                    1 => EventClock::Ticks(Anchor::parse(&mut r)?),
                    other => return Err(malformed(format!("unknown clock {other}"))),
                };
                Ok(Message::Hello(Hello {
                    token,
                    pid,
                    ppid,
                    python_version,
                    executable,
                    argv,
                    wall_ns,
                    perf_ns,
                    mechanism,
                    cwd,
                    clock,
                }))
            }
            MSG_ERROR => Ok(Message::Error(r.string()?)),
            MSG_BATCH => Ok(Message::Batch {
                dropped: r.u64()?,
                records: r,
            }),
            MSG_BYE => Ok(Message::Bye { dropped: r.u64()? }),
            other => Err(malformed(format!("unknown message type {other}"))),
        }
    }
}

/// What every event record starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHead {
    pub code: u32,
    pub thread: u32,
    /// `perf_counter_ns` in the process.
    pub ts: i64,
    /// The line executing (call records: the caller's line, −1 for none).
    pub line: i32,
}

/// One record of a batch. Values stay encoded (slices of the frame) until the
/// connection prints them.
#[derive(Debug)]
pub enum Record<'a> {
    Code {
        id: u32,
        base: u32,
        function: String,
        module: String,
        file: String,
        first_line: i32,
        arg_names: Vec<String>,
    },
    Thread {
        id: u32,
        tid: i64,
        name: String,
    },
    Callee {
        id: u32,
        function: String,
        module: String,
        file: String,
        first_line: i32,
    },
    /// `args`: `None` when values are off.
    Call {
        head: EventHead,
        args: Option<ArgValues<'a>>,
    },
    Return {
        head: EventHead,
        value: Option<&'a [u8]>,
    },
    Yield {
        head: EventHead,
        value: Option<&'a [u8]>,
    },
    Resume {
        head: EventHead,
    },
    Exception {
        head: EventHead,
        exception: String,
        message: String,
    },
    Gap {
        head: EventHead,
        callee: u32,
        count: u32,
    },
    Limited {
        code: u32,
        count: u32,
    },
    Anchor(Anchor),
}

impl<'a> Record<'a> {
    /// Decodes the next record of a batch.
    pub fn parse(r: &mut Reader<'a>) -> Result<Record<'a>, WireError> {
        let tag = r.u8()?;
        Ok(match tag {
            b'K' => {
                let id = r.u32()?;
                let base = r.u32()?;
                let function = r.string()?;
                let module = r.string()?;
                let file = r.string()?;
                let first_line = r.i32()?;
                let n = r.u16()?;
                let arg_names = (0..n).map(|_| r.string()).collect::<Result<_, _>>()?;
                Record::Code {
                    id,
                    base,
                    function,
                    module,
                    file,
                    first_line,
                    arg_names,
                }
            }
            b'T' => Record::Thread {
                id: r.u32()?,
                tid: r.i64()?,
                name: r.string()?,
            },
            b'E' => Record::Callee {
                id: r.u32()?,
                function: r.string()?,
                module: r.string()?,
                file: r.string()?,
                first_line: r.i32()?,
            },
            b'c' => {
                let head = head(r)?;
                let n = r.u16()?;
                let args = if n == u16::MAX {
                    None
                } else {
                    let start = r.pos;
                    for _ in 0..n {
                        r.u16()?;
                        skip_value(r)?;
                    }
                    Some(ArgValues {
                        count: n,
                        bytes: &r.bytes[start..r.pos],
                    })
                };
                Record::Call { head, args }
            }
            b'r' | b'y' => {
                let head = head(r)?;
                let value = optional_value(r)?;
                if tag == b'r' {
                    Record::Return { head, value }
                } else {
                    Record::Yield { head, value }
                }
            }
            b's' => Record::Resume { head: head(r)? },
            b'x' => Record::Exception {
                head: head(r)?,
                exception: r.string()?,
                message: r.string()?,
            },
            b'g' => Record::Gap {
                head: head(r)?,
                callee: r.u32()?,
                count: r.u32()?,
            },
            b'l' => Record::Limited {
                code: r.u32()?,
                count: r.u32()?,
            },
            b'A' => Record::Anchor(Anchor::parse(r)?),
            other => return Err(malformed(format!("unknown record tag {other:#x}"))),
        })
    }
}

fn head(r: &mut Reader<'_>) -> Result<EventHead, WireError> {
    Ok(EventHead {
        code: r.u32()?,
        thread: r.u32()?,
        ts: r.i64()?,
        line: r.i32()?,
    })
}

fn optional_value<'a>(r: &mut Reader<'a>) -> Result<Option<&'a [u8]>, WireError> {
    let mut peek = r.clone();
    if peek.u8()? == b'z' {
        *r = peek;
        return Ok(None);
    }
    Ok(Some(value_bytes(r)?))
}

/// The arguments of a call record: `count` (argument index, encoded value) pairs,
/// checked whole when the record was parsed.
#[derive(Debug, Clone, Copy)]
pub struct ArgValues<'a> {
    count: u16,
    bytes: &'a [u8],
}

impl<'a> ArgValues<'a> {
    /// The (argument index, encoded value) pairs, in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = Result<(u16, &'a [u8]), WireError>> + 'a {
        let mut r = Reader::new(self.bytes);
        (0..self.count).map(move |_| Ok((r.u16()?, value_bytes(&mut r)?)))
    }
}

/// The bytes of one encoded value, without interpreting them (that is
/// [`super::value`]'s job): skips exactly one value.
fn value_bytes<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], WireError> {
    let start = r.pos;
    skip_value(r)?;
    Ok(&r.bytes[start..r.pos])
}

/// Skips one value; returns false when it ended with the cut marker `.` (nothing of
/// the value follows).
fn skip_value(r: &mut Reader<'_>) -> Result<bool, WireError> {
    match r.u8()? {
        b'N' | b'T' | b'F' | b'R' => {}
        b'.' => return Ok(false),
        b'i' | b'f' => {
            r.take(8)?;
        }
        b'I' => {
            r.u8()?;
            r.blob()?;
        }
        b'H' => {
            r.take(16)?;
        }
        b's' | b'b' | b'p' | b'C' | b'X' => {
            r.blob()?;
        }
        b'P' | b'o' => {
            r.blob()?;
            r.take(8)?;
        }
        b'l' | b't' => {
            r.u32()?;
            let n = r.u32()?;
            for _ in 0..n {
                if !skip_value(r)? {
                    return Ok(false);
                }
            }
        }
        b'd' => {
            r.u32()?;
            let n = r.u32()?;
            for _ in 0..n {
                if !skip_value(r)? || !skip_value(r)? {
                    return Ok(false);
                }
            }
        }
        b'S' => {
            r.blob()?;
            r.u8()?;
            r.u32()?;
            let n = r.u32()?;
            for _ in 0..n {
                if !skip_value(r)? {
                    return Ok(false);
                }
            }
        }
        b'n' => {
            r.blob()?;
            r.u32()?;
            let n = r.u32()?;
            for _ in 0..n {
                r.blob()?;
                if !skip_value(r)? {
                    return Ok(false);
                }
            }
        }
        other => return Err(malformed(format!("unknown value tag {other:#x}"))),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surrogatepass_utf8_keeps_lone_surrogates() {
        // "a", "é", U+D800 as Python's surrogatepass writes it, "€", U+1F600.
        let bytes = [
            b'a', 0xc3, 0xa9, 0xed, 0xa0, 0x80, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80,
        ];
        assert_eq!(
            code_points(&bytes),
            vec![0x61, 0xe9, 0xd800, 0x20ac, 0x1f600]
        );
        assert_eq!(code_points(&[0xff, b'x', 0xc3]), vec![0xfffd, 0x78, 0xfffd]);
    }

    #[test]
    fn a_value_is_skipped_whole_or_up_to_its_cut() {
        // [1, {'k': None}] then a record tag.
        let mut bytes = vec![b'l', 2, 0, 0, 0, 2, 0, 0, 0, b'i'];
        bytes.extend_from_slice(&1i64.to_le_bytes());
        bytes.extend_from_slice(&[b'd', 1, 0, 0, 0, 1, 0, 0, 0, b's', 1, 0, 0, 0, b'k', b'N']);
        let end = bytes.len();
        bytes.push(b'K');
        let mut r = Reader::new(&bytes);
        assert_eq!(value_bytes(&mut r).map(<[u8]>::len), Ok(end));
        let cut = [b'l', 5, 0, 0, 0, 5, 0, 0, 0, b'N', b'.', b'y'];
        let mut r = Reader::new(&cut);
        assert_eq!(value_bytes(&mut r).map(<[u8]>::len), Ok(11));
        assert!(value_bytes(&mut Reader::new(&[b'l', 1, 0])).is_err());
    }

    /// A HELLO of pid 7 with one argument, ending in `clock`.
    fn hello(clock: &[u8]) -> Vec<u8> {
        let string = |out: &mut Vec<u8>, text: &str| {
            out.extend_from_slice(&(text.len() as u32).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        };
        let mut out = vec![MSG_HELLO];
        string(&mut out, "token");
        out.extend_from_slice(&7u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        string(&mut out, "3.12.1");
        string(&mut out, "/usr/bin/python3");
        out.extend_from_slice(&1u32.to_le_bytes());
        string(&mut out, "app.py");
        out.extend_from_slice(&1_000i64.to_le_bytes());
        out.extend_from_slice(&50i64.to_le_bytes());
        string(&mut out, "sys.monitoring tool 3 (native)");
        string(&mut out, "/home");
        out.extend_from_slice(clock);
        out
    }

    fn clock_of(frame: &[u8]) -> Result<EventClock, WireError> {
        match Message::parse(frame)? {
            Message::Hello(hello) => Ok(hello.clock),
            other => panic!("not a HELLO: {other:?}"),
        }
    }

    #[test]
    fn a_hello_says_how_events_are_stamped_and_a_batch_may_start_with_an_anchor() {
        assert_eq!(clock_of(&hello(&[])), Ok(EventClock::PerfCounter));
        assert_eq!(clock_of(&hello(&[0])), Ok(EventClock::PerfCounter));
        let mut anchor = vec![1];
        anchor.extend_from_slice(&123_456i64.to_le_bytes());
        anchor.extend_from_slice(&789i64.to_le_bytes());
        assert_eq!(
            clock_of(&hello(&anchor)),
            Ok(EventClock::Ticks(Anchor {
                ticks: 123_456,
                perf_ns: 789
            }))
        );
        assert!(clock_of(&hello(&[2])).is_err());
        assert!(clock_of(&hello(&anchor[..9])).is_err());

        anchor[0] = b'A';
        let mut r = Reader::new(&anchor);
        match Record::parse(&mut r) {
            Ok(Record::Anchor(Anchor { ticks, perf_ns })) => {
                assert_eq!((ticks, perf_ns), (123_456, 789))
            }
            other => panic!("not an anchor: {other:?}"),
        }
        assert!(r.is_empty());
    }
}
