//! `run -f` against a hostile gateway (tests/it/common/hostile.rs): redirects reach no other host,
//! endless and huge answers cost bounded memory (peak RSS of the process, measured), garbled
//! answers are ridden out, and an echoed key appears nowhere. SECURITY.md names these tests.

use crate::common;

use std::io::Read;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::hostile::{Hostile, Mode};
use common::{Workspace, batch_manifests, chat_lines, condition, gateway_manifests, text};

const KEY: &str = "sk-hostile-0123456789abcdef";
const HEADER_SECRET: &str = "hdr-secret-0123456789";
/// The ceiling a run -f process must stay under, whatever the gateway sends.
const PEAK_LIMIT_KIB: u64 = 128 * 1024;

/// A workspace with a Batch of `lines` requests sent to `gateway`; `limits` goes under the
/// BatchGateway's spec.limits, `extra_spec` under the Batch's spec.
fn workspace(gateway: &Hostile, lines: usize, limits: &str, extra_spec: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write("batch.yaml", &batch_manifests("b", &chat_lines(lines), extra_spec));
    let mut gw = gateway_manifests(&gateway.base_url, KEY, &[("x-extra", HEADER_SECRET)]);
    if !limits.is_empty() {
        gw = gw.replacen("  polling:", &format!("  limits:\n{limits}  polling:"), 1);
    }
    ws.write("gateway.yaml", &gw);
    ws
}

/// Runs `run -f` to its end (at most two minutes), sampling its peak RSS (VmHWM) as it goes.
fn run_measured(ws: &Workspace, env: &[(&str, &str)]) -> (Output, u64) {
    let mut child = ws
        .run_command(&["batch.yaml", "gateway.yaml"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status_file = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            peak = peak.max(vm_hwm_kib(&text));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("run -f did not finish within two minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    (output, peak)
}

fn vm_hwm_kib(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn phase(ws: &Workspace) -> String {
    ws.status_yaml("b")["phase"].as_str().unwrap_or_default().to_string()
}

/// The gateway misbehaves once in `mode`; the run succeeds anyway, under the memory ceiling.
fn survives_once(mode: Mode, limits: &str) -> Output {
    let gateway = Hostile::start(mode.clone(), 1);
    let ws = workspace(&gateway, 20, limits, "");
    let (output, peak) = run_measured(&ws, &[]);
    assert!(output.status.success(), "{mode:?}: {}", text(&output));
    assert_eq!(phase(&ws), "Succeeded", "{mode:?}");
    assert_eq!(ws.lines("b", "output.jsonl").len(), 20, "{mode:?}");
    assert!(peak > 0 && peak < PEAK_LIMIT_KIB, "{mode:?}: peak RSS {peak} KiB");
    eprintln!("{mode:?}: peak RSS {} MiB", peak / 1024);
    output
}

#[test]
fn a_redirected_download_reaches_no_other_host() {
    let gateway = Hostile::start(Mode::RedirectDownload, usize::MAX);
    let ws = workspace(&gateway, 5, "", "");
    let (output, _) = run_measured(&ws, &[]);
    let said = text(&output);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("HTTP 302 redirecting to 127.0.0.1"), "{said}");
    assert!(said.contains("redirects are not followed"), "{said}");
    assert_eq!(gateway.elsewhere_hits(), 0);
    assert!(!ws.out("b").join("output.jsonl").exists());
    let status = ws.status_yaml("b");
    assert_ne!(status["phase"], "Succeeded");
    let ready = &status["conditions"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "GatewayReady")
        .unwrap()["reason"];
    assert_eq!(ready, "GatewayMisconfigured");
}

#[test]
fn a_redirected_batch_creation_resends_nothing() {
    let gateway = Hostile::start(Mode::RedirectCreate, usize::MAX);
    let ws = workspace(&gateway, 5, "", "");
    let (output, _) = run_measured(&ws, &[]);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("HTTP 307"), "{}", text(&output));
    assert_eq!(gateway.elsewhere_hits(), 0);
}

#[test]
fn an_error_answer_that_never_ends_is_read_no_further_than_its_start() {
    survives_once(Mode::EndlessError, "");
}

#[test]
fn a_list_answer_that_never_ends_is_cut_off_and_listed_again() {
    survives_once(Mode::EndlessList, "");
}

#[test]
fn a_poll_answer_that_never_ends_is_cut_off_and_polled_again() {
    survives_once(Mode::EndlessPoll, "");
}

#[test]
fn an_output_line_that_never_ends_is_refused_naming_its_line() {
    let output = survives_once(Mode::EndlessLine, "");
    assert!(
        text(&output).contains("line 1 of the file is longer than"),
        "{}",
        text(&output)
    );
}

#[test]
fn an_output_file_past_max_result_bytes_is_refused() {
    let output = survives_once(Mode::EndlessFile, "    maxResultBytes: 1Mi\n");
    assert!(
        text(&output).contains("larger than the limit of 1048576 bytes"),
        "{}",
        text(&output)
    );
}

#[test]
fn a_trickling_download_meets_its_deadline() {
    let output = survives_once(Mode::Trickle, "    downloadTimeout: 1s\n");
    assert!(text(&output).contains("not finished within 1s"), "{}", text(&output));
}

#[test]
fn html_and_negative_counts_in_poll_answers_are_transient() {
    for mode in [Mode::HtmlPoll, Mode::NegativeCount] {
        let gateway = Hostile::start(mode.clone(), 2);
        let ws = workspace(&gateway, 5, "", "");
        let (output, _) = run_measured(&ws, &[]);
        assert!(output.status.success(), "{mode:?}: {}", text(&output));
        assert_eq!(phase(&ws), "Succeeded", "{mode:?}");
    }
}

#[test]
fn direct_mode_answers_that_never_end_fail_their_line_only() {
    let gateway = Hostile::start(Mode::EndlessAnswer, usize::MAX);
    let ws = workspace(&gateway, 20, "", "");
    let gw = std::fs::read_to_string(ws.path().join("gateway.yaml")).unwrap();
    ws.write(
        "gateway.yaml",
        &gw.replacen("  polling:", "  mode: Direct\n  polling:", 1),
    );
    let (output, peak) = run_measured(&ws, &[]);
    assert!(output.status.success(), "{}", text(&output));
    let errors = ws.lines("b", "errors.jsonl");
    assert_eq!(errors.len(), 20);
    assert!(
        errors.iter().all(|l| l["error"]["code"] == "unusable_answer"),
        "{errors:?}"
    );
    assert!(peak > 0 && peak < PEAK_LIMIT_KIB, "peak RSS {peak} KiB");
    eprintln!("direct mode, endless answers: peak RSS {} MiB", peak / 1024);
}

#[test]
fn a_key_echoed_by_the_gateway_appears_nowhere() {
    let gateway = Hostile::start(Mode::EchoKey(KEY.into()), usize::MAX);
    let ws = workspace(&gateway, 5, "", "");
    let (output, _) = run_measured(&ws, &[("RUST_LOG", "trace")]);
    assert_eq!(phase(&ws), "Failed", "{}", text(&output));
    let said = text(&output);
    assert!(
        said.contains("<redacted>"),
        "the echo should have been seen and scrubbed: {said}"
    );
    for secret in [KEY, HEADER_SECRET] {
        assert!(!said.contains(secret), "{secret} in the output: {said}");
        for dir in ["out", "state"] {
            assert_nothing_holds(&ws.path().join(dir), secret);
        }
    }
}

/// No file under `dir` contains `secret`.
fn assert_nothing_holds(dir: &Path, secret: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_nothing_holds(&path, secret);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{} holds {secret}", path.display());
        }
    }
}

#[test]
fn a_metadata_address_is_refused_before_anything_is_sent() {
    // In a network namespace of its own (only a loopback that is down): if the refusal were
    // missing, the connection could not reach 169.254.169.254 either.
    if !Path::new("/usr/bin/unshare").exists() {
        panic!("unshare (util-linux) is needed to isolate this test");
    }
    let ws = Workspace::new();
    ws.write("batch.yaml", &batch_manifests("b", &chat_lines(2), ""));
    ws.write(
        "gateway.yaml",
        &gateway_manifests("http://169.254.169.254/v1", KEY, &[]),
    );
    let run = ws.run_command(&["batch.yaml", "gateway.yaml"]);
    let output = std::process::Command::new("unshare")
        .arg("-n")
        .arg(run.get_program())
        .args(run.get_args())
        .current_dir(ws.path())
        .output()
        .unwrap();
    let said = text(&output);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("169.254.169.254 is 169.254.169.254, an address this operator does not connect to (link-local or cloud metadata)"), "{said}");
}

/// Runs a Batch of 20 requests against a gateway lying in `mode`; the status it ends with.
fn run_lied_to(mode: Mode) -> (Workspace, serde_yaml::Value, String) {
    let gateway = Hostile::start(mode, usize::MAX);
    let ws = workspace(&gateway, 20, "", "");
    let (output, _) = run_measured(&ws, &[]);
    let status = ws.status_yaml("b");
    (ws, status, text(&output))
}

/// `(total, completed, failed)` of a requestCounts.
fn counts(counts: &serde_yaml::Value) -> (u64, u64, u64) {
    let n = |field: &str| counts[field].as_u64().unwrap_or_default();
    (n("total"), n("completed"), n("failed"))
}

#[test]
fn duplicate_result_lines_count_once_and_fail_the_batch() {
    let (ws, status, said) = run_lied_to(Mode::DuplicateIds);
    assert_eq!(status["phase"], "Failed", "{said}");
    assert_eq!(counts(&status["requestCounts"]), (20, 20, 0), "{status:?}");
    assert_eq!(status["output"]["duplicateLines"], 1, "{status:?}");
    let verified = condition(&status, "ResultsVerified");
    assert_eq!(
        (&verified["status"], &verified["reason"]),
        (&"False".into(), &"DuplicateResults".into())
    );
    assert_eq!(condition(&status, "Failed")["reason"], "DuplicateResults");
    // Delivered as the gateway sent them: nothing is lost.
    assert_eq!(ws.lines("b", "output.jsonl").len(), 21);
}

#[test]
fn result_ids_not_in_the_input_fail_the_batch() {
    let (ws, status, said) = run_lied_to(Mode::ForeignIds);
    assert_eq!(status["phase"], "Failed", "{said}");
    let verified = condition(&status, "ResultsVerified");
    assert_eq!(
        (&verified["status"], &verified["reason"]),
        (&"False".into(), &"UnexpectedResults".into())
    );
    assert!(
        verified["message"].as_str().unwrap().contains("not the input's"),
        "{verified:?}"
    );
    assert_eq!(condition(&status, "Failed")["reason"], "UnexpectedResults");
    assert!(said.contains("the results do not match the input"), "{said}");
    let lines = ws.lines("b", "output.jsonl");
    assert_eq!(lines[0]["custom_id"], "../../etc/passwd");
    assert!(!ws.path().join("etc").exists() && !ws.out("b").join("etc").exists());
}

#[test]
fn inflated_gateway_counts_give_way_to_what_the_files_prove() {
    let (_ws, status, said) = run_lied_to(Mode::InflatedCounts);
    assert_eq!(status["phase"], "Succeeded", "{said}");
    assert_eq!(counts(&status["requestCounts"]), (20, 20, 0), "{status:?}");
    assert_eq!(counts(&status["gateway"]["requestCounts"]), (20, 999, 0), "{status:?}");
    let verified = condition(&status, "ResultsVerified");
    assert_eq!(
        (&verified["status"], &verified["reason"]),
        (&"True".into(), &"ResultsMatchInput".into())
    );
}

#[test]
fn completed_without_result_files_is_a_failure_naming_it() {
    let (_ws, status, said) = run_lied_to(Mode::NoResultFiles);
    assert_eq!(status["phase"], "Failed", "{said}");
    let failed = condition(&status, "Failed");
    assert_eq!(failed["reason"], "MissingResults");
    assert_eq!(
        failed["message"],
        "the gateway said completed but returned no result files"
    );
    assert_eq!(condition(&status, "ResultsVerified")["status"], "False");
}

#[test]
fn an_honest_gateways_results_verify() {
    let (_ws, status, said) = run_lied_to(Mode::Honest);
    assert_eq!(status["phase"], "Succeeded", "{said}");
    assert_eq!(counts(&status["requestCounts"]), (20, 20, 0), "{status:?}");
    assert!(status["gateway"]["requestCounts"].is_null(), "{status:?}");
    assert_eq!(condition(&status, "ResultsVerified")["reason"], "ResultsMatchInput");
    assert_eq!(status["input"]["ids"]["key"].as_str().unwrap().len(), 32);
}
