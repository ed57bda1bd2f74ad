//! Printing a value the hook described (see [`super::wire`], "Values") with the rules
//! of sampled mode: the text [`crate::repr`] prints for the same value in memory,
//! through the same functions for strings, bytes, ints and floats, with the same
//! cut, item limit and redaction. The hook already applied the depth limit and cycle
//! detection (it sends `p` placeholders) and stops describing a value once the text
//! is certainly longer than the cut (`.`).

use crate::redact::{is_secret_name, REDACTED};
use crate::repr::{
    digits_to_decimal, float_repr, write_bytes, write_maybe_secret, write_str, Out, ReprOptions,
};

use super::wire::{code_points, Reader, WireError};

/// Whether the value continued to its end or stopped at the cut marker.
enum Flow {
    /// Printed; for a dict key, whether it is a secret name.
    Done(bool),
    Cut,
}

/// The repr of one encoded value (an argument or a return value), written into
/// `text` (cleared first), whose memory a caller rendering value after value reuses
/// instead of allocating each time.
pub fn render_into(bytes: &[u8], opts: &ReprOptions, text: String) -> Result<String, WireError> {
    let mut out = Out::with_text(text, opts.max_len);
    let mut r = Reader::new(bytes);
    value(&mut r, &mut out, opts, false)?;
    Ok(out.finish())
}

fn value(
    r: &mut Reader<'_>,
    out: &mut Out,
    opts: &ReprOptions,
    is_key: bool,
) -> Result<Flow, WireError> {
    match r.u8()? {
        b'.' => return Ok(Flow::Cut),
        b'N' => out.push_str("None"),
        b'T' => out.push_str("True"),
        b'F' => out.push_str("False"),
        b'R' => out.push_str(REDACTED),
        b'i' => write_maybe_secret(out, itoa::Buffer::new().format(r.i64()?)),
        b'I' => {
            let negative = r.u8()? == 1;
            let decimal = digits_to_decimal(&digits_30(r.blob()?));
            let text = if negative && decimal != "0" {
                format!("-{decimal}")
            } else {
                decimal
            };
            write_maybe_secret(out, &text);
        }
        b'H' => {
            let bits = r.u64()?;
            let addr = r.u64()?;
            write_maybe_secret(out, &format!("<int of about {bits} bits at {addr:#x}>"));
        }
        b'f' => out.push_str(&float_repr(r.f64()?)),
        b's' => {
            let text = code_points(r.blob()?);
            return Ok(Flow::Done(write_str(
                out,
                &text,
                is_key,
                &opts.redact_names,
            )));
        }
        b'b' => write_bytes(out, r.blob()?),
        b'p' => out.push_str(&r.string()?),
        b'P' => {
            let qualname = r.string()?;
            let addr = r.u64()?;
            out.push_str(&format!("<function {qualname} at {addr:#x}>"));
        }
        b'C' => out.push_str(&format!("<class '{}'>", r.string()?)),
        b'o' => {
            let qualified = r.string()?;
            let addr = r.u64()?;
            out.push_str(&format!("<{qualified} object at {addr:#x}>"));
        }
        b'X' => out.push_str(&format!("<repr failed: {}>", r.string()?)),
        b'l' => return sequence(r, out, opts, "[", "]", false),
        b't' => return sequence(r, out, opts, "(", ")", true),
        b'd' => return dict(r, out, opts),
        b'S' => {
            let name = r.string()?;
            let plain = r.u8()? == 1;
            let total = r.u32()?;
            let shown = r.u32()?;
            if total == 0 {
                out.push_str(&format!("{name}()"));
                return Ok(Flow::Done(false));
            }
            if !plain {
                out.push_str(&name);
                out.push('(');
            }
            if let Flow::Cut = items(r, out, opts, "{", "}", total, shown, false)? {
                return Ok(Flow::Cut);
            }
            if !plain {
                out.push(')');
            }
        }
        b'n' => return named_tuple(r, out, opts),
        other => return Err(WireError(format!("unknown value tag {other:#x}"))),
    }
    Ok(Flow::Done(false))
}

fn sequence(
    r: &mut Reader<'_>,
    out: &mut Out,
    opts: &ReprOptions,
    open: &str,
    close: &str,
    tuple: bool,
) -> Result<Flow, WireError> {
    let total = r.u32()?;
    let shown = r.u32()?;
    items(r, out, opts, open, close, total, shown, tuple)
}

/// Items separated by `, ` and `, ...` when cut (`repr.rs`'s `write_sequence`).
#[allow(clippy::too_many_arguments)]
fn items(
    r: &mut Reader<'_>,
    out: &mut Out,
    opts: &ReprOptions,
    open: &str,
    close: &str,
    total: u32,
    shown: u32,
    tuple: bool,
) -> Result<Flow, WireError> {
    out.push_str(open);
    for i in 0..shown {
        if i > 0 {
            out.push_str(", ");
        }
        if let Flow::Cut = value(r, out, opts, false)? {
            return Ok(Flow::Cut);
        }
    }
    write_more(out, shown, total);
    if tuple && total == 1 {
        out.push(',');
    }
    out.push_str(close);
    Ok(Flow::Done(false))
}

fn write_more(out: &mut Out, shown: u32, total: u32) {
    if total > shown {
        out.push_str(if shown == 0 { "..." } else { ", ..." });
    }
}

fn dict(r: &mut Reader<'_>, out: &mut Out, opts: &ReprOptions) -> Result<Flow, WireError> {
    let total = r.u32()?;
    let shown = r.u32()?;
    out.push('{');
    for i in 0..shown {
        if i > 0 {
            out.push_str(", ");
        }
        let secret = match value(r, out, opts, true)? {
            Flow::Cut => return Ok(Flow::Cut),
            Flow::Done(secret) => secret,
        };
        out.push_str(": ");
        if secret {
            let mut hidden = Out::new(opts.max_len);
            if let Flow::Cut = value(r, &mut hidden, opts, false)? {
                return Ok(Flow::Cut);
            }
            out.push_str(REDACTED);
        } else if let Flow::Cut = value(r, out, opts, false)? {
            return Ok(Flow::Cut);
        }
    }
    write_more(out, shown, total);
    out.push('}');
    Ok(Flow::Done(false))
}

fn named_tuple(r: &mut Reader<'_>, out: &mut Out, opts: &ReprOptions) -> Result<Flow, WireError> {
    let name = r.string()?;
    let total = r.u32()?;
    let shown = r.u32()?;
    out.push_str(&name);
    out.push('(');
    for i in 0..shown {
        if i > 0 {
            out.push_str(", ");
        }
        let field = r.string()?;
        out.push_str(&field);
        out.push('=');
        if is_secret_name(&field, &opts.redact_names) {
            let mut hidden = Out::new(opts.max_len);
            if let Flow::Cut = value(r, &mut hidden, opts, false)? {
                return Ok(Flow::Cut);
            }
            out.push_str(REDACTED);
        } else if let Flow::Cut = value(r, out, opts, false)? {
            return Ok(Flow::Cut);
        }
    }
    write_more(out, shown, total);
    out.push(')');
    Ok(Flow::Done(false))
}

/// An int's magnitude, bytes least significant first, as 30-bit digits (CPython's
/// own digits, which [`digits_to_decimal`] reads).
fn digits_30(bytes: &[u8]) -> Vec<u32> {
    let mut digits = Vec::with_capacity(bytes.len() * 8 / 30 + 1);
    let (mut acc, mut bits) = (0u64, 0u32);
    for &b in bytes {
        acc |= u64::from(b) << bits;
        bits += 8;
        while bits >= 30 {
            digits.push((acc & 0x3fff_ffff) as u32);
            acc >>= 30;
            bits -= 30;
        }
    }
    if bits > 0 {
        digits.push(acc as u32);
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_int_bytes_become_30_bit_digits() {
        let v: u128 = 10u128.pow(30) + 7;
        let bytes = v.to_le_bytes();
        assert_eq!(digits_to_decimal(&digits_30(&bytes)), v.to_string());
        assert_eq!(digits_to_decimal(&digits_30(&[])), "0");
    }
}
