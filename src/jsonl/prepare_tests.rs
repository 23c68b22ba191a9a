//! Slicing, rewriting and validating in one pass (`spec.input.byteRange` and `overrides`).

use super::*;

const CHAT: &str = "/v1/chat/completions";

fn line(id: &str, model: &str) -> String {
    format!(
        r#"{{"custom_id":"{id}","method":"POST","url":"{CHAT}","body":{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}}}"#
    )
}

/// The slice of `data` for `range`, streamed in chunks of `chunk` bytes from `read_start`.
fn streamed(data: &[u8], range: std::ops::Range<u64>, chunk: usize) -> Vec<u8> {
    let from = (read_start(range.start) as usize).min(data.len());
    let mut slicer = LineAlignedSlice::new(range);
    let mut kept = Vec::new();
    for piece in data[from..].chunks(chunk) {
        if slicer.is_done() {
            break;
        }
        kept.extend_from_slice(slicer.take(piece));
    }
    kept
}

fn sliced(data: &[u8], range: std::ops::Range<u64>) -> &[u8] {
    &data[aligned_range(data, range)]
}

const DATA: &[u8] = b"aa\nbbb\r\ncc\n\nd";

#[test]
fn starts_and_ends_at_line_boundaries_are_kept() {
    assert_eq!(sliced(DATA, 0..3), b"aa\n");
    assert_eq!(sliced(DATA, 3..8), b"bbb\r\n");
    assert_eq!(sliced(DATA, 8..12), b"cc\n\n");
    assert_eq!(sliced(DATA, 0..13), DATA);
}

#[test]
fn a_start_inside_a_line_moves_to_the_next_and_an_end_inside_extends() {
    assert_eq!(sliced(DATA, 1..8), b"bbb\r\n");
    assert_eq!(sliced(DATA, 0..1), b"aa\n");
    assert_eq!(sliced(DATA, 3..4), b"bbb\r\n");
    // An end between `\r` and `\n` is inside the line.
    assert_eq!(sliced(DATA, 3..7), b"bbb\r\n");
}

#[test]
fn the_last_line_without_newline_and_ranges_past_the_end() {
    assert_eq!(sliced(DATA, 12..13), b"d");
    assert_eq!(sliced(DATA, 8..1000), b"cc\n\nd");
    assert_eq!(sliced(DATA, 13..20), b"");
    // A start inside the last line: that line belongs to the slice before.
    assert_eq!(sliced(DATA, 12..20), b"d");
    assert_eq!(sliced(b"abc", 1..3), b"");
}

#[test]
fn empty_slices() {
    assert_eq!(sliced(DATA, 0..0), b"");
    assert_eq!(sliced(DATA, 3..3), b"");
    // The line the start falls in runs to or past the end.
    assert_eq!(sliced(DATA, 4..6), b"");
    assert_eq!(sliced(DATA, 4..8), b"");
}

#[test]
fn adjacent_ranges_tile_the_source_exactly_once() {
    for a in 0..=DATA.len() as u64 {
        for b in a..=DATA.len() as u64 {
            let mut joined = sliced(DATA, 0..a).to_vec();
            joined.extend_from_slice(sliced(DATA, a..b));
            joined.extend_from_slice(sliced(DATA, b..DATA.len() as u64));
            assert_eq!(joined, DATA, "split at {a}, {b}");
        }
    }
}

#[test]
fn streaming_in_any_chunk_size_gives_the_same_slice() {
    for start in 0..=DATA.len() as u64 + 1 {
        for end in start..=DATA.len() as u64 + 1 {
            let whole = sliced(DATA, start..end);
            for chunk in 1..=DATA.len() {
                assert_eq!(streamed(DATA, start..end, chunk), whole, "{start}..{end} by {chunk}");
            }
        }
    }
}

fn overrides(model: Option<&str>, prefix: Option<&str>) -> Rewrite {
    Rewrite {
        model: model.map(Into::into),
        custom_id_prefix: prefix.map(Into::into),
    }
}

fn rendered(report: &Report) -> String {
    report.render(10)
}

#[test]
fn without_overrides_the_bytes_pass_through_unchanged() {
    let data = format!("{}\r\n\n{}", line("a", "m"), line("b", "m"));
    let (out, report) = prepare_bytes(data.as_bytes(), None, Rewrite::default(), CHAT, Limits::default());
    assert!(report.is_valid(), "{}", rendered(&report));
    assert_eq!(out, data.as_bytes());
    assert_eq!(report.summary.bytes, data.len() as u64);
}

#[test]
fn overrides_rewrite_every_line_and_drop_blank_lines() {
    let data = format!("{}\r\n\n{}", line("a", "old"), line("b", "old"));
    let rewrite = overrides(Some("new"), Some("new/"));
    let (out, report) = prepare_bytes(data.as_bytes(), None, rewrite, CHAT, Limits::default());
    assert!(report.is_valid(), "{}", rendered(&report));
    let expected = format!("{}\n{}\n", line("new/a", "new"), line("new/b", "new"));
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    assert_eq!(report.summary.bytes, expected.len() as u64);
    assert_eq!(report.summary.models.get("new"), Some(&2));
}

#[test]
fn validation_sees_the_rewritten_lines() {
    // No model in the source: the override supplies it.
    let data = format!(r#"{{"custom_id":"a","method":"POST","url":"{CHAT}","body":{{"messages":[]}}}}"#);
    let (_, plain) = prepare_bytes(data.as_bytes(), None, Rewrite::default(), CHAT, Limits::default());
    assert!(rendered(&plain).contains("body.model"), "{}", rendered(&plain));
    let (_, rewritten) = prepare_bytes(
        data.as_bytes(),
        None,
        overrides(Some("m"), None),
        CHAT,
        Limits::default(),
    );
    assert!(rewritten.is_valid(), "{}", rendered(&rewritten));
}

#[test]
fn uniqueness_is_checked_after_rewriting_and_names_source_lines() {
    let data = format!("{}\n\n{}\n{}\n", line("a", "m"), line("b", "m"), line("a", "m"));
    let (_, report) = prepare_bytes(
        data.as_bytes(),
        None,
        overrides(None, Some("p/")),
        CHAT,
        Limits::default(),
    );
    assert_eq!(
        rendered(&report),
        "line 4: custom_id \"p/a\" is a duplicate of line 1 (custom_id)"
    );
}

#[test]
fn the_byte_limit_applies_to_what_is_uploaded() {
    let data = format!("{}\n", line("a", "m"));
    let limits = Limits {
        max_bytes: data.len() as u64 + 5,
        ..Limits::default()
    };
    let (_, fits) = prepare_bytes(data.as_bytes(), None, Rewrite::default(), CHAT, limits);
    assert!(fits.is_valid(), "{}", rendered(&fits));
    let (_, grown) = prepare_bytes(
        data.as_bytes(),
        None,
        overrides(Some("a-longer-model"), None),
        CHAT,
        limits,
    );
    assert!(rendered(&grown).contains("BatchSweep"), "{}", rendered(&grown));
}

#[test]
fn a_slice_numbers_lines_as_in_the_source() {
    let lines = [line("a", "m"), line("b", "m"), "{broken".to_string(), line("d", "m")];
    let data: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let second = (lines[0].len() + 1) as u64;
    let third = second + (lines[1].len() + 1) as u64;
    let range = Some(second + 3..third + 2);
    let (out, report) = prepare_bytes(data.as_bytes(), range, Rewrite::default(), CHAT, Limits::default());
    // Starts inside line 2 and ends inside line 3: line 3 (the broken one) only.
    assert_eq!(String::from_utf8(out).unwrap(), "{broken\n");
    assert!(
        rendered(&report).starts_with("line 3: not valid JSON"),
        "{}",
        rendered(&report)
    );
}

#[test]
fn an_empty_slice_has_no_requests() {
    let data = format!("{}\n", line("a", "m"));
    let (out, report) = prepare_bytes(data.as_bytes(), Some(5..9), Rewrite::default(), CHAT, Limits::default());
    assert!(out.is_empty());
    assert_eq!(rendered(&report), "the file has no requests");
}

#[test]
fn the_streaming_preparer_stops_once_the_slice_is_done() {
    let data: String = (0..100)
        .map(|i| format!("{}\n", line(&format!("id{i}"), "m")))
        .collect();
    let one = line("id0", "m").len() as u64 + 1;
    let mut preparer = Preparer::new(CHAT, Limits::default(), Rewrite::default()).sliced(one * 10..one * 20);
    let mut out = Vec::new();
    let mut fed = 0;
    for chunk in data.as_bytes()[read_start(one * 10) as usize..].chunks(100) {
        if preparer.is_done() {
            break;
        }
        fed += chunk.len();
        preparer.feed(chunk, &mut out);
    }
    let report = preparer.finish(&mut out);
    assert_eq!(report.summary.requests, 10);
    assert!(fed < data.len() / 2, "read {fed} bytes of {}", data.len());
    assert!(String::from_utf8(out).unwrap().starts_with(&line("id10", "m")));
}

#[test]
fn the_id_digest_is_of_the_ids_as_uploaded() {
    let input = "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\"}}\n\
                 {\"custom_id\":\"b\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\"}}\n";
    let rewrite = Rewrite {
        model: None,
        custom_id_prefix: Some("p/".into()),
    };
    let (_, report) = crate::jsonl::prepare_bytes(
        input.as_bytes(),
        None,
        rewrite,
        "/v1/chat/completions",
        Limits::default(),
    );
    assert!(report.is_valid(), "{}", report.render(5));
    let digest = report.summary.ids.unwrap();
    let mut expected = crate::jsonl::IdDigest::with_key(digest.key);
    expected.add(b"p/a");
    expected.add(b"p/b");
    assert_eq!(digest, expected);
    let (_, again) = crate::jsonl::prepare_bytes(
        input.as_bytes(),
        None,
        Rewrite::default(),
        "/v1/chat/completions",
        Limits::default(),
    );
    assert_ne!(
        again.summary.ids.unwrap().key,
        digest.key,
        "a fresh key every validation"
    );
}
