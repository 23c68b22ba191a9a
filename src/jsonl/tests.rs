//! Rule-by-rule tests of the validator through its public API.

use super::*;

const CHAT: &str = "/v1/chat/completions";

fn line(id: &str, model: &str) -> String {
    format!(
        r#"{{"custom_id":"{id}","method":"POST","url":"{CHAT}","body":{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}}}"#
    )
}

/// A fixed key for the custom_id digest, so reports of the same file compare equal.
const KEY: [u8; 16] = [7; 16];

fn validate_with(data: &[u8], limits: Limits) -> Report {
    let mut v = Validator::new(CHAT, limits).with_id_key(KEY);
    v.feed(data);
    v.finish()
}

fn validate(data: &str) -> Report {
    validate_with(data.as_bytes(), Limits::default())
}

/// The rendered problems of `data`, one string per problem.
fn problems(data: &str) -> Vec<String> {
    validate(data).problems.iter().map(Problem::to_string).collect()
}

/// `lines` joined with `\n`, with a final newline.
fn file(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn a_valid_file() {
    let report = validate(&file(&[line("a", "m1"), line("b", "m1")]));
    assert!(report.is_valid(), "{}", report.render(10));
    assert_eq!(report.problem_count, 0);
    assert_eq!(report.summary.requests, 2);
    assert_eq!(report.summary.models.get("m1"), Some(&2));
}

#[test]
fn summary_counts_bytes_requests_and_models() {
    let data = file(&[line("a", "gpt-4o"), line("b", "gpt-4o-mini"), line("c", "gpt-4o")]);
    let summary = validate(&data).summary;
    assert_eq!(summary.bytes, data.len() as u64);
    assert_eq!(summary.requests, 3);
    let models: Vec<_> = summary.models.into_iter().collect();
    assert_eq!(models, vec![("gpt-4o".to_owned(), 2), ("gpt-4o-mini".to_owned(), 1)]);
}

#[test]
fn crlf_and_missing_final_newline_are_valid() {
    let data = format!("{}\r\n{}", line("a", "m"), line("b", "m"));
    let report = validate(&data);
    assert!(report.is_valid(), "{}", report.render(10));
    assert_eq!(report.summary.requests, 2);
    let data = format!("{}\r\n{}\r\n", line("a", "m"), line("b", "m"));
    assert!(validate(&data).is_valid());
}

#[test]
fn any_utf8_text_is_valid() {
    let data = file(&[
        line("emoji-😀", "m"),
        line("日本語", "m"),
        line("ü\\u00e9\\ud83d\\ude00", "modèle"),
        r#"{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"汉字 🎉 ç \" \\ \n"}]}}"#.to_owned(),
    ]);
    let report = validate(&data);
    assert!(report.is_valid(), "{}", report.render(10));
    assert_eq!(report.summary.models.get("modèle"), Some(&1));
}

#[test]
fn mixed_models_and_extra_fields_are_valid() {
    let data = file(&[
        line("a", "m1"),
        line("b", "m2"),
        r#"{"extra":{"deep":[1,2,{"x":null}]},"custom_id":"c","method":"POST","url":"/v1/chat/completions","body":{"model":"m3","temperature":0.2,"stream":false,"messages":[],"tools":[{"type":"function"}]}}"#.to_owned(),
    ]);
    let report = validate(&data);
    assert!(report.is_valid(), "{}", report.render(10));
    assert_eq!(report.summary.models.len(), 3);
}

#[test]
fn blank_lines_are_skipped_but_numbered() {
    let data = format!("\n{}\n   \n\t\r\n{}\n\n", line("a", "m"), line("a", "m"));
    let report = validate(&data);
    assert_eq!(report.summary.requests, 2);
    assert_eq!(
        problems(&data),
        vec!["line 5: custom_id \"a\" is a duplicate of line 2 (custom_id)"]
    );
}

#[test]
fn empty_files_have_no_requests() {
    for data in ["", "\n", "\r\n  \n"] {
        assert_eq!(problems(data), vec!["the file has no requests"], "{data:?}");
    }
}

#[test]
fn invalid_json() {
    let data = file(&[line("a", "m"), "{\"custom_id\": }".to_owned(), "not json".to_owned()]);
    assert_eq!(
        problems(&data),
        vec![
            "line 2: not valid JSON: expected value at column 15 (line)",
            "line 3: not valid JSON: expected ident at column 2 (line)",
        ]
    );
    let data = file(&[format!("{} {{}}", line("a", "m"))]);
    let msgs = problems(&data);
    assert!(msgs[0].starts_with("line 1: not valid JSON: trailing characters at column"));
}

#[test]
fn a_line_must_be_an_object() {
    let data = file(&["[1]".into(), "\"s\"".into(), "3".into(), "null".into(), "true".into()]);
    assert_eq!(
        problems(&data),
        vec![
            "line 1: a request must be a JSON object, got array (line)",
            "line 2: a request must be a JSON object, got string (line)",
            "line 3: a request must be a JSON object, got number (line)",
            "line 4: a request must be a JSON object, got null (line)",
            "line 5: a request must be a JSON object, got boolean (line)",
        ]
    );
}

#[test]
fn missing_fields() {
    assert_eq!(
        problems("{}\n"),
        vec![
            "line 1: custom_id is missing (custom_id)",
            "line 1: method is missing (method)",
            "line 1: url is missing (url)",
            "line 1: body is missing (body)",
        ]
    );
}

#[test]
fn custom_id_rules() {
    let data = file(&[
        line("a", "m"),
        line("", "m"),
        line("a", "m"),
        r#"{"custom_id":7,"method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}"#.into(),
        line("b", "m"),
        line("a", "m"),
    ]);
    assert_eq!(
        problems(&data),
        vec![
            "line 2: custom_id is empty (custom_id)",
            "line 3: custom_id \"a\" is a duplicate of line 1 (custom_id)",
            "line 4: custom_id must be a string, got number (custom_id)",
            "line 6: custom_id \"a\" is a duplicate of line 1 (custom_id)",
        ]
    );
}

#[test]
fn duplicates_take_their_place_among_the_other_problems() {
    // Duplicates are found once the whole file is read; the report still lists every problem
    // in line order, the duplicate first on its line, and the cap keeps the first by line.
    let data = file(&[
        line("a", "m"),
        line("a", "m").replace("POST", "GET"),
        line("b", ""),
        line("a", "m"),
        line("c", "m").replace("POST", "GET"),
    ]);
    let all = vec![
        "line 2: custom_id \"a\" is a duplicate of line 1 (custom_id)",
        "line 2: method must be \"POST\", got \"GET\" (method)",
        "line 3: body.model is empty (body.model)",
        "line 4: custom_id \"a\" is a duplicate of line 1 (custom_id)",
        "line 5: method must be \"POST\", got \"GET\" (method)",
    ];
    assert_eq!(problems(&data), all);
    let mut capped = Validator::new(CHAT, Limits::default()).with_problem_cap(3);
    capped.feed(data.as_bytes());
    let report = capped.finish();
    assert_eq!(report.problem_count, 5);
    let shown: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    assert_eq!(shown, all[..3]);
}

#[test]
fn custom_ids_compare_decoded() {
    let data = file(&[line("é", "m"), line("\\u00e9", "m")]);
    assert_eq!(
        problems(&data),
        vec!["line 2: custom_id \"é\" is a duplicate of line 1 (custom_id)"]
    );
}

#[test]
fn method_must_be_post() {
    let data = file(&[
        line("a", "m").replace("POST", "GET"),
        line("b", "m").replace("\"POST\"", "1"),
        line("c", "m").replace("POST", "post"),
    ]);
    assert_eq!(
        problems(&data),
        vec![
            "line 1: method must be \"POST\", got \"GET\" (method)",
            "line 2: method must be \"POST\", got number (method)",
            "line 3: method must be \"POST\", got \"post\" (method)",
        ]
    );
}

#[test]
fn url_must_match_the_endpoint() {
    let data = file(&[
        line("a", "m"),
        line("b", "m").replace(CHAT, "/v1/embeddings"),
        line("c", "m").replace("\"/v1/chat/completions\"", "null"),
    ]);
    assert_eq!(
        problems(&data),
        vec![
            "line 2: url \"/v1/embeddings\" does not match the batch endpoint \"/v1/chat/completions\" (url)",
            "line 3: url must be a string, got null (url)",
        ]
    );
    let mut v = Validator::new("/v1/embeddings", Limits::default());
    v.feed(line("a", "m").replace(CHAT, "/v1/embeddings").as_bytes());
    assert!(v.finish().is_valid());
}

#[test]
fn body_rules() {
    let head = r#"{"custom_id":"ID","method":"POST","url":"/v1/chat/completions","body":"#;
    let with_body = |id: &str, body: &str| format!("{}{body}}}", head.replace("ID", id));
    let data = file(&[
        with_body("a", "[]"),
        with_body("b", "{}"),
        with_body("c", r#"{"model":4}"#),
        with_body("d", r#"{"model":""}"#),
        with_body("e", r#"{"model":"m","stream":true}"#),
        with_body("f", r#"{"model":"m","stream":null}"#),
    ]);
    assert_eq!(
        problems(&data),
        vec![
            "line 1: body must be an object, got array (body)",
            "line 2: body.model is missing (body.model)",
            "line 3: body.model must be a string, got number (body.model)",
            "line 4: body.model is empty (body.model)",
            "line 5: body.stream is true; streaming is not supported in a batch (body.stream)",
        ]
    );
}

#[test]
fn several_problems_on_one_line_are_all_reported() {
    let data = r#"{"custom_id":"","method":"GET","url":"/x","body":{"stream":true}}"#;
    assert_eq!(
        problems(data),
        vec![
            "line 1: custom_id is empty (custom_id)",
            "line 1: method must be \"POST\", got \"GET\" (method)",
            "line 1: url \"/x\" does not match the batch endpoint \"/v1/chat/completions\" (url)",
            "line 1: body.model is missing (body.model)",
            "line 1: body.stream is true; streaming is not supported in a batch (body.stream)",
        ]
    );
}

#[test]
fn invalid_utf8_is_reported_with_line_and_byte() {
    let mut data = file(&[line("a", "m")]).into_bytes();
    data.extend_from_slice(b"{\"custom_id\":\"b\xff\"}\n");
    data.extend_from_slice(file(&[line("c", "m")]).as_bytes());
    let report = validate_with(&data, Limits::default());
    let msgs: Vec<String> = report.problems.iter().map(Problem::to_string).collect();
    assert_eq!(msgs, vec!["line 2: invalid UTF-8 at byte 16 of the line"]);
    assert_eq!(report.problems[0].field, None);
    assert_eq!(report.summary.requests, 3);
}

#[test]
fn a_leading_byte_order_mark_is_reported() {
    let data = format!("\u{feff}{}\n", line("a", "m"));
    assert_eq!(
        problems(&data),
        vec!["line 1: the file starts with a byte order mark (BOM); remove it (line)"]
    );
}

#[test]
fn request_limit() {
    let limits = Limits {
        max_requests: 2,
        ..Limits::default()
    };
    let lines: Vec<String> = (0..3).map(|n| line(&n.to_string(), "m")).collect();
    let report = validate_with(file(&lines[..2]).as_bytes(), limits);
    assert!(report.is_valid());
    let report = validate_with(file(&lines).as_bytes(), limits);
    assert_eq!(
        report.render(10),
        "the file has 3 requests; the limit is 2 (use a BatchSweep to split it)"
    );
    assert_eq!(report.summary.requests, 3);
}

#[test]
fn byte_limit_and_lines_longer_than_it() {
    let a = line("a", "m");
    let limits = Limits {
        max_bytes: a.len() as u64 + 1,
        ..Limits::default()
    };
    assert!(validate_with(file(std::slice::from_ref(&a)).as_bytes(), limits).is_valid());

    let long = line(&"x".repeat(40), "m");
    let data = file(&[a, long.clone(), line("c", "m")]);
    let report = validate_with(data.as_bytes(), limits);
    let expected = [
        format!(
            "the file is {} bytes; the limit is {} (use a BatchSweep to split it)",
            data.len(),
            limits.max_bytes
        ),
        format!(
            "line 2: the line is {} bytes, longer than the {}-byte limit (line)",
            long.len(),
            limits.max_bytes
        ),
    ];
    assert_eq!(report.render(10), expected.join("\n"));
    // Counting goes on past the limit: line 3 was checked and counted.
    assert_eq!(report.summary.requests, 3);
    assert_eq!(report.summary.models.get("m"), Some(&2));
}

#[test]
fn problems_are_capped_but_all_counted() {
    let lines: Vec<String> = (0..2500).map(|_| "nope".to_owned()).collect();
    let report = validate(&file(&lines));
    assert_eq!(report.problems.len(), DEFAULT_PROBLEM_CAP);
    assert_eq!(report.problem_count, 2500);
    let rendered = report.render(3);
    let rendered: Vec<&str> = rendered.lines().collect();
    assert_eq!(rendered.len(), 4);
    assert_eq!(rendered[0], "line 1: not valid JSON: expected ident at column 2 (line)");
    assert_eq!(rendered[3], "and 2497 more problems");
}

#[test]
fn file_problems_come_first_within_the_cap() {
    let limits = Limits {
        max_requests: 1,
        ..Limits::default()
    };
    let data = file(&["x".into(), "y".into(), "z".into()]);
    let mut v = Validator::new(CHAT, limits).with_problem_cap(2);
    v.feed(data.as_bytes());
    let report = v.finish();
    assert_eq!(report.problem_count, 4);
    assert_eq!(
        report.render(usize::MAX),
        "the file has 3 requests; the limit is 1 (use a BatchSweep to split it)\n\
         line 1: not valid JSON: expected value at column 1 (line)\n\
         and 2 more problems"
    );
}

/// A small file mixing valid and invalid lines, CRLF, blank lines, multi-byte text and a
/// missing final newline.
fn mixed_file() -> Vec<u8> {
    let mut data = Vec::new();
    data.extend_from_slice(line("a", "m1").as_bytes());
    data.extend_from_slice(b"\r\n\n");
    data.extend_from_slice(line("日本😀", "m2").as_bytes());
    data.extend_from_slice(b"\n{bad json}\r\n");
    data.extend_from_slice(line("a", "m1").replace("POST", "GET").as_bytes());
    data.extend_from_slice(b"\n{\"custom_id\":\"\xe2\x82\"}\n  \n");
    data.extend_from_slice(line("z", "m1").as_bytes());
    data
}

#[test]
fn every_chunking_gives_the_same_report() {
    let data = mixed_file();
    let whole = validate_with(&data, Limits::default());
    assert_eq!(whole.summary.requests, 6);
    assert_eq!(whole.problem_count, 4, "{}", whole.render(10));
    for i in 0..=data.len() {
        for j in (i..=data.len()).step_by(7) {
            let mut v = Validator::new(CHAT, Limits::default()).with_id_key(KEY);
            for part in [&data[..i], &data[i..j], &data[j..]] {
                v.feed(part);
            }
            let report = v.finish();
            assert_eq!(report.summary, whole.summary, "split at {i},{j}");
            assert_eq!(report.problems, whole.problems, "split at {i},{j}");
        }
    }
    let mut v = Validator::new(CHAT, Limits::default()).with_id_key(KEY);
    for byte in data.chunks(1) {
        v.feed(byte);
    }
    assert_eq!(v.finish().problems, whole.problems);
}

#[test]
fn supported_endpoints() {
    assert_eq!(SUPPORTED_ENDPOINTS.len(), 5);
    assert!(is_supported_endpoint("/v1/chat/completions"));
    assert!(is_supported_endpoint("/v1/moderations"));
    assert!(!is_supported_endpoint("/v1/images/generations"));
}

#[test]
fn estimated_tokens_count_the_text_and_the_output_ceiling() {
    let plain = r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}"#;
    let capped =
        r#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"m","max_tokens":100}}"#;
    let odd = r#"{"custom_id":"c","method":"POST","url":"/v1/chat/completions","body":{"model":"m","max_completion_tokens":"lots"}}"#;
    let report = validate(&[plain, capped, odd].join("\n"));
    assert!(report.is_valid(), "{}", report.render(5));
    // No text but "lots" (a quarter of 4 bytes: model "m" has no tokenizer), and one ceiling.
    assert_eq!(
        report.summary.estimated_tokens,
        1 + 100,
        "a ceiling that is not a number counts nothing"
    );
}

#[tokio::test]
async fn a_file_read_in_blocks_reports_as_its_bytes_do() {
    // 3.9 MB: lines cross the 1 MiB block boundaries; one of them is broken.
    let mut lines: Vec<String> = (0..30_000).map(|i| line(&format!("r{i}"), "m")).collect();
    lines[20_000] = "{not json".into();
    let data = file(&lines);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.jsonl");
    std::fs::write(&path, &data).unwrap();
    let from_file = validate_file(&path, CHAT, Limits::default()).await.unwrap();
    let from_bytes = validate_with(data.as_bytes(), Limits::default());
    assert_eq!(from_file.summary.requests, from_bytes.summary.requests);
    assert_eq!(from_file.summary.bytes, data.len() as u64);
    assert_eq!(from_file.problem_count, 1);
    assert_eq!(from_file.render(10), from_bytes.render(10));
}
