//! The byte reader against the serde path: the same result for every capture and for cut and
//! garbled variants of them, and the byte reader really taking the usual bodies.

use super::super::{SummaryError, SummaryReport, parse_summary, parse_summary_serde};
use super::*;
use heapster_dataflows::catalog::{LabeledMetricId, MetricId};
use heapster_dataflows::model::{Resource, Value};

const FALLBACK_NS: i64 = 1_700_000_000_000_000_000;

/// Every Summary capture, with its node.
const CAPTURES: [(&str, &str); 2] = [
    ("kubelet-summary-gke.json", "gke-lenaic-pool-1-1c8b424c-wnkn"),
    ("kubelet-summary-windows.json", "ip-172-29-160-189.ec2.internal"),
];

/// The captures as served (pretty, one with CRLF) and compact, as most kubelets send them.
fn bodies() -> Vec<(String, NodeTarget, Vec<u8>)> {
    let mut bodies = Vec::new();
    for (file, node) in CAPTURES {
        let path = format!("{}/../shared/captures/{file}", env!("CARGO_MANIFEST_DIR"));
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        bodies.push((format!("{file} compact"), NodeTarget::named(node), serde_json::to_vec(&json).unwrap()));
        bodies.push((file.to_owned(), NodeTarget::named(node), body));
    }
    bodies
}

type Outcome = Result<(SummaryReport, Vec<MetricSet>), String>;

fn outcome(result: Result<SummaryReport, SummaryError>, out: Vec<MetricSet>) -> Outcome {
    match result {
        Ok(report) => Ok((report, out)),
        Err(e) => {
            assert!(out.is_empty(), "an error left sets behind: {e}");
            Err(e.to_string())
        }
    }
}

/// Both paths, each with its own interner; panics (with `what`) when they differ.
fn same(body: &[u8], node: &NodeTarget, what: &str) -> Outcome {
    let run = |parse: fn(&[u8], &NodeTarget, i64, &mut Interner, &mut Vec<MetricSet>) -> _| {
        let mut out = Vec::new();
        outcome(parse(body, node, FALLBACK_NS, &mut Interner::default(), &mut out), out)
    };
    let (bytes, serde) = (run(parse_summary), run(parse_summary_serde));
    assert_eq!(bytes, serde, "{what}: {}", String::from_utf8_lossy(body));
    bytes
}

/// Whether the byte reader takes `body` itself, and what it gave then.
fn fast_only(body: &[u8], node: &NodeTarget) -> Read<Vec<MetricSet>> {
    let text = std::str::from_utf8(body).unwrap();
    let mut out = Vec::new();
    decode(text, node, FALLBACK_NS, &mut Interner::default(), &mut out)?;
    Ok(out)
}

#[test]
fn captures_are_read_by_the_byte_reader_with_the_same_sets() {
    for (what, node, body) in bodies() {
        let (report, sets) = same(&body, &node, &what).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(report.sets >= 10, "{what}: {} sets", report.sets);
        assert_eq!(fast_only(&body, &node).as_ref(), Ok(&sets), "{what} fell back");
    }
}

/// The bytes where a cut changes what the body is: before and after each structural byte and
/// each token's first byte.
fn cut_points(body: &[u8]) -> Vec<usize> {
    let mut points = vec![0, body.len()];
    for (i, pair) in body.windows(2).enumerate() {
        let structural = |b: u8| matches!(b, b'{' | b'}' | b'[' | b']' | b',' | b':' | b'"');
        let token_start = !pair[0].is_ascii_alphanumeric() && pair[1].is_ascii_alphanumeric();
        if structural(pair[0]) || structural(pair[1]) || token_start {
            points.push(i + 1);
        }
    }
    points.sort_unstable();
    points.dedup();
    points
}

/// Every cut point of the smaller compact capture, and a spread of the others' (pretty
/// printing only adds whitespace between the same points).
#[test]
fn cuts_at_structural_points_fail_alike() {
    for (what, node, body) in bodies() {
        let points = cut_points(&body);
        assert!(points.len() > 100, "{what}");
        let step = if what == "kubelet-summary-windows.json compact" { 1 } else { 13 };
        for &cut in points.iter().step_by(step).chain([&body.len()]) {
            let outcome = same(&body[..cut], &node, &format!("{what} cut at {cut}"));
            // Only a cut in the trailing whitespace leaves a whole body.
            assert_eq!(
                outcome.is_ok(),
                body[cut..].iter().all(u8::is_ascii_whitespace),
                "{what} cut at {cut}"
            );
        }
    }
}

/// Where each value after a `:` starts and ends in `body` (strings may hold escapes).
fn values(body: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut in_string = false;
    let mut i = 0;
    while i < body.len() {
        match (in_string, body[i]) {
            (true, b'\\') => i += 1,
            (true, b'"') | (false, b'"') => in_string = !in_string,
            (false, b':') => {
                let start = i + 1 + body[i + 1..].iter().take_while(|b| b.is_ascii_whitespace()).count();
                spans.push((start, value_end(body, start)));
            }
            _ => {}
        }
        i += 1;
    }
    spans
}

fn value_end(body: &[u8], start: usize) -> usize {
    let (mut depth, mut in_string, mut i) = (0usize, false, start);
    while i < body.len() {
        let b = body[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' if depth == 0 => return i + 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth <= 1 => return i + usize::from(depth == 1),
                b'}' | b']' => depth -= 1,
                b',' if depth == 0 => return i,
                _ => {}
            }
        }
        i += 1;
    }
    body.len()
}

/// What a value is replaced by: each kind the serde path reads leniently, or rejects.
const REPLACEMENTS: [&str; 18] = [
    "null",
    "-1",
    "-0",
    "1.5",
    "2e3",
    "01",
    "123456789012345678",
    "1234567890123456789",
    "99999999999999999999",
    "1e400",
    "true",
    "\"12\"",
    "\"a\\u002db\"",
    "\"tab\there\"",
    "{\"x\": [1, {\"y\": null}]}",
    "[]",
    "[null, {}]",
    "{}",
];

#[test]
fn replaced_values_give_the_same_sets_warnings_or_error() {
    let (mut taken, mut fell_back) = (0, 0);
    for (what, node, body) in bodies().into_iter().filter(|(what, ..)| what.ends_with("compact")) {
        let spans = values(&body);
        assert!(spans.len() > 100, "{what}");
        // Every value of the smaller capture; a spread of the larger one's.
        let step = spans.len().div_ceil(300);
        for (k, &(start, end)) in spans.iter().enumerate().filter(|(k, _)| k % step == 0) {
            let replacement = REPLACEMENTS[k % REPLACEMENTS.len()];
            for replacement in [replacement, REPLACEMENTS[(k / REPLACEMENTS.len()) % REPLACEMENTS.len()]] {
                let mut garbled = body[..start].to_vec();
                garbled.extend_from_slice(replacement.as_bytes());
                garbled.extend_from_slice(&body[end..]);
                let _ = same(&garbled, &node, &format!("{what}: value at {start} as {replacement}"));
                match fast_only(&garbled, &node) {
                    Ok(_) => taken += 1,
                    Err(Fallback) => fell_back += 1,
                }
            }
        }
    }
    assert!(taken > 0 && fell_back > 0, "{taken} taken, {fell_back} fell back");
}

/// Broken or odd syntax around the values: the serde path's verdict either way.
#[test]
fn garbled_syntax_gives_the_same_outcome() {
    for (what, node, body) in bodies().into_iter().filter(|(what, ..)| what.ends_with("compact")) {
        let text = String::from_utf8(body).unwrap();
        let edits: Vec<(&str, String)> = vec![
            ("duplicate node", text.replacen("{\"node\":", "{\"node\":null,\"node\":", 1)),
            ("duplicate pods", text.replacen("\"pods\":", "\"pods\":[],\"pods\":", 1)),
            ("duplicate field", text.replacen("\"cpu\":{", "\"cpu\":{\"time\":\"x\",", 1)),
            ("escaped key", text.replacen("\"name\":", "\"n\\u0061me\":", 1)),
            ("trailing comma", text.replacen("}]", "},]", 1)),
            ("trailing text", format!("{text} x")),
            ("two bodies", format!("{text}{text}")),
            ("array root", format!("[{text}]")),
            ("null root", "null".to_owned()),
            ("empty", String::new()),
            ("bom", format!("\u{feff}{text}")),
            ("unquoted key", text.replacen("\"name\":", "name:", 1)),
            ("single quotes", text.replacen("\"name\"", "'name'", 1)),
            ("missing colon", text.replacen("\"name\":", "\"name\"", 1)),
            ("missing comma", text.replacen(",\"", "\"", 1)),
            ("bracket swapped", text.replacen('{', "[", 2)),
            ("pods not an array", text.replacen("\"pods\":[", "\"pods\":{\"a\":[", 1)),
            ("pods null", text.replacen("\"pods\":[", "\"pods\":null,\"x\":[", 1)),
            (
                "unknown deep",
                text.replacen(
                    "{\"node\":",
                    &format!("{{\"x\":{}1{},\"node\":", "[".repeat(200), "]".repeat(200)),
                    1,
                ),
            ),
            (
                "unknown nested",
                text.replacen(
                    "{\"node\":",
                    &format!("{{\"x\":{}1{},\"node\":", "[".repeat(20), "]".repeat(20)),
                    1,
                ),
            ),
            ("non-ascii", text.replacen("\"name\":\"", "\"name\":\"ü€𝄞", 1)),
            ("whitespace", text.replace(',', " ,\r\n\t")),
            (
                "unknown kinds",
                text.replacen("{\"node\":", "{\"x\":[true,false,null,-1.5e-3,0,\"s\",{}],\"node\":", 1),
            ),
            ("bad literal", text.replacen("null", "nul", 1)),
            ("bad number", text.replacen("{\"node\":", "{\"x\":1.e5,\"node\":", 1)),
        ];
        for (edit, garbled) in edits {
            let _ = same(garbled.as_bytes(), &node, &format!("{what}: {edit}"));
        }
    }
}

#[test]
fn nulls_and_unknown_fields_stay_on_the_byte_reader() {
    let body = br#"{"x": {"deep": [1, -2.5e-3, "s", true, null]}, "node": {"nodeName": "n1", "cpu": null,
        "memory": {"time": null, "usageBytes": null, "workingSetBytes": 5, "extra": [{}]}},
        "pods": [null, {"podRef": {"name": "p", "namespace": "ns", "uid": null},
        "containers": [null, {"name": "c", "userDefinedMetrics": [{"name": "m", "type": "gauge", "value": 3}]}],
        "volume": null}]}"#;
    let node = NodeTarget::named("n1");
    let expected = same(body, &node, "nulls").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(expected.1.len(), 3);
    assert_eq!(fast_only(body, &node), Ok(expected.1));
}

#[test]
fn word_tricks_agree_with_bytes() {
    let word = |s: &[u8]| word_at(s, 0).unwrap();
    assert_eq!(parse_eight_digits(word(b"12345678")), 12_345_678);
    assert_eq!(parse_eight_digits(word(b"00000009")), 9);
    assert_eq!(parse_eight_digits(word(b"99999999")), 99_999_999);
    assert_eq!((leading_digits(word(b"01234567")), leading_digits(word(b"98765432"))), (8, 8));
    for b in (0..=255u8).filter(|b| !b.is_ascii_digit()) {
        for at in 0..8 {
            let mut chunk = *b"11111111";
            chunk[at] = b;
            assert_eq!(leading_digits(word(&chunk)), at, "{b} at {at}");
            // The first stop of a string is found exactly, whatever follows it.
            let mut text = *b"abcdefgh";
            text[at] = b;
            let first = (0..8).find(|&k| matches!(text[k], b'"' | b'\\' | 0..=0x1f));
            let stops = string_stops(word(&text));
            assert_eq!((stops != 0).then(|| stops.trailing_zeros() as usize / 8), first, "{b} at {at}");
        }
    }
    assert!(word_at(b"1234567", 0).is_none() && word_at(b"12345678", 1).is_none());
    // Every length of number before each kind of end, near and far from the end of the body.
    for digits in 0..=20 {
        let number: String = (0..digits).map(|k| char::from(b'1' + (k * 7 % 9) as u8)).collect();
        for end in ["", ",", "}", " ", ".5", "e3", "x", "\u{e9}"] {
            for pad in [0, 3, 9] {
                let text = format!("{number}{end}{}", " ".repeat(pad));
                let mut r = Reader { text: &text, bytes: text.as_bytes(), at: 0 };
                let expected = match number.parse::<i64>() {
                    Ok(n) if digits <= MAX_DIGITS && !matches!(end, ".5" | "e3") => Ok(n),
                    _ => Err(Fallback),
                };
                assert_eq!(r.uint(), expected, "{text:?}");
                if expected.is_ok() {
                    assert_eq!(r.at, digits, "{text:?}");
                }
            }
        }
    }
    assert_eq!(Reader { text: "0123", bytes: b"0123", at: 0 }.uint(), Err(Fallback), "leading zero");
    // Skipped numbers end where JSON's grammar says, however long their runs of digits.
    for number in ["0", "-7", "12345678901234567890123", "-1.25e-300", "3.14159265358979323846E+10", "1e5"] {
        for end in ["", ",", "}", "         "] {
            let text = format!("{number}{end}");
            let mut r = Reader { text: &text, bytes: text.as_bytes(), at: 0 };
            assert_eq!(r.skip(0), Ok(()), "{text:?}");
            assert_eq!(r.at, number.len(), "{text:?}");
        }
    }
    for bad in ["1.", "1.e5", "-", "1e", "1e+"] {
        let text = format!("{bad}         ");
        assert_eq!(Reader { text: &text, bytes: text.as_bytes(), at: 0 }.skip(0), Err(Fallback), "{bad:?}");
    }
    for b in 0..=255u8 {
        let mut chunk = *b"12345678";
        chunk[5] = b;
        let k = if b.is_ascii_digit() { 8 } else { 5 };
        assert_eq!(leading_digits(word(&chunk)), k, "{b}");
    }
    // The summary's inline comparison of short strings (the tests' own `same` is another).
    let same = super::super::same;
    let text = b"abcdefghijklmnopqrstuvwxyz0123456789";
    for n in 0..text.len() {
        let a = &text[..n];
        assert!(same(a, a), "{n}");
        assert!(!same(a, &text[..n + 1]) && !same(&text[1..n + 1], &text[..n]) || n == 0, "{n}");
        for at in 0..n {
            let mut b = a.to_vec();
            b[at] ^= 0x20;
            assert!(!same(a, &b), "{n}: byte {at}");
        }
    }
    let mut r = Reader { text: "1234567890123456 ", bytes: b"1234567890123456 ", at: 0 };
    assert_eq!(r.uint(), Ok(1_234_567_890_123_456));
    let mut r = Reader {
        text: "\"abcdefghij\u{e9}klmnopq\"",
        bytes: "\"abcdefghij\u{e9}klmnopq\"".as_bytes(),
        at: 0,
    };
    assert_eq!(r.string(), Ok("abcdefghij\u{e9}klmnopq"));
}

#[test]
fn keys_out_of_their_usual_order_stay_on_the_byte_reader() {
    // Keys reversed, a skipped key twice, and keys that begin like the ones expected next.
    let body = br#"{"pods": [{"containers": [{"memory": {"majorPageFaults": 2, "usageBytes": 7,
        "availableBytes": 1, "availableBytes": 2, "time": "2026-11-01T09:59:59Z"},
        "rootfs": {"inodesUsed": 3, "inodes": 10, "inodesFree": 4, "usedBytes": 5}, "name": "c",
        "cpu": {"usageCoreNanoSeconds": 9, "usageNanoCores": 1, "usageNanoCores": 1}}],
        "podRef": {"uid": "u", "namespace": "ns", "name": "p"}}],
        "node": {"fs": {"inodes": 1, "inodesFree": 2}, "nodeName": "n1"}}"#;
    let node = NodeTarget::named("n1");
    let (_, sets) = same(body, &node, "out of order").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sets.len(), 3);
    assert_eq!(fast_only(body, &node).as_ref(), Ok(&sets));
    let container = sets.iter().find(|s| s.key.to_string() == "namespace:ns/pod:p/container:c").unwrap();
    assert_eq!(container.values.get_i64(MetricId::MemoryUsage), Some(7));
    assert_eq!(container.values.get_i64(MetricId::CpuUsage), Some(9));
    assert_eq!(container.labeled_value(LabeledMetricId::FsInodes, &Resource::ROOT_FS), Some(Value::Int(10)));
    assert_eq!(
        container.labeled_value(LabeledMetricId::FsInodesFree, &Resource::ROOT_FS),
        Some(Value::Int(4))
    );
    // A field read twice, after a skipped key, still leaves the body to the serde path.
    let twice =
        br#"{"node": {"memory": {"time": null, "availableBytes": 1, "usageBytes": 1, "usageBytes": 2}}}"#;
    assert_eq!(fast_only(twice, &node), Err(Fallback));
    assert!(same(twice, &node, "twice").is_err());
}
