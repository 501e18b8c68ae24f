//! JSON written by hand on the encoding hot paths: a window of a large cluster is millions of
//! series, and building a `serde_json::Value` per series costs more than the bytes themselves.

/// Appends `s` as a JSON string, quotes included.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends `"key":"value"`.
pub fn push_member(out: &mut Vec<u8>, key: &str, value: &str) {
    push_str(out, key);
    out.push(b':');
    push_str(out, value);
}

/// RFC 3339 with milliseconds, UTC, for ms since the epoch (Google's `google-datetime`).
pub fn push_time(out: &mut Vec<u8>, ms: i64) {
    let text = jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_through_serde() {
        for s in ["plain", "q\"uote\\back", "line\nbreak\ttab\u{1}ctl", "ünï"] {
            let mut out = Vec::new();
            push_str(&mut out, s);
            assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), s);
        }
        let mut out = Vec::new();
        push_time(&mut out, 1_700_000_000_123);
        assert_eq!(out, b"\"2023-11-14T22:13:20.123Z\"");
    }
}
