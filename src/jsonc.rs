//! A serde_json [`Formatter`] that writes json-c's compact text form. Pure.
//!
//! SchedMD's plugin serializes its record with json-c (`serializer/json`), so the
//! bytes a consumer sees follow json-c's conventions, not serde_json's defaults
//! (record-format.md, "Text form"):
//! - no whitespace at all;
//! - strings escape `"`, `\` and `/` (as `\/`); `\b \f \n \r \t` by name; every
//!   other byte below 0x20 as `\u00xx` with lower-case hex; everything else,
//!   multi-byte UTF-8 included, is copied as is;
//! - doubles are printed like C's `printf("%.17g")`, and `.0` is appended when the
//!   text has neither a `.` nor an `e` (`1.0`, `1e+17`).
//!
//! serde_json hands the formatter valid UTF-8 only, so unlike json-c the output is
//! always valid JSON. Non-finite floats never reach the formatter: serde_json writes
//! `null` for them itself (json-c would write `NaN` / `Infinity`; the record never
//! holds such a value).
//!
//! Two writers produce that form:
//! - [`write_str`], [`write_i64`] and [`write_f64`] append straight to a buffer.
//!   The record builder uses them: a record is mostly long strings (batch scripts,
//!   node lists, TRES), and serde_json's escaper, which looks at one byte at a
//!   time and hands runs to a formatter that scans them again for `/`, was most of
//!   the delivery thread's CPU. [`write_str`] skips eight bytes at a time while
//!   none of them needs an escape.
//! - [`JsonCFormatter`], a serde_json formatter, for any `Serialize` value
//!   ([`to_vec`]). Its escaping is serde_json's own, so it serves the tests as an
//!   independent reference for [`write_str`].

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, Serializer};

/// Writes json-c's compact form (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonCFormatter;

/// Serializes `value` to json-c's compact text.
///
/// Panics only if `value`'s own `Serialize` implementation reports an error (for
/// instance a map with non-string keys); writing to a `Vec` cannot fail, and the
/// record types of this crate never report one.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let mut serializer = Serializer::with_formatter(&mut out, JsonCFormatter);
    value
        .serialize(&mut serializer)
        .expect("the value's Serialize implementation failed");
    out
}

impl Formatter for JsonCFormatter {
    fn write_f32<W: ?Sized + Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        // json-c has doubles only: a float is widened first, as C does.
        self.write_f64(writer, f64::from(value))
    }

    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(JsonCDouble::new(value).as_bytes())
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json escapes quotes, backslashes and control bytes itself (through
        // write_char_escape); json-c also escapes the solidus.
        let mut rest = fragment.as_bytes();
        while let Some(at) = rest.iter().position(|&b| b == b'/') {
            writer.write_all(&rest[..at])?;
            writer.write_all(b"\\/")?;
            rest = &rest[at + 1..];
        }
        writer.write_all(rest)
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        let named: &[u8] = match char_escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"\\/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => return write_unicode_escape(writer, byte),
        };
        writer.write_all(named)
    }
}

/// How json-c writes a byte inside a string: 0 copies it as is, `b'u'` writes
/// `\u00xx`, any other value writes a backslash and that byte (`\"`, `\\`, `\/`,
/// `\b`, `\f`, `\n`, `\r`, `\t`).
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[b'/' as usize] = b'/';
    table
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The bytes of `word` that need an escape (below 0x20, or `"`, `\` or `/`):
/// the high bit of each such byte set, every other bit clear. Exact for every
/// byte (no borrow runs from one byte into the next, unlike the shorter "has a
/// zero byte" trick), so the set bits can be walked; bytes of 0x80 and above
/// (multi-byte UTF-8) never match.
#[inline(always)]
fn escape_mask(word: u64) -> u64 {
    const LOW7: u64 = ONES * 0x7f;
    // High bit of (v & 0x7f) + 0x7f is set for every byte whose low 7 bits are
    // not all zero: with v's own high bit, "the byte is not zero".
    let zero_bytes = |v: u64| !(((v & LOW7) + LOW7) | v) & HIGHS;
    // (v & 0x7f) + 0x60 reaches 0x80 exactly when the low 7 bits are >= 0x20.
    let below_space = !(((word & LOW7) + ONES * 0x60) | word) & HIGHS;
    below_space
        | zero_bytes(word ^ (ONES * u64::from(b'"')))
        | zero_bytes(word ^ (ONES * u64::from(b'\\')))
        | zero_bytes(word ^ (ONES * u64::from(b'/')))
}

/// Appends `text` as a json-c string literal, quotes included. Eight bytes at
/// a time: the escapes of a word are found with `escape_mask`, and the plain
/// bytes between escapes are copied as whole runs (a run may span many words:
/// most text has none, batch scripts one every ten bytes or so: `/`, `"`,
/// newlines). Measured with callgrind on the delivery thread against escaping
/// byte by byte.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // bytes[copied..] are not written yet; bytes[copied..at] need no escape.
    let mut copied = 0;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut mask = escape_mask(u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])));
        while mask != 0 {
            let escaped = at + (mask.trailing_zeros() / 8) as usize;
            out.extend_from_slice(&bytes[copied..escaped]);
            push_escaped(out, bytes[escaped]);
            copied = escaped + 1;
            mask &= mask - 1;
        }
        at += 8;
    }
    out.extend_from_slice(&bytes[copied..at]);
    bytes[at..].iter().for_each(|&byte| push_escaped(out, byte));
    out.push(b'"');
}

#[inline(always)]
fn push_escaped(out: &mut Vec<u8>, byte: u8) {
    match ESCAPE[usize::from(byte)] {
        0 => out.push(byte),
        b'u' => out.extend_from_slice(&unicode_escape(byte)),
        escape => out.extend_from_slice(&[b'\\', escape]),
    }
}

/// Appends an integer in decimal.
pub fn write_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(itoa_u64(value.unsigned_abs()).take());
}

/// Appends a double as json-c does (`%.17g`, `.0` added), or `null` when it is
/// not finite (as serde_json writes it; see the module documentation).
pub fn write_f64(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        out.extend_from_slice(JsonCDouble::new(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// `\u00xx` with lower-case hex digits, as json-c writes a control byte.
fn write_unicode_escape<W: ?Sized + Write>(writer: &mut W, byte: u8) -> io::Result<()> {
    writer.write_all(&unicode_escape(byte))
}

/// `\u00xx` with lower-case hex digits.
fn unicode_escape(byte: u8) -> [u8; 6] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [b'\\', b'u', b'0', b'0', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0x0f)]]
}

/// A small stack buffer implementing `fmt::Write`, so that number formatting does
/// not allocate. 40 bytes hold every `%.17g` text (at most 24 bytes) and Rust's
/// `{:.16e}` text (at most 25 bytes).
struct StackText {
    buf: [u8; 40],
    len: usize,
}

impl StackText {
    fn new() -> StackText {
        StackText {
            buf: [0; 40],
            len: 0,
        }
    }

    fn push(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }

    fn extend(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.len + s.len() > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.extend(s.as_bytes());
        Ok(())
    }
}

/// A finite double as json-c prints it: `%.17g`, plus `.0` when that text has
/// neither a `.` nor an `e`.
pub struct JsonCDouble(StackText);

impl JsonCDouble {
    pub fn new(value: f64) -> JsonCDouble {
        let mut text = percent_17g(value);
        let plain = !text.as_bytes().iter().any(|&b| b == b'.' || b == b'e');
        if plain && value.is_finite() {
            text.extend(b".0");
        }
        JsonCDouble(text)
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits, signs, '.', 'e' and the names below are ever written.
        std::str::from_utf8(self.0.as_bytes()).unwrap_or("")
    }
}

/// The 17 significant decimal digits of a finite value, correctly rounded, and
/// the decimal exponent of the first one (C's `%.16e` split into its parts).
struct Digits {
    negative: bool,
    digits: [u8; 17],
    exponent: i32,
}

fn seventeen_digits(value: f64) -> Digits {
    use std::fmt::Write as _;
    let mut sci = StackText::new();
    // Rust prints the exact decimal value rounded half-to-even, as glibc does;
    // e.g. "-1.2345678901234568e17", "0.0000000000000000e0".
    let _ = write!(sci, "{:.16e}", value);
    let text = sci.as_bytes();
    let negative = text.first() == Some(&b'-');
    let text = if negative { &text[1..] } else { text };
    let e_at = text.iter().position(|&b| b == b'e').unwrap_or(text.len());
    let mut digits = [b'0'; 17];
    let mantissa = text[..e_at].iter().filter(|b| b.is_ascii_digit());
    for (slot, &digit) in digits.iter_mut().zip(mantissa) {
        *slot = digit;
    }
    let exponent = std::str::from_utf8(&text[(e_at + 1).min(text.len())..])
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    Digits {
        negative,
        digits,
        exponent,
    }
}

/// C's `printf("%.17g", value)`: 17 significant digits; exponent form when the
/// exponent is below -4 or at least 17; trailing zeros (and a bare '.') removed;
/// the exponent has a sign and at least two digits.
fn percent_17g(value: f64) -> StackText {
    let mut out = StackText::new();
    if !value.is_finite() {
        out.extend(non_finite_name(value));
        return out;
    }
    let d = seventeen_digits(value);
    if d.negative {
        out.push(b'-');
    }
    if d.exponent < -4 || d.exponent >= 17 {
        write_exponent_form(&mut out, &d);
    } else {
        write_fixed_form(&mut out, &d);
    }
    out
}

/// What glibc prints for non-finite values (never reached through serde_json).
fn non_finite_name(value: f64) -> &'static [u8] {
    if value.is_nan() {
        if value.is_sign_negative() {
            b"-nan"
        } else {
            b"nan"
        }
    } else if value < 0.0 {
        b"-inf"
    } else {
        b"inf"
    }
}

fn without_trailing_zeros(digits: &[u8]) -> &[u8] {
    let keep = digits.iter().rposition(|&b| b != b'0').map_or(0, |i| i + 1);
    &digits[..keep]
}

fn write_exponent_form(out: &mut StackText, d: &Digits) {
    out.push(d.digits[0]);
    let fraction = without_trailing_zeros(&d.digits[1..]);
    if !fraction.is_empty() {
        out.push(b'.');
        out.extend(fraction);
    }
    out.push(b'e');
    out.push(if d.exponent < 0 { b'-' } else { b'+' });
    let magnitude = d.exponent.unsigned_abs();
    if magnitude < 10 {
        out.push(b'0');
    }
    let mut buf = itoa_u32(magnitude);
    out.extend(buf.take());
}

fn write_fixed_form(out: &mut StackText, d: &Digits) {
    if d.exponent >= 0 {
        let int_len = d.exponent as usize + 1; // at most 17
        out.extend(&d.digits[..int_len]);
        let fraction = without_trailing_zeros(&d.digits[int_len..]);
        if !fraction.is_empty() {
            out.push(b'.');
            out.extend(fraction);
        }
    } else {
        // -4 <= exponent <= -1: "0.", then (-exponent - 1) zeros, then the digits.
        out.extend(b"0.");
        for _ in 0..(-d.exponent - 1) {
            out.push(b'0');
        }
        out.extend(without_trailing_zeros(&d.digits));
    }
}

/// Decimal digits of an unsigned number without allocating.
struct SmallDigits {
    buf: [u8; 20],
    start: usize,
}

impl SmallDigits {
    fn take(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_u32(value: u32) -> SmallDigits {
    itoa_u64(u64::from(value))
}

fn itoa_u64(mut value: u64) -> SmallDigits {
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    SmallDigits { buf, start }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g17(value: f64) -> String {
        String::from_utf8(percent_17g(value).as_bytes().to_vec()).unwrap()
    }

    fn json_string(s: &str) -> String {
        String::from_utf8(to_vec(s)).unwrap()
    }

    /// (bit pattern of the double, glibc 2.36 `printf("%.17g")` of it). Generated
    /// once by hand with a small C program compiled with gcc on Debian 12; the
    /// bit patterns pin the exact inputs.
    const GLIBC_17G: &[(u64, &str)] = &[
        (0x0000000000000000, "0"),
        (0x8000000000000000, "-0"),
        (0x3ff0000000000000, "1"),
        (0xbff0000000000000, "-1"),
        (0x3fe0000000000000, "0.5"),
        (0x3fb999999999999a, "0.10000000000000001"),
        (0x4059000000000000, "100"),
        (0x3fd5555555555555, "0.33333333333333331"),
        (0x3fe5555555555555, "0.66666666666666663"),
        (0xc004000000000000, "-2.5"),
        (0x4010456780000000, "4.0677776336669922"),
        (0x3f32345680000000, "0.00027777778450399637"),
        (0x3ee4f8b588e368f1, "1.0000000000000001e-05"),
        (0x3f1a36e2eb1c432d, "0.0001"),
        (0x3f202e4b6ce5dc68, "0.00012344999999999999"),
        (0x3eff75104d551d69, "3.0000000000000001e-05"),
        (0x430c6bf526340000, "1000000000000000"),
        (0x4341c37937e08000, "10000000000000000"),
        (0x4376345785d8a000, "1e+17"),
        (0x4345ee2a2eb5a5c4, "12345678901234568"),
        (0x437b69b4ba630f35, "1.2345678901234568e+17"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x4480f0cf064dd592, "1e+22"),
        (0x4340000000000000, "9007199254740992"),
        (0x43e0000000000000, "9.2233720368547758e+18"),
        (0x7e41eb2d66005835, "1.5000000000000001e+300"),
        (0x0000000000000001, "4.9406564584124654e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0x0010000000000000, "2.2250738585072014e-308"),
        // Exact ties at the 17th digit: glibc rounds half to even.
        (0x3ff0000800000000, "1.0000076293945312"),
        (0x3ff0001800000000, "1.0000228881835938"),
        (0x3f202e85be180b74, "0.00012345678901234567"),
        (0x3f50624dd2f1a9fc, "0.001"),
        (0x405edd2f1a9fbe77, "123.456"),
        (0x54b249ad2594c37d, "1e+100"),
        (0xab2bff2ee48e0530, "-1e-100"),
        (0x41efffffffe00000, "4294967295"),
        (0x4170000010000000, "16777217"),
        (0x41453158e0000000, "2777777.75"),
        (0x4322345680000000, "2562047850053632"),
    ];

    #[test]
    fn percent_17g_matches_glibc() {
        for &(bits, expected) in GLIBC_17G {
            let value = f64::from_bits(bits);
            assert_eq!(g17(value), expected, "value {value:e} (bits {bits:#x})");
        }
    }

    #[test]
    #[allow(clippy::excessive_precision)] // the literals are %.17g texts
    fn doubles_get_json_c_suffix() {
        let text = |v: f64| String::from_utf8(to_vec(&v)).unwrap();
        assert_eq!(text(0.0), "0.0");
        assert_eq!(text(-0.0), "-0.0");
        assert_eq!(text(1.0), "1.0");
        assert_eq!(text(100.0), "100.0");
        assert_eq!(text(4.0677776336669922), "4.0677776336669922");
        assert_eq!(text(0.00027777778450399637), "0.00027777778450399637");
        assert_eq!(text(1e-05), "1.0000000000000001e-05");
        assert_eq!(text(1e17), "1e+17");
        assert_eq!(text(1e16), "10000000000000000.0");
        assert_eq!(text(-2.5), "-2.5");
    }

    #[test]
    fn f32_is_widened_like_c() {
        // (float)14644 / 3600.0f, then widened: the example record's cpu_hours.
        let cpu_hours = 14644.0f32 / 3600.0f32;
        assert_eq!(to_vec(&cpu_hours), b"4.0677776336669922");
        assert_eq!(to_vec(&(1.0f32 / 3600.0f32)), b"0.00027777778450399637");
    }

    #[test]
    fn non_finite_values_become_null() {
        assert_eq!(to_vec(&f64::NAN), b"null");
        assert_eq!(to_vec(&f64::INFINITY), b"null");
        assert_eq!(JsonCDouble::new(f64::NEG_INFINITY).as_str(), "-inf");
    }

    #[test]
    fn control_bytes_are_escaped_like_json_c() {
        let named = [
            (0x08u8, "\\b"),
            (0x09, "\\t"),
            (0x0a, "\\n"),
            (0x0c, "\\f"),
            (0x0d, "\\r"),
        ];
        for byte in 0u8..0x20 {
            let input = String::from(char::from(byte));
            let expected = match named.iter().find(|(b, _)| *b == byte) {
                Some((_, name)) => format!("\"{name}\""),
                None => format!("\"\\u00{byte:02x}\""),
            };
            assert_eq!(json_string(&input), expected, "byte {byte:#04x}");
        }
        assert_eq!(json_string("\u{1f}\u{1b}"), "\"\\u001f\\u001b\"");
    }

    #[test]
    fn quotes_backslashes_and_slashes_are_escaped() {
        assert_eq!(json_string("a\"b"), r#""a\"b""#);
        assert_eq!(json_string("a\\b"), r#""a\\b""#);
        assert_eq!(json_string("/home/alice/"), r#""\/home\/alice\/""#);
        assert_eq!(json_string("//"), r#""\/\/""#);
        assert_eq!(json_string("x/\"/\\/"), r#""x\/\"\/\\\/""#);
        assert_eq!(json_string("\u{7f}~ "), "\"\u{7f}~ \"");
    }

    #[test]
    fn multibyte_utf8_is_copied_raw() {
        let s = "Zürich/東京 🚀 \u{fffd}";
        assert_eq!(json_string(s), "\"Zürich\\/東京 🚀 \u{fffd}\"");
        let back: String = serde_json::from_slice(&to_vec(s)).unwrap();
        assert_eq!(back, s);
    }

    fn written(text: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    /// A small deterministic generator (xorshift64*), so that a failure repeats.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn write_str_matches_serde_json_with_the_json_c_formatter() {
        // Every char below 0x100 alone and at each position of a 17-byte run (so
        // that it falls in the word-at-a-time part and in the byte-wise tail).
        for c in (0u32..0x100).filter_map(char::from_u32) {
            for position in 0..17 {
                let mut text: String = "abcdefghijklmnop".chars().collect();
                text.insert(position, c);
                assert_eq!(written(&text), json_string(&text), "char {c:?} at {position}");
            }
        }
        // Random strings over a mix of plain ASCII, every escaped byte and
        // multi-byte UTF-8, of every length up to 40.
        let alphabet: Vec<char> = "aZ09 ~\u{7f}\"\\/\u{0}\u{8}\u{9}\u{a}\u{c}\u{d}\u{1b}\u{1f}é東🚀\u{fffd}".chars().collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..20_000 {
            let len = round % 41;
            let text: String = (0..len).map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize]).collect();
            assert_eq!(written(&text), json_string(&text), "{text:?}");
        }
    }

    #[test]
    fn escape_mask_marks_exactly_the_bytes_that_need_an_escape() {
        // Every byte value at every position, next to every neighbour kind that
        // could leak a borrow or carry into it (0x00, 0x01, 0x1f, 0x20, 0x7f, 0x80, 0xff).
        for byte in 0..=255u8 {
            for fill in [0x00u8, 0x01, 0x1f, 0x20, b'"', 0x7f, 0x80, 0xff] {
                for position in 0..8 {
                    let mut word = [fill; 8];
                    word[position] = byte;
                    let expected = word
                        .iter()
                        .enumerate()
                        .filter(|(_, &b)| ESCAPE[usize::from(b)] != 0)
                        .fold(0u64, |mask, (i, _)| mask | 0x80 << (8 * i));
                    assert_eq!(escape_mask(u64::from_le_bytes(word)), expected, "{word:02x?}");
                }
            }
        }
    }

    #[test]
    fn write_str_of_long_plain_and_escaped_text() {
        let script = "#!/bin/bash\n#SBATCH --time=1:00\nsrun ./a.out --in /data/x \"q\" \\ \t\n".repeat(500);
        assert_eq!(written(&script), json_string(&script));
        assert_eq!(written(""), "\"\"");
        let plain = "x".repeat(4096);
        assert_eq!(written(&plain), format!("\"{plain}\""));
    }

    #[test]
    fn write_i64_and_write_f64_match_serde_json_with_the_json_c_formatter() {
        let mut rng = Rng(7);
        let mut ints = vec![0i64, 1, -1, 9, 10, -10, 99, 100, i64::MAX, i64::MIN, i64::from(u32::MAX), -4_294_967_294];
        ints.extend((0..1000).map(|_| rng.next() as i64 >> (rng.next() % 64)));
        for v in ints {
            let mut out = Vec::new();
            write_i64(&mut out, v);
            assert_eq!(out, to_vec(&v), "{v}");
        }
        let floats = [0.0, -0.0, 1.0, 4.067_777_633_666_992, 1e17, 1e-5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE];
        for v in floats {
            let mut out = Vec::new();
            write_f64(&mut out, v);
            assert_eq!(out, to_vec(&v), "{v}");
        }
    }

    #[test]
    fn compact_containers_and_integers() {
        let value = serde_json::json!({"a": [1, -2, null, true], "b": {"c/d": "e"}});
        // serde_json::Value without preserve_order keeps keys sorted.
        assert_eq!(
            String::from_utf8(to_vec(&value)).unwrap(),
            r#"{"a":[1,-2,null,true],"b":{"c\/d":"e"}}"#
        );
        assert_eq!(to_vec(&u64::MAX), b"18446744073709551615");
        assert_eq!(to_vec(&i64::MIN), b"-9223372036854775808");
    }
}
