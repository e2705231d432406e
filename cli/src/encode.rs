//! Byte encodings for printed payloads: escaped text, JSON strings, base64, hex.
//!
//! Each function appends to a `Vec<u8>` line buffer, so printing an event allocates
//! nothing once the buffer has grown.

/// The base64 alphabet of RFC 4648 (standard, not URL-safe).
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// Lowercase hexadecimal digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// The hex digit for the low four bits of `nibble`.
fn hex_digit(nibble: u8) -> u8 {
    HEX.get(usize::from(nibble & 0xf)).copied().unwrap_or(b'?')
}

/// Appends `bytes` as lowercase hex, two digits a byte.
pub fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(b));
    }
}

/// Appends `bytes` as padded base64 (RFC 4648, standard alphabet).
pub fn base64(out: &mut Vec<u8>, bytes: &[u8]) {
    let digit = |sextet: u32| BASE64.get((sextet & 63) as usize).copied().unwrap_or(b'?');
    out.reserve(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        for (slot, &b) in group.iter_mut().zip(chunk) {
            *slot = b;
        }
        let [a, b, c] = group;
        let n = u32::from(a) << 16 | u32::from(b) << 8 | u32::from(c);
        out.push(digit(n >> 18));
        out.push(digit(n >> 12));
        out.push(if chunk.len() > 1 { digit(n >> 6) } else { b'=' });
        out.push(if chunk.len() > 2 { digit(n) } else { b'=' });
    }
}

/// The value of a base64 digit, or `None` for a byte outside the alphabet.
fn base64_value(digit: u8) -> Option<u32> {
    let value = match digit {
        b'A'..=b'Z' => digit - b'A',
        b'a'..=b'z' => digit - b'a' + 26,
        b'0'..=b'9' => digit - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(value))
}

/// Decodes padded base64 (RFC 4648, standard alphabet), appending the bytes to `out`.
///
/// # Errors
/// A message for input that is not canonical padded base64: a length that is not a
/// multiple of four, a byte outside the alphabet, padding in the wrong place, or bits
/// set past the end of the data (which [`base64`] never writes).
pub fn base64_decode(out: &mut Vec<u8>, text: &[u8]) -> Result<(), String> {
    if !text.len().is_multiple_of(4) {
        return Err(format!("its length {} is not a multiple of 4", text.len()));
    }
    let groups = text.len() / 4;
    out.reserve(groups * 3);
    for (i, group) in text.chunks_exact(4).enumerate() {
        let last = i + 1 == groups;
        let padding = group.iter().rev().take_while(|&&b| b == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return Err(format!("misplaced padding in group {}", i + 1));
        }
        let mut n = 0u32;
        for (j, &digit) in group.iter().enumerate() {
            let value = if j >= 4 - padding {
                0
            } else {
                base64_value(digit)
                    .ok_or_else(|| format!("{:?} is not a base64 digit", digit as char))?
            };
            n = n << 6 | value;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let keep = 3 - padding;
        // Canonical encodings leave the unused low bits zero.
        if bytes
            .get(keep..)
            .unwrap_or_default()
            .iter()
            .any(|&b| b != 0)
        {
            return Err(format!("non-canonical final group {}", i + 1));
        }
        out.extend_from_slice(bytes.get(..keep).unwrap_or_default());
    }
    Ok(())
}

/// Appends `text` as a JSON string literal, quotes included (RFC 8259 escaping: `"`,
/// `\` and the control characters U+0000 to U+001F).
pub fn json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut clean_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..0x20 => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(clean_from..i).unwrap_or_default());
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b));
        } else {
            out.extend_from_slice(escape);
        }
        clean_from = i + 1;
    }
    out.extend_from_slice(bytes.get(clean_from..).unwrap_or_default());
    out.push(b'"');
}

/// Appends `bytes` as one line of readable text: valid UTF-8 passes through, except
/// `\` (as `\\`), newline, carriage return and tab (`\n`, `\r`, `\t`) and other control
/// characters (`\u{7f}`); bytes that are not UTF-8 appear as `\xNN`.
pub fn text(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut clean_from = 0;
        for (i, c) in valid.char_indices() {
            if c != '\\' && !c.is_control() {
                continue;
            }
            out.extend_from_slice(valid.get(clean_from..i).unwrap_or_default().as_bytes());
            match c {
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                _ => out.extend_from_slice(c.escape_unicode().to_string().as_bytes()),
            }
            clean_from = i + c.len_utf8();
        }
        out.extend_from_slice(valid.get(clean_from..).unwrap_or_default().as_bytes());
        for &b in chunk.invalid() {
            out.extend_from_slice(b"\\x");
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn run(f: fn(&mut Vec<u8>, &[u8]), input: &[u8]) -> String {
        let mut out = Vec::new();
        f(&mut out, input);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(run(base64, input.as_bytes()), expected);
        }
        assert_eq!(run(base64, &[0xff, 0xfe, 0x00, 0x80]), "//4AgA==");
        let all: Vec<u8> = (0..=255).collect();
        let encoded = run(base64, &all);
        assert_eq!(encoded.len(), 344);
        assert!(encoded.starts_with("AAECAwQFBgcICQoL"));
        assert!(encoded.ends_with("+fr7/P3+/w=="));
    }

    #[test]
    fn base64_decodes_what_it_encodes_and_refuses_the_rest() {
        for len in 0..70 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut encoded = Vec::new();
            base64(&mut encoded, &bytes);
            let mut decoded = Vec::new();
            base64_decode(&mut decoded, &encoded).unwrap();
            assert_eq!(decoded, bytes);
        }
        for bad in ["Zg", "Zg=", "Z===", "Zg==Zg==", "Zh==", "Zm9*", "=Zm9"] {
            let mut out = Vec::new();
            assert!(base64_decode(&mut out, bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn hex_is_two_lowercase_digits_a_byte() {
        assert_eq!(run(hex, b""), "");
        assert_eq!(run(hex, &[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        let mut out = Vec::new();
        json_string(&mut out, "a\"b\\c\nd\te\u{1}f\u{1f}g\u{7f}é\u{2028}");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#""a\"b\\c\nd\te\u0001f\u001fg"#.to_owned() + "\u{7f}é\u{2028}\""
        );
        let mut out = Vec::new();
        json_string(&mut out, "");
        assert_eq!(out, b"\"\"");
        let mut out = Vec::new();
        json_string(&mut out, "\u{8}\u{c}\r");
        assert_eq!(out, br#""\b\f\r""#);
    }

    #[test]
    fn text_escapes_controls_and_invalid_bytes() {
        assert_eq!(run(text, b"plain text"), "plain text");
        assert_eq!(run(text, "héllo wörld".as_bytes()), "héllo wörld");
        assert_eq!(run(text, b"a\nb\tc\rd\\e"), r"a\nb\tc\rd\\e");
        assert_eq!(run(text, b"\x00\x7f"), r"\u{0}\u{7f}");
        assert_eq!(run(text, b"ok\xff\xfe!"), r"ok\xff\xfe!");
        // A truncated multi-byte sequence is escaped byte by byte.
        assert_eq!(run(text, b"\xe2\x82"), r"\xe2\x82");
        assert_eq!(run(text, b""), "");
    }
}
