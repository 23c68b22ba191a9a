//! The command line as users meet it: `validate`, `crd` (and `crd --reference`) and every `--help`.

use crate::common;

use common::{Workspace, bin, chat_lines, text};

#[test]
fn validate_accepts_a_valid_file_and_summarises_it() {
    let ws = Workspace::new();
    let file = ws.write("ok.jsonl", &(chat_lines(12) + "\r\n"));
    let output = bin().arg("validate").arg(&file).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("valid: 12 requests"), "{}", text(&output));
    assert!(text(&output).contains("gpt-4o-mini (12)"), "{}", text(&output));
}

#[test]
fn validate_lists_problems_by_line_capped_at_twenty() {
    let ws = Workspace::new();
    let mut jsonl = chat_lines(2);
    for _ in 0..25 {
        jsonl.push_str("\n{\"custom_id\":\"x\"}");
    }
    let file = ws.write("bad.jsonl", &jsonl);
    let output = bin().arg("validate").arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 21, "{stdout}");
    assert!(lines[0].starts_with("line 3: "), "{stdout}");
    assert!(lines[0].ends_with(')'), "{stdout}");
    assert!(lines[20].starts_with("and ") && lines[20].contains("more"), "{stdout}");
}

#[test]
fn validate_checks_the_endpoint_and_reads_stdin() {
    use std::io::Write;
    let mut child = bin()
        .args(["validate", "-", "--endpoint", "/v1/embeddings"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(chat_lines(1).as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).contains(
            "line 1: url \"/v1/chat/completions\" does not match the batch endpoint \"/v1/embeddings\" (url)"
        ),
        "{}",
        text(&output)
    );

    let unknown = bin()
        .args(["validate", "-", "--endpoint", "/v1/images"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn crd_prints_the_committed_crds() {
    let output = bin().arg("crd").output().unwrap();
    assert!(output.status.success());
    let committed = std::fs::read_to_string(common::repo_path("crds/llmbatch.io.yaml")).unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), committed);
}

#[test]
fn crd_reference_prints_the_committed_field_reference() {
    let output = bin().args(["crd", "--reference"]).output().unwrap();
    assert!(output.status.success());
    let committed = std::fs::read_to_string(common::repo_path("docs/reference.md")).unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), committed);
}

#[test]
fn every_subcommand_explains_itself_with_an_example() {
    for command in ["run", "validate", "simulator", "controller", "crd", "kubectl"] {
        let output = bin().args([command, "--help"]).output().unwrap();
        assert!(output.status.success(), "{command}");
        assert!(
            text(&output).contains("Example"),
            "{command} --help has no example:\n{}",
            text(&output)
        );
    }
}
