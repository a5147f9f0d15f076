//! The OCI runtime's `--log` file: runc (and crun, youki) write one JSON
//! object per line, `{"level":"error","msg":"...","time":"..."}`. The
//! monitor only needs the last error-level `msg`, so this is a small
//! scanner for flat JSON objects rather than a JSON library.

/// Parses a JSON string starting at the opening quote; returns the
/// decoded string and the bytes after the closing quote.
fn parse_string(s: &[u8]) -> Option<(String, &[u8])> {
    let mut rest = s.strip_prefix(b"\"")?;
    let mut out: Vec<u8> = Vec::new();
    loop {
        let (&b, tail) = rest.split_first()?;
        rest = tail;
        match b {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), rest)),
            b'\\' => {
                let (&e, tail) = rest.split_first()?;
                rest = tail;
                match e {
                    b'"' | b'\\' | b'/' => out.push(e),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'u' => {
                        let (unit, tail) = hex4(rest)?;
                        rest = tail;
                        let c = if (0xD800..0xDC00).contains(&unit) {
                            // A surrogate pair: \uD83D\uDE00.
                            let low = rest
                                .strip_prefix(b"\\u")
                                .and_then(hex4)
                                .filter(|(low, _)| (0xDC00..0xE000).contains(low));
                            match low {
                                Some((low, tail)) => {
                                    rest = tail;
                                    char::from_u32(
                                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00),
                                    )
                                }
                                None => None,
                            }
                        } else {
                            char::from_u32(unit)
                        };
                        let mut utf8 = [0; 4];
                        out.extend_from_slice(
                            c.unwrap_or('\u{FFFD}').encode_utf8(&mut utf8).as_bytes(),
                        );
                    }
                    _ => return None,
                }
            }
            _ => out.push(b),
        }
    }
}

fn hex4(s: &[u8]) -> Option<(u32, &[u8])> {
    let digits = std::str::from_utf8(s.get(..4)?).ok()?;
    Some((u32::from_str_radix(digits, 16).ok()?, &s[4..]))
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    &s[n..]
}

/// Skips a non-string value (number, literal, or a nested object or
/// array, whose strings may hold brackets).
fn skip_value(s: &[u8]) -> Option<&[u8]> {
    let mut depth = 0usize;
    let mut rest = s;
    loop {
        match rest.first()? {
            b'"' => rest = parse_string(rest)?.1,
            b'{' | b'[' => {
                depth += 1;
                rest = &rest[1..];
            }
            b'}' | b']' if depth == 0 => return Some(rest),
            b'}' | b']' => {
                depth -= 1;
                rest = &rest[1..];
            }
            b',' if depth == 0 => return Some(rest),
            _ => rest = &rest[1..],
        }
    }
}

/// The string members of a one-line JSON object, as (key, value) pairs;
/// other members are skipped. None when the line is not such an object.
pub fn string_fields(line: &str) -> Option<Vec<(String, String)>> {
    let mut rest = skip_ws(line.as_bytes()).strip_prefix(b"{")?;
    let mut fields = Vec::new();
    loop {
        rest = skip_ws(rest);
        if let Some(tail) = rest.strip_prefix(b"}") {
            return skip_ws(tail).is_empty().then_some(fields);
        }
        let (key, tail) = parse_string(rest)?;
        rest = skip_ws(skip_ws(tail).strip_prefix(b":")?);
        if rest.first() == Some(&b'"') {
            let (value, tail) = parse_string(rest)?;
            fields.push((key, value));
            rest = tail;
        } else {
            rest = skip_value(rest)?;
        }
        rest = skip_ws(rest);
        if let Some(tail) = rest.strip_prefix(b",") {
            rest = tail;
        }
    }
}

/// The `msg` of the last line whose `level` is `error` (or `fatal`, which
/// some runtimes use for the message they die with).
pub fn last_error(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .filter_map(string_fields)
        .filter(|fields| {
            fields
                .iter()
                .any(|(k, v)| k == "level" && (v == "error" || v == "fatal"))
        })
        .filter_map(|fields| fields.into_iter().find(|(k, _)| k == "msg").map(|f| f.1))
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_error_line() {
        let log = r#"{"level":"debug","msg":"nsexec started","time":"2026-01-01T00:00:00Z"}
{"level":"error","msg":"runc create failed: unable to start container process: exec: \"/nonexistent\": stat /nonexistent: no such file or directory","time":"2026-01-01T00:00:00Z"}
{"level":"warning","msg":"later warning","time":"2026-01-01T00:00:00Z"}
"#;
        assert_eq!(
            last_error(log).as_deref(),
            Some(
                "runc create failed: unable to start container process: exec: \"/nonexistent\": \
                 stat /nonexistent: no such file or directory"
            )
        );
    }

    #[test]
    fn last_of_several_errors_and_odd_lines() {
        let log = "not json\n\
                   {\"level\":\"error\",\"msg\":\"first\"}\n\
                   {\"msg\":\"second\",\"n\":12,\"nested\":{\"a\":[1,\"}\"]},\"level\":\"error\"}\n\
                   {\"level\":\"error\"}\n\
                   {\"level\":\"error\",\"msg\":\"trunc\n";
        assert_eq!(last_error(log).as_deref(), Some("second"));
        assert_eq!(last_error("").as_deref(), None);
        assert_eq!(last_error("{\"level\":\"info\",\"msg\":\"x\"}"), None);
    }

    #[test]
    fn escapes() {
        let fields = string_fields(r#"{"msg":"a\nb\t\"c\" \\ \/ \u00e9 \ud83d\ude00 \ud800"}"#)
            .expect("object");
        assert_eq!(fields[0].1, "a\nb\t\"c\" \\ / \u{e9} \u{1F600} \u{FFFD}");
        assert!(string_fields(r#"{"msg":"bad \q"}"#).is_none());
        assert!(string_fields(r#"{"msg":"x"} trailing"#).is_none());
    }
}
