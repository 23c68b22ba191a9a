//! `run -f` end to end: the binary against the simulator running as a subprocess.

use crate::common;

use base64::Engine as _;

use common::{Simulator, Workspace, batch_manifests, chat_lines, gateway_manifests, text, wait_until_blocking};

const KEY: &str = "sk-test-0123456789abcdef";

fn phase(ws: &Workspace, name: &str) -> String {
    ws.status_yaml(name)["phase"].as_str().unwrap_or_default().to_string()
}

fn setup(sim: &Simulator, name: &str, lines: usize, extra_spec: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write("batch.yaml", &batch_manifests(name, &chat_lines(lines), extra_spec));
    ws.write("gateway.yaml", &gateway_manifests(&sim.base_url, KEY, &[]));
    ws
}

/// The README's Quickstart: its first command's `run -f` files, and the lines it shows that
/// carry no id, port or path of a particular run.
fn readme_quickstart() -> (Vec<String>, Vec<String>) {
    let readme = std::fs::read_to_string(common::repo_path("README.md")).unwrap();
    let quickstart = readme.split("## Quickstart").nth(1).expect("a Quickstart section");
    let command = quickstart
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.lines().next())
        .unwrap();
    let args = command.split('#').next().unwrap().trim();
    let files = args
        .strip_prefix("cargo run -- run -f ")
        .unwrap_or_else(|| panic!("the Quickstart's first command is not `cargo run -- run -f`: {command}"))
        .split(" -f ")
        .map(|f| common::repo_path(f.trim()))
        .collect();
    let shown = quickstart.split("\n```\n").nth(2).expect("the output block");
    let stable = shown
        .lines()
        .filter(|l| {
            l.starts_with("default/") && !l.contains("batch_") && !l.contains("attempt") && !l.contains("results in")
        })
        .map(str::to_string)
        .collect();
    (files, stable)
}

#[test]
fn quickstart_runs_on_the_builtin_simulator() {
    let ws = Workspace::new();
    let (files, shown) = readme_quickstart();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let output = ws.run(&files);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("using the built-in simulator"),
        "{}",
        text(&output)
    );
    assert!(shown.len() >= 3, "the README shows the run's lines: {shown:?}");
    for line in &shown {
        assert!(
            text(&output).contains(line.as_str()),
            "the README shows {line:?}; the run printed:\n{}",
            text(&output)
        );
    }
    let lines = ws.lines("ticket-triage", "output.jsonl");
    assert_eq!(lines.len(), 20);
    assert!(lines.iter().all(|l| l["response"]["status_code"] == 200));
    assert!(!ws.out("ticket-triage").join("errors.jsonl").exists());
    // Each answer is the JSON classification the ticket's schema asks for.
    let mut categories = std::collections::BTreeSet::new();
    for line in &lines {
        let choice = &line["response"]["body"]["choices"][0];
        assert_eq!(choice["finish_reason"], "stop", "{line}");
        let content = choice["message"]["content"].as_str().unwrap();
        let answer: serde_json::Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{e}: {content}"));
        let category = answer["category"].as_str().unwrap_or_default();
        assert!(
            ["billing", "bug", "feature", "account", "other"].contains(&category),
            "{content}"
        );
        assert!(
            ["low", "medium", "high"].contains(&answer["priority"].as_str().unwrap_or_default()),
            "{content}"
        );
        assert!(answer["summary"].as_str().is_some_and(|s| !s.is_empty()), "{content}");
        assert_eq!(answer.as_object().unwrap().len(), 3, "no other property: {content}");
        categories.insert(category.to_string());
    }
    assert!(
        categories.len() >= 3,
        "tickets get different categories: {categories:?}"
    );
    let status = ws.status_yaml("ticket-triage");
    assert_eq!(status["phase"], "Succeeded");
    assert_eq!(status["requestCounts"]["completed"], 20);
    assert!(status["usage"]["totalTokens"].as_u64().unwrap() > 0);
    assert!(status["gateway"]["batchId"].as_str().is_some());
}

#[test]
fn happy_path_against_a_gateway_uploads_and_creates_exactly_once() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = setup(&sim, "happy", 50, "");
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(phase(&ws, "happy"), "Succeeded");
    assert_eq!(ws.lines("happy", "output.jsonl").len(), 50);
    assert_eq!(sim.count_ok("POST", "/v1/files"), 1);
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 1);
    // An attempt this run started has nothing upstream to adopt: no list is walked (the one
    // `GET /v1/batches` is the mode probe's, one item long).
    assert_eq!(sim.count_ok("GET", "/v1/files"), 0);
    assert_eq!(sim.count_ok("GET", "/v1/batches"), 1);
    assert!(!text(&output).contains(KEY), "the key leaked into the output");

    // A rerun finds the batch finished and sends nothing.
    let before = sim.journal().len();
    let again = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("already Succeeded"), "{}", text(&again));
    assert_eq!(sim.journal().len(), before);
}

/// The harness stops a simulator as a user would (SIGTERM): it ends by itself and leaves no
/// data directory behind.
#[test]
fn a_stopped_simulator_ends_by_itself_and_leaves_nothing_behind() {
    let mut sim = Simulator::start(&["--api-key", KEY]);
    let ws = setup(&sim, "tidy", 3, "");
    assert!(ws.run(&["batch.yaml", "gateway.yaml"]).status.success());
    let temp = sim.temp.path().to_path_buf();
    let left = || std::fs::read_dir(&temp).unwrap().count();
    assert!(left() > 0, "the simulator keeps its files under its TMPDIR");
    let status = sim.stop().expect("the simulator ends on SIGTERM");
    assert!(status.success(), "{status}");
    assert_eq!(left(), 0, "its data directory is removed");
}

#[test]
fn rate_limit_and_server_error_storms_are_ridden_out() {
    let sim = Simulator::start(&[
        "--api-key",
        KEY,
        "--rate-429",
        "0.3",
        "--retry-after",
        "0",
        "--rate-5xx",
        "0.2",
        "--seed",
        "7",
    ]);
    let ws = setup(&sim, "storm", 30, "");
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(ws.lines("storm", "output.jsonl").len(), 30);
    let journal = sim.journal();
    assert!(journal.iter().any(|e| e.status == 429), "no 429 was injected");
    assert!(journal.iter().any(|e| e.status >= 500), "no 5xx was injected");
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 1);
    assert_eq!(sim.count_ok("POST", "/v1/files"), 1);
}

#[test]
fn failed_lines_go_to_errors_jsonl_and_the_batch_still_succeeds() {
    let sim = Simulator::start(&["--api-key", KEY, "--line-failure-rate", "0.3", "--seed", "3"]);
    let ws = setup(&sim, "partial", 40, "");
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    let ok = ws.lines("partial", "output.jsonl");
    let failed = ws.lines("partial", "errors.jsonl");
    assert!(!failed.is_empty(), "no line failed");
    assert_eq!(ok.len() + failed.len(), 40);
    let status = ws.status_yaml("partial");
    assert_eq!(status["requestCounts"]["failed"].as_u64(), Some(failed.len() as u64));
    assert_eq!(status["output"]["errorLines"].as_u64(), Some(failed.len() as u64));
}

#[test]
fn expired_batch_keeps_completed_lines_and_says_how_many_never_ran() {
    let sim = Simulator::start(&["--api-key", KEY, "--expire"]);
    let ws = setup(&sim, "late", 40, "");
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(phase(&ws, "late"), "Expired");
    let done = ws.lines("late", "output.jsonl").len();
    let errors = ws.lines("late", "errors.jsonl");
    assert!(done > 0, "no completed line was kept");
    assert!(errors.iter().any(|l| l["error"]["code"] == "batch_expired"));
    let status = ws.status_yaml("late");
    let not_run = status["requestCounts"]["notRun"].as_u64().unwrap();
    assert_eq!(done as u64 + not_run, 40);
}

#[test]
fn cancel_before_submit_sends_nothing() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = setup(&sim, "stop", 5, "  cancel: true\n");
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(phase(&ws, "stop"), "Cancelled");
    assert!(sim.journal().is_empty(), "{:?}", sim.journal());
}

#[test]
fn cancelling_a_running_batch_collects_what_completed() {
    let sim = Simulator::start(&["--api-key", KEY, "--lines-per-sec", "20"]);
    let ws = setup(&sim, "halt", 200, "");
    // Start, and kill the run once the batch is in progress.
    let mut child = ws
        .run_command(&["batch.yaml", "gateway.yaml"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_in_progress(&ws, "halt");
    child.kill().unwrap();
    child.wait().unwrap();
    // Ask for cancellation and resume.
    ws.write(
        "batch.yaml",
        &batch_manifests("halt", &chat_lines(200), "  cancel: true\n"),
    );
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(phase(&ws, "halt"), "Cancelled");
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 1);
    assert!(sim.journal().iter().any(|e| e.path.ends_with("/cancel")));
    let status = ws.status_yaml("halt");
    assert!(
        status["requestCounts"]["notRun"].as_u64().unwrap_or(0) > 0,
        "{status:?}"
    );
}

/// Runs the workspace's Batch with the process aborting after `step` (before its result is saved).
fn crash_after(ws: &Workspace, step: &str) {
    let crashed = ws
        .run_command(&["batch.yaml", "gateway.yaml"])
        .env("LLM_BATCH_CRASH_AFTER", step)
        .output()
        .unwrap();
    assert!(
        !crashed.status.success(),
        "{step}: the run did not crash: {}",
        text(&crashed)
    );
}

#[test]
fn a_crash_after_any_step_resumes_without_a_second_upload_or_batch() {
    let sim = Simulator::start(&["--api-key", KEY]);
    for step in ["start-attempt", "upload-input", "create-batch", "poll", "download"] {
        let name = format!("crash-{step}");
        let ws = setup(&sim, &name, 10, "");
        let files_before = sim.count_ok("POST", "/v1/files");
        let batches_before = sim.count_ok("POST", "/v1/batches");
        crash_after(&ws, step);
        let resumed = ws.run(&["batch.yaml", "gateway.yaml"]);
        assert!(resumed.status.success(), "{step}: {}", text(&resumed));
        assert_eq!(phase(&ws, &name), "Succeeded", "{step}");
        assert_eq!(ws.lines(&name, "output.jsonl").len(), 10, "{step}");
        assert_eq!(
            sim.count_ok("POST", "/v1/files") - files_before,
            1,
            "{step}: input uploaded twice"
        );
        assert_eq!(
            sim.count_ok("POST", "/v1/batches") - batches_before,
            1,
            "{step}: batch created twice"
        );
    }
}

#[test]
fn kill_9_while_polling_resumes_the_same_batch() {
    let sim = Simulator::start(&["--api-key", KEY, "--lines-per-sec", "50"]);
    let ws = setup(&sim, "killed", 100, "");
    let mut child = ws
        .run_command(&["batch.yaml", "gateway.yaml"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_in_progress(&ws, "killed");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("resuming"), "{}", text(&output));
    assert_eq!(ws.lines("killed", "output.jsonl").len(), 100);
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 1);
    assert_eq!(sim.count_ok("POST", "/v1/files"), 1);
}

#[test]
fn a_wrong_key_stops_with_a_clear_message_and_never_prints_the_key() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    let wrong = "sk-wrong-key-that-must-not-leak";
    ws.write("batch.yaml", &batch_manifests("denied", &chat_lines(3), ""));
    ws.write("gateway.yaml", &gateway_manifests(&sim.base_url, wrong, &[]));
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("refused the API key"), "{}", text(&output));
    let status = std::fs::read_to_string(ws.out("denied").join("status.yaml")).unwrap();
    assert!(status.contains("GatewayUnauthorized"), "{status}");
    for place in [text(&output), status] {
        assert!(!place.contains(wrong), "the key leaked: {place}");
    }
    assert_eq!(sim.count_ok("POST", "/v1/files"), 0);
}

#[test]
fn bad_input_is_rejected_with_line_numbers_and_zero_upstream_calls() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    let mut jsonl = chat_lines(4);
    jsonl.push_str(
        "\n{\"custom_id\":\"req-1\",\"method\":\"GET\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\"}}",
    );
    jsonl.push_str("\nnot json");
    ws.write("batch.yaml", &batch_manifests("broken", &jsonl, ""));
    ws.write("gateway.yaml", &gateway_manifests(&sim.base_url, KEY, &[]));
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let message = text(&output);
    assert!(
        message.contains("batch.yaml (document 2) Batch default/broken"),
        "{message}"
    );
    assert!(message.contains("line 5:") && message.contains("(method)"), "{message}");
    assert!(message.contains("duplicate"), "{message}");
    assert!(message.contains("line 6:"), "{message}");
    assert!(sim.journal().is_empty(), "{:?}", sim.journal());
}

#[test]
fn invalid_manifests_name_the_file_document_and_field() {
    let ws = Workspace::new();
    ws.write(
        "bad.yaml",
        "apiVersion: llmbatch.io/v1alpha1\nkind: Batch\nmetadata: {name: b}\nspec:\n  gatewayRef: {name: gw}\n  endpoint: /v1/chat/completions\n  input:\n    configMap: {name: missing, key: batch.jsonl}\n",
    );
    let output = ws.run(&["bad.yaml"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output)
            .contains("bad.yaml (document 1) Batch default/b: spec.input.configMap: ConfigMap default/missing"),
        "{}",
        text(&output)
    );

    ws.write("typo.yaml", "apiVersion: llmbatch.io/v1alpha1\nkind: Batch\nmetadata: {name: b}\nspec:\n  gatewayRef: {name: gw}\n  endpoint: /v1/chat/completions\n  input: {configMap: {name: c}}\n");
    let output = ws.run(&["typo.yaml"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("typo.yaml (document 1): Batch field spec.input.configMap"),
        "{}",
        text(&output)
    );
}

/// Waits (bounded) until the run of `name` says it is InProgress, as it does on its own.
fn wait_in_progress(ws: &Workspace, name: &str) {
    let never = format!("{name} never InProgress");
    wait_until_blocking(&never, std::time::Duration::from_secs(30), || {
        let seen = ws.out(name).join("status.yaml").exists().then(|| phase(ws, name));
        if seen.as_deref() == Some("InProgress") {
            Ok(())
        } else {
            Err(seen)
        }
    });
}

#[test]
fn runs_against_aimock_an_independent_gateway() {
    let peer = common::aimock::Aimock::start();
    let ws = Workspace::new();
    let jsonl = (1..=5)
        .map(|i| format!(r#"{{"custom_id":"t-{i}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"hello"}}]}}}}"#))
        .collect::<Vec<_>>()
        .join("\n");
    ws.write("batch.yaml", &batch_manifests("peer", &jsonl, ""));
    ws.write("gateway.yaml", &gateway_manifests(&peer.base_url, "sk-aimock", &[]));
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(phase(&ws, "peer"), "Succeeded");
    let lines = ws.lines("peer", "output.jsonl");
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|l| l["custom_id"].as_str().unwrap().starts_with("t-")));
}

#[test]
fn ctrl_c_stops_cleanly_and_says_how_to_resume() {
    let sim = Simulator::start(&["--api-key", KEY, "--lines-per-sec", "20"]);
    let ws = setup(&sim, "paused", 100, "");
    let child = ws
        .run_command(&["batch.yaml", "gateway.yaml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_in_progress(&ws, "paused");
    let interrupt = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", text(&output));
    assert!(
        text(&output).contains("run the same command again to resume"),
        "{}",
        text(&output)
    );

    let resumed = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_eq!(ws.lines("paused", "output.jsonl").len(), 100);
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 1);
}

#[test]
fn input_can_come_from_a_secret() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    let jsonl = chat_lines(7);
    let encoded = base64::engine::general_purpose::STANDARD.encode(jsonl.as_bytes());
    ws.write(
        "batch.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: private-input\ndata:\n  batch.jsonl: {encoded}\n---\n\
             apiVersion: llmbatch.io/v1alpha1\nkind: Batch\nmetadata:\n  name: private\nspec:\n  gatewayRef:\n    name: gw\n  \
             endpoint: /v1/chat/completions\n  input:\n    secret:\n      name: private-input\n      key: batch.jsonl\n"
        ),
    );
    ws.write("gateway.yaml", &gateway_manifests(&sim.base_url, KEY, &[]));
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(ws.lines("private", "output.jsonl").len(), 7);
}

#[test]
fn inline_requests_run_like_a_file() {
    let ws = Workspace::new();
    let eval = common::repo_path("examples/cluster/eval-suite.yaml");
    let output = ws.run_command(&[&eval]).arg("--simulator").output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let lines = ws.lines("eval-suite", "output.jsonl");
    let mut ids: Vec<&str> = lines.iter().map(|l| l["custom_id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "gpt-4o-mini/capital-of-france",
            "gpt-4o-mini/sum",
            "gpt-4o/capital-of-france",
            "gpt-4o/sum"
        ]
    );
    let models: Vec<&str> = lines
        .iter()
        .map(|l| l["response"]["body"]["model"].as_str().unwrap())
        .collect();
    assert!(
        models.contains(&"gpt-4o") && models.contains(&"gpt-4o-mini"),
        "{models:?}"
    );
}

#[test]
fn an_input_file_id_runs_without_an_upload_and_a_missing_one_stops_clearly() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    // Put a file on the gateway the way a user would.
    let upload = reqwest::blocking::Client::new()
        .post(format!("{}/files", sim.base_url))
        .bearer_auth(KEY)
        .multipart(reqwest::blocking::multipart::Form::new().text("purpose", "batch").part(
            "file",
            reqwest::blocking::multipart::Part::bytes(chat_lines(4).into_bytes()).file_name("mine.jsonl"),
        ))
        .send()
        .unwrap();
    let file: serde_json::Value = upload.json().unwrap();
    let file_id = file["id"].as_str().unwrap();
    let batch = |name: &str, id: &str| {
        format!(
            "apiVersion: llmbatch.io/v1alpha1\nkind: Batch\nmetadata:\n  name: {name}\nspec:\n  gatewayRef:\n    name: gw\n  \
             endpoint: /v1/chat/completions\n  input:\n    fileId: {id}\n"
        )
    };
    ws.write("gateway.yaml", &gateway_manifests(&sim.base_url, KEY, &[]));
    ws.write("theirs.yaml", &batch("theirs", file_id));
    let output = ws.run(&["theirs.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(ws.lines("theirs", "output.jsonl").len(), 4);
    assert_eq!(sim.count_ok("POST", "/v1/files"), 1, "only the user's own upload");

    ws.write("missing.yaml", &batch("missing", "file-does-not-exist"));
    let output = ws.run(&["missing.yaml", "gateway.yaml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("file-does-not-exist is not on the gateway"),
        "{}",
        text(&output)
    );
}

#[test]
fn pvc_output_goes_under_pvc_root_and_status_names_the_claim() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let extra = "  output:\n    pvc:\n      claimName: results\n      path: nightly/tickets\n";
    let ws = setup(&sim, "claimed", 5, extra);
    let refused = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("needs --pvc-root DIR"), "{}", text(&refused));
    assert_eq!(sim.journal().len(), 0);

    let output = ws
        .run_command(&["batch.yaml", "gateway.yaml"])
        .args(["--pvc-root", "claims"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let results = std::fs::read_to_string(ws.path().join("claims/results/nightly/tickets/output.jsonl")).unwrap();
    assert_eq!(results.lines().count(), 5);
    let status = ws.status_yaml("claimed");
    assert_eq!(status["output"]["pvc"], "results");
    assert_eq!(status["output"]["path"], "nightly/tickets");
}

/// Every file and directory under `dir`, relative to it, sorted.
fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(next) = todo.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            found.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() {
                todo.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn names_and_namespaces_that_are_not_dns_names_are_refused_and_nothing_is_written_outside() {
    // The run works in `root/work`, so `..` in a name would land in `root`, and an absolute
    // name points into `root` too: the whole of `root` is checked afterwards.
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let absolute = root.path().join("abs").display().to_string();
    let cases = [
        ("../x", None),
        ("../../x", None),
        (absolute.as_str(), None),
        ("UPPER", None),
        ("a_b", None),
        ("b", Some("../x")),
        ("b", Some("../..")),
        ("b", Some(absolute.as_str())),
        ("b", Some("UPPER")),
        ("b", Some("a_b")),
    ];
    for (name, namespace) in cases {
        let namespace_line = namespace.map_or(String::new(), |ns| format!("  namespace: {ns:?}\n"));
        let manifest = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: input\n{namespace_line}data:\n  batch.jsonl: |\n    {}\n---\n\
             apiVersion: llmbatch.io/v1alpha1\nkind: Batch\nmetadata:\n  name: {name:?}\n{namespace_line}spec:\n  \
             gatewayRef:\n    name: gw\n  endpoint: /v1/chat/completions\n  input:\n    configMap:\n      name: input\n      key: batch.jsonl\n",
            chat_lines(1)
        );
        std::fs::write(work.join("batch.yaml"), manifest).unwrap();
        let output = common::bin()
            .current_dir(&work)
            .args([
                "run",
                "--no-progress",
                "-f",
                "batch.yaml",
                "--out",
                "out",
                "--state-dir",
                "state",
            ])
            .output()
            .unwrap();
        let said = text(&output);
        assert_eq!(output.status.code(), Some(2), "{name} {namespace:?}: {said}");
        let field = match namespace {
            Some(_) => "metadata.namespace",
            None => "metadata.name",
        };
        // The ConfigMap (document 1) carries the same namespace; a bad name is the Batch's.
        let document = if namespace.is_some() {
            "(document 1): ConfigMap"
        } else {
            "(document 2): Batch"
        };
        assert!(
            said.contains(&format!("batch.yaml {document} field {field}")),
            "{name} {namespace:?}: {said}"
        );
        assert_eq!(tree(root.path()), ["work", "work/batch.yaml"], "{name} {namespace:?}");
    }
}

#[test]
fn a_misspelt_field_is_an_error_naming_its_path() {
    let ws = Workspace::new();
    let typo = "  outptu:\n    secret:\n      name: results\n";
    ws.write("batch.yaml", &batch_manifests("typo", &chat_lines(2), typo));
    let output = ws.run(&["batch.yaml"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("batch.yaml (document 2): Batch field spec.outptu: unknown field"),
        "{}",
        text(&output)
    );
    assert!(!ws.path().join("out").exists() && !ws.path().join("state").exists());
}

#[test]
fn a_document_nested_100000_deep_is_refused_quickly() {
    let ws = Workspace::new();
    let deep = [
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("{}1{}", "{a: ".repeat(100_000), "}".repeat(100_000)),
    ];
    for document in deep {
        ws.write("deep.yaml", &document);
        let started = std::time::Instant::now();
        let output = ws.run(&["deep.yaml"]);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        let said = text(&output);
        assert!(
            said.contains("deep.yaml (document 1): nested more than 64 levels deep")
                || said.contains("deep.yaml: reading it as YAML takes longer than 3 s"),
            "{said}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}

/// Every object of a list endpoint of the simulator (`path` with its query), walking `after`.
fn list_all(sim: &Simulator, path_and_query: &str) -> Vec<serde_json::Value> {
    let http = reqwest::blocking::Client::new();
    let mut all = Vec::new();
    let mut after = String::new();
    for _ in 0..100 {
        let url = format!("{}{path_and_query}&limit=100{after}", sim.base_url);
        let page: serde_json::Value = http.get(url).bearer_auth(KEY).send().unwrap().json().unwrap();
        all.extend(page["data"].as_array().unwrap().iter().cloned());
        if page["has_more"] != true {
            return all;
        }
        after = format!("&after={}", page["last_id"].as_str().unwrap());
    }
    panic!("more than 100 pages of {path_and_query}");
}

/// Uploads `jsonl` as `name` with purpose batch; its id.
fn upload(sim: &Simulator, name: &str, jsonl: &str) -> String {
    let form = reqwest::blocking::multipart::Form::new().text("purpose", "batch").part(
        "file",
        reqwest::blocking::multipart::Part::bytes(jsonl.as_bytes().to_vec()).file_name(name.to_string()),
    );
    let reply = reqwest::blocking::Client::new()
        .post(format!("{}/files", sim.base_url))
        .bearer_auth(KEY)
        .multipart(form)
        .send()
        .unwrap();
    assert!(reply.status().is_success(), "{}", reply.status());
    reply.json::<serde_json::Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn adoption_after_a_crash_finds_the_attempts_file_and_batch_behind_500_newer_ones() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = setup(&sim, "busy", 3, "");
    let attempt = || {
        let state = std::fs::read(ws.path().join("state/default/busy/state.json")).unwrap();
        let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
        state["status"]["attempt"].as_str().unwrap().to_string()
    };
    const NEWER: usize = 550;

    // The input is uploaded, and the run dies before it keeps the file's id; then the key gets
    // busy: more than 5 pages of 100 newer files.
    crash_after(&ws, "upload-input");
    let token = attempt();
    let other_input = upload(&sim, "other-0.jsonl", &chat_lines(1));
    for i in 1..NEWER {
        upload(&sim, &format!("other-{i}.jsonl"), &chat_lines(1));
    }
    // The resumed run adopts that upload; the batch is created, and the run dies before it
    // keeps the batch's id; then 550 newer batches.
    crash_after(&ws, "create-batch");
    let http = reqwest::blocking::Client::new();
    for _ in 0..NEWER {
        let body = serde_json::json!({
            "input_file_id": other_input, "endpoint": "/v1/chat/completions", "completion_window": "24h",
            "metadata": {"owner": "someone else"}
        });
        let reply = http
            .post(format!("{}/batches", sim.base_url))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .unwrap();
        assert!(reply.status().is_success(), "{}", reply.status());
    }
    // The last run adopts that batch and sees it through.
    let resumed = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_eq!(phase(&ws, "busy"), "Succeeded");
    assert_eq!(ws.lines("busy", "output.jsonl").len(), 3);
    assert_eq!(attempt(), token, "one attempt throughout");

    // Upstream: exactly one file and one batch of the attempt, among the 551 of each.
    let files = list_all(&sim, "/files?purpose=batch");
    assert!(files.len() > NEWER, "{}", files.len());
    let ours: Vec<_> = files
        .iter()
        .filter(|f| f["filename"].as_str().unwrap().contains(&token))
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    let batches = list_all(&sim, "/batches?");
    assert!(batches.len() > NEWER, "{}", batches.len());
    let ours: Vec<_> = batches
        .iter()
        .filter(|b| b["metadata"]["llmbatch.io/attempt"] == token.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    let status = ws.status_yaml("busy");
    assert_eq!(status["gateway"]["batchId"].as_str(), ours[0]["id"].as_str());
    assert_eq!(sim.count_ok("POST", "/v1/files"), NEWER + 1);
    assert_eq!(sim.count_ok("POST", "/v1/batches"), NEWER + 1);
}

/// Every manifest the API server refuses (the shared list) is refused by `run -f` too, before
/// anything is sent: exit 2, the message naming the same field or rule, no connection to the
/// gateway the files name.
#[test]
fn run_f_refuses_what_the_api_server_refuses() {
    let gateway = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    gateway.set_nonblocking(true).unwrap();
    let url = format!("http://{}/v1", gateway.local_addr().unwrap());
    for case in common::rejected::manifests() {
        let ws = Workspace::new();
        let gw = format!(
            "apiVersion: llmbatch.io/v1alpha1\nkind: BatchGateway\nmetadata: {{name: gw}}\nspec: {{url: \"{url}\"}}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata: {{k: \"{{}}\"}}\n---\n"
        );
        ws.write("rejected.yaml", &format!("{gw}{}\n", case.object));
        let output = ws.run(&["rejected.yaml"]);
        assert_eq!(output.status.code(), Some(2), "{}: {}", case.name, text(&output));
        assert!(text(&output).contains(case.says), "{}: {}", case.name, text(&output));
    }
    let contacted = gateway.accept();
    assert!(contacted.is_err(), "run -f connected to the gateway: {contacted:?}");
}

/// Stalled detection through `run -f`, the engine the controller drives: a batch the simulator
/// holds in `finalizing` past the gateway's 1 s threshold is reported stalled once, then
/// resumes and succeeds; the status says it stalled and moved on.
#[test]
fn a_batch_held_in_finalizing_is_reported_stalled_then_succeeds() {
    let sim = Simulator::start(&["--api-key", KEY, "--finalizing-ms", "5000"]);
    let ws = setup(&sim, "slow", 3, "");
    let gateway = gateway_manifests(&sim.base_url, KEY, &[]).replacen(
        "  polling:\n",
        "  stalledAfter:\n    finalizing: 1s\n  polling:\n",
        1,
    );
    ws.write("gateway.yaml", &gateway);
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert_eq!(said.matches("slow: Stalled: ").count(), 1, "{said}");
    assert!(said.contains("has been finalizing"), "{said}");
    let status = ws.status_yaml("slow");
    assert_eq!(status["phase"], "Succeeded");
    let progressing = common::condition(&status, "Progressing");
    assert_eq!(progressing["status"], "True", "{status:?}");
    assert_eq!(progressing["reason"], "Resumed", "{status:?}");
    assert!(status["gateway"]["lastChangeTime"].as_str().is_some(), "{status:?}");
}

/// A webhook receiver for `run -f` tests: a thread answering each request on 127.0.0.1 with
/// 200 and keeping its body (bounded: `max` requests).
fn receiver(max: usize) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (got, bodies) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = n.trim().parse().unwrap();
                }
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
            let _ = got.send(String::from_utf8(body).unwrap());
        }
    });
    (url, bodies)
}

/// `run -f` sends a finished Batch's event to its webhook once, records it in the status, and
/// a rerun sends nothing again; a receiver that is down does not fail the run, and a rerun
/// delivers what the first run could not.
#[test]
fn a_finished_batch_tells_its_webhook_once_and_a_rerun_delivers_what_was_missed() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let (url, bodies) = receiver(2);
    let ws = setup(&sim, "told", 2, &format!("  notify:\n    url: {url}\n"));
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("default/told: notified 127.0.0.1 (io.llmbatch.batch.succeeded)"),
        "{}",
        text(&output)
    );
    let event: serde_json::Value = serde_json::from_str(&bodies.recv().unwrap()).unwrap();
    assert_eq!(event["type"], "io.llmbatch.batch.succeeded");
    assert_eq!(event["data"]["requestCounts"]["completed"], 2);
    let status = ws.status_yaml("told");
    assert_eq!(status["notifications"][0]["state"].as_str(), Some("Delivered"));
    assert!(ws.run(&["batch.yaml", "gateway.yaml"]).status.success());
    assert!(bodies.try_recv().is_err(), "a rerun sends a delivered event again");

    let down = format!("http://127.0.0.1:{}/hook", common::free_port());
    let ws = setup(&sim, "unheard", 1, &format!("  notify:\n    url: {down}\n"));
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "the Batch succeeded: {}", text(&output));
    assert!(
        text(&output).contains("default/unheard: could not notify 127.0.0.1: could not reach 127.0.0.1"),
        "{}",
        text(&output)
    );
    let status = ws.status_yaml("unheard");
    assert_eq!(status["notifications"][0]["attempts"].as_u64(), Some(3));
    let (url, bodies) = receiver(1);
    let manifests = std::fs::read_to_string(ws.path().join("batch.yaml"))
        .unwrap()
        .replace(&down, &url);
    ws.write("batch.yaml", &manifests);
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(
        text(&output).contains("default/unheard: notified 127.0.0.1 (io.llmbatch.batch.succeeded)"),
        "{}",
        text(&output)
    );
    let event: serde_json::Value = serde_json::from_str(&bodies.recv().unwrap()).unwrap();
    assert_eq!(event["id"].as_str(), status["notifications"][0]["id"].as_str());
}
