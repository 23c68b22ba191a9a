//! `report` on what `run -f` wrote: a two-model sweep run against the simulator subprocess,
//! pivoted to a row per prompt, summed to the sweep's own status, and its HTML page opened in
//! a real headless Chromium (screenshot and DOM).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;

use common::s3::{ACCESS_KEY, SECRET_KEY, SeaweedFs};
use common::{Simulator, Workspace, chat_lines, gateway_manifests, text};

const KEY: &str = "sk-test-report-0123456789";
const PROMPTS: usize = 30;

/// A sweep over a ConfigMap of 30 prompts, chunks of 12, for two models; the gateway `gw`
/// prices both (differently) and fails about one line in ten.
fn run_sweep(ws: &Workspace, sim: &Simulator) {
    run_sweep_with(ws, sim, "", "");
}

/// [`run_sweep`] with `template` added to the sweep's `spec.template` and `documents` to its file.
fn run_sweep_with(ws: &Workspace, sim: &Simulator, template: &str, documents: &str) {
    let indented: String = chat_lines(PROMPTS).lines().map(|l| format!("    {l}\n")).collect();
    ws.write(
        "sweep.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: prompts\ndata:\n  batch.jsonl: |\n{indented}---\n\
             apiVersion: llmbatch.io/v1alpha1\nkind: BatchSweep\nmetadata:\n  name: eval\nspec:\n  input:\n    configMap:\n      \
             name: prompts\n      key: batch.jsonl\n  chunk:\n    maxRequests: 12\n  matrix:\n    models: [model-a, model-b]\n  \
             template:\n    gatewayRef:\n      name: gw\n    endpoint: /v1/chat/completions\n{template}  parallelism: 6\n  \
             maxFailedBatches: 6\n{documents}"
        ),
    );
    let gateway = gateway_manifests(&sim.base_url, KEY, &[("x-sim-line-failure-rate", "0.1")]);
    let pricing = "  pricing:\n    models:\n    - model: model-a\n      inputPerMillion: \"0.15\"\n      outputPerMillion: \"0.60\"\n    \
                   - model: model-b\n      inputPerMillion: \"2.50\"\n      outputPerMillion: \"10\"\n---\n";
    ws.write("gateway.yaml", &gateway.replacen("---\n", pricing, 1));
    let output = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
}

/// `report` on the sweep's files with `args`, whatever its exit.
fn report_output(ws: &Workspace, args: &[&str]) -> Output {
    common::bin()
        .current_dir(ws.path())
        .args(["report", "-f", "sweep.yaml", "-f", "gateway.yaml", "--out", "out"])
        .args(args)
        .output()
        .unwrap()
}

fn report(ws: &Workspace, args: &[&str]) -> Output {
    let output = report_output(ws, args);
    assert!(output.status.success(), "report {args:?}: {}", text(&output));
    output
}

/// A CSV file as header-keyed records.
fn csv_records(path: &Path) -> Vec<BTreeMap<String, String>> {
    common::csv_rows(&std::fs::read_to_string(path).unwrap())
}

#[test]
fn a_two_model_sweep_pivots_to_a_row_per_prompt_and_sums_to_the_sweeps_status() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    run_sweep(&ws, &sim);

    report(&ws, &["--pivot", "model", "-o", "pivot.csv"]);
    let pivot = csv_records(&ws.path().join("pivot.csv"));
    let prompts: BTreeSet<&str> = pivot.iter().map(|r| r["prompt_id"].as_str()).collect();
    let expected: BTreeSet<String> = (1..=PROMPTS).map(|i| format!("req-{i}")).collect();
    assert_eq!(pivot.len(), PROMPTS, "one row per prompt");
    assert_eq!(prompts, expected.iter().map(String::as_str).collect());
    let mut failed = 0;
    for row in &pivot {
        let chunk: usize = row["chunk"].parse().unwrap();
        let n: usize = row["prompt_id"].trim_start_matches("req-").parse().unwrap();
        assert_eq!(chunk, (n - 1) / 12, "{row:?}");
        for model in ["model-a", "model-b"] {
            match row[&format!("{model}/status")].as_str() {
                "succeeded" => {
                    assert!(!row[&format!("{model}/answer")].is_empty(), "{model}: {row:?}");
                    assert!(row[&format!("{model}/cost")].parse::<f64>().unwrap() > 0.0, "{row:?}");
                }
                "failed" => {
                    failed += 1;
                    assert!(row[&format!("{model}/error")].starts_with("HTTP 5"), "{row:?}");
                }
                other => panic!("{model}: {other}: {row:?}"),
            }
        }
    }

    // The rows, one per request, say what the sweep's status and summary say.
    report(&ws, &["-o", "rows.csv"]);
    let rows = csv_records(&ws.path().join("rows.csv"));
    assert_eq!(rows.len(), 2 * PROMPTS);
    assert_eq!(rows.iter().filter(|r| r["status"] == "failed").count(), failed);
    for row in &rows {
        assert_eq!(
            row["custom_id"],
            format!(
                "{}/c{:04}/{}",
                row["model"],
                row["chunk"].parse::<u32>().unwrap(),
                row["prompt_id"]
            )
        );
    }
    report(&ws, &["--summary", "-o", "summary.csv"]);
    let summary = csv_records(&ws.path().join("summary.csv"));
    let status = ws.status_yaml("eval");
    let total = summary.iter().find(|r| r["model"] == "(total)").unwrap();
    let number = |v: &serde_yaml::Value| v.as_u64().unwrap().to_string();
    assert_eq!(total["requests"], number(&status["requestCounts"]["total"]));
    assert_eq!(total["succeeded"], number(&status["requestCounts"]["completed"]));
    assert_eq!(total["failed"], number(&status["requestCounts"]["failed"]));
    assert_eq!(total["input_tokens"], number(&status["usage"]["promptTokens"]));
    assert_eq!(total["output_tokens"], number(&status["usage"]["completionTokens"]));
    assert_eq!(total["total_tokens"], number(&status["usage"]["totalTokens"]));
    assert_eq!(
        total["cost"],
        status["cost"]["actual"].as_str().unwrap(),
        "exact, to the last digit"
    );
    assert_eq!(total["missing"], "0");
    let by_model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.out("eval").join("summary.json")).unwrap()).unwrap();
    for model in ["model-a", "model-b"] {
        let row = summary.iter().find(|r| r["model"] == model).unwrap();
        let counts = &by_model["byModel"][model]["requestCounts"];
        assert_eq!(row["requests"], counts["total"].to_string(), "{model}");
        assert_eq!(row["succeeded"], counts["completed"].to_string(), "{model}");
        assert_eq!(
            row["cost"],
            by_model["byModel"][model]["cost"]["actual"].as_str().unwrap(),
            "{model}"
        );
    }
    assert_ne!(
        summary[0]["cost"], summary[1]["cost"],
        "model-b's prices are higher than model-a's"
    );

    // An input edited since the run would join the wrong lines: refused, naming the chunk.
    let edited: String = std::fs::read_to_string(ws.path().join("sweep.yaml"))
        .unwrap()
        .lines()
        .filter(|l| !l.contains("\"req-30\""))
        .map(|l| format!("{l}\n"))
        .collect();
    ws.write("sweep.yaml", &edited);
    let refused = report_output(&ws, &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("chunk 2 now holds 5 requests, and eval-model-a-c0002 ran 6"),
        "{}",
        text(&refused)
    );
}

#[test]
fn the_html_page_opens_in_headless_chromium_with_the_csvs_numbers_and_markup_as_text() {
    let chromium = std::env::var("LLMB_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "{chromium} is missing: scripts/test-deps installs it (Debian's chromium)"
    );
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    run_sweep(&ws, &sim);
    // A hostile gateway's answer, as it would sit in the results: markup and script.
    let hostile = "</td></table><script>document.title='owned'</script><img src=x onerror=alert(1)>";
    let output = ws.out("eval-model-a-c0000").join("output.jsonl");
    let text_of = std::fs::read_to_string(&output).unwrap();
    let mut lines: Vec<serde_json::Value> = text_of.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    lines[0]["response"]["body"]["choices"][0]["message"]["content"] = hostile.into();
    let hostile_id = lines[0]["custom_id"].as_str().unwrap().to_string();
    let rewritten: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&output, rewritten.join("\n") + "\n").unwrap();

    report(&ws, &["--format", "html", "-o", "page.html"]);
    report(&ws, &["--summary", "-o", "summary.csv"]);
    let page = ws.path().join("page.html");
    let url = format!("file://{}", page.display());

    let shot = ws.path().join("shot.png");
    let screenshot = std::process::Command::new(&chromium)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            "--window-size=1200,1400",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(shot.is_file(), "no screenshot: {}", text(&screenshot));
    let (drawn, all) = non_white_pixels(&shot);
    assert!(
        drawn * 100 > all,
        "the screenshot is blank: {drawn} of {all} pixels drawn"
    );

    let dom = std::process::Command::new(&chromium)
        .args(["--headless", "--disable-gpu", "--no-sandbox", "--dump-dom"])
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8(dom.stdout).unwrap();
    assert!(dom.contains("<table id=\"summary\">"), "{dom}");
    // The summary's numbers in the page are the CSV's, cell by cell.
    let csv = csv_records(&ws.path().join("summary.csv"));
    let in_page = summary_cells(&dom);
    assert_eq!(in_page.len(), csv.len(), "a row per model and the total");
    for row in &csv {
        let cells = &in_page[&row["model"]];
        for (column, value) in row {
            assert_eq!(cells.get(column), Some(value), "{} {column}", row["model"]);
        }
    }
    // The hostile answer is text in a cell: no element came of it and no script ran.
    assert_eq!(dom.matches("<script").count(), 0, "a script element in the page");
    assert!(!dom.contains("<img"), "an img element in the page");
    assert!(
        dom.contains("&lt;script&gt;document.title='owned'&lt;/script&gt;"),
        "the answer is not shown as text"
    );
    assert!(dom.contains(&hostile_id));
    assert!(!dom.contains("<title>owned</title>"));
    for chart in ["chart-cost", "chart-success", "chart-tokens"] {
        assert!(dom.contains(&format!("<svg id=\"{chart}\"")), "{chart} missing");
    }
}

/// `(pixels not white, all pixels)` of a PNG.
fn non_white_pixels(path: &Path) -> (usize, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let drawn = pixels
        .chunks(channels)
        .filter(|p| p.iter().take(3).any(|v| *v < 240))
        .count();
    (drawn, pixels.len() / channels)
}

/// The summary table of a page's DOM: model -> column -> text (entities decoded).
fn summary_cells(dom: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let table = &dom[dom.find("<table id=\"summary\">").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    let row_re = regex::Regex::new(r#"<tr data-model="([^"]*)">(.*?)</tr>"#).unwrap();
    let cell_re = regex::Regex::new(r#"<td data-col="([^"]*)"[^>]*>(.*?)</td>"#).unwrap();
    let unescape = |s: &str| {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    };
    row_re
        .captures_iter(table)
        .map(|row| {
            let cells = cell_re
                .captures_iter(&row[2])
                .map(|c| (unescape(&c[1]), unescape(&c[2])))
                .collect();
            (unescape(&row[1]), cells)
        })
        .collect()
}

#[test]
fn results_in_object_storage_are_fetched_and_joined_with_the_input() {
    let s3 = SeaweedFs::start();
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    let endpoint = &s3.endpoint;
    let template = format!(
        "    output:\n      objectStore:\n        url: s3://test/eval/\n        endpoint: {endpoint}\n        secretRef:\n          name: s3\n"
    );
    let secret = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s3\nstringData:\n  AWS_ACCESS_KEY_ID: {ACCESS_KEY}\n  \
         AWS_SECRET_ACCESS_KEY: {SECRET_KEY}\n"
    );
    run_sweep_with(&ws, &sim, &template, &secret);
    assert!(
        s3.get("eval/model-a-c0000/output.jsonl").is_some(),
        "{:?}",
        s3.list("eval/")
    );
    // run -f keeps working copies beside each status.yaml: without them, the bucket is read.
    for entry in std::fs::read_dir(ws.path().join("out/default")).unwrap() {
        for file in ["output.jsonl", "errors.jsonl"] {
            let _ = std::fs::remove_file(entry.as_ref().unwrap().path().join(file));
        }
    }

    let scratch = ws.path().join("tmp");
    std::fs::create_dir(&scratch).unwrap();
    let output = common::bin()
        .current_dir(ws.path())
        .env("TMPDIR", &scratch)
        .args([
            "report",
            "-f",
            "sweep.yaml",
            "-f",
            "gateway.yaml",
            "--out",
            "out",
            "--pivot",
            "model",
            "-o",
            "pivot.csv",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(!text(&output).contains(SECRET_KEY), "the S3 secret leaked");
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().collect();
    assert!(left.is_empty(), "fetched files left behind: {left:?}");
    let pivot = csv_records(&ws.path().join("pivot.csv"));
    assert_eq!(pivot.len(), PROMPTS);
    let mut answered = 0;
    for row in &pivot {
        for model in ["model-a", "model-b"] {
            let status = row[&format!("{model}/status")].as_str();
            assert!(["succeeded", "failed"].contains(&status), "{model}: {row:?}");
            answered += usize::from(status == "succeeded" && !row[&format!("{model}/answer")].is_empty());
        }
    }
    report(&ws, &["--summary", "-o", "summary.csv"]);
    let summary = csv_records(&ws.path().join("summary.csv"));
    let total = summary.iter().find(|r| r["model"] == "(total)").unwrap();
    let status = ws.status_yaml("eval");
    assert_eq!(
        total["succeeded"],
        status["requestCounts"]["completed"].as_u64().unwrap().to_string()
    );
    assert_eq!(total["succeeded"], answered.to_string());
    assert_eq!(total["missing"], "0");
}

#[test]
fn key_splits_a_mixed_batchs_custom_ids_and_pivots_prompts_whose_rows_are_far_apart() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    // Every prompt for model-a, then every prompt for model-b: a prompt's two rows are apart.
    let mut lines = Vec::new();
    for model in ["model-a", "model-b"] {
        for p in 1..=10 {
            lines.push(format!(
                r#"{{"custom_id":"{model}:q{p}","method":"POST","url":"/v1/chat/completions","body":{{"model":"{model}","messages":[{{"role":"user","content":"Question {p} about refunds"}}]}}}}"#
            ));
        }
    }
    ws.write("sweep.yaml", &common::batch_manifests("mixed", &lines.join("\n"), ""));
    ws.write("gateway.yaml", &gateway_manifests(&sim.base_url, KEY, &[]));
    let output = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));

    let key = "^(?P<model>[^:]+):(?P<prompt>.+)$";
    report(&ws, &["--key", key, "--pivot", "model", "-o", "pivot.csv"]);
    let pivot = csv_records(&ws.path().join("pivot.csv"));
    let prompts: BTreeSet<&str> = pivot.iter().map(|r| r["prompt_id"].as_str()).collect();
    assert_eq!(
        prompts,
        (1..=10)
            .map(|p| format!("q{p}"))
            .collect::<BTreeSet<_>>()
            .iter()
            .map(String::as_str)
            .collect()
    );
    for row in &pivot {
        for model in ["model-a", "model-b"] {
            assert_eq!(row[&format!("{model}/status")], "succeeded", "{row:?}");
            assert!(!row[&format!("{model}/answer")].is_empty(), "{row:?}");
        }
    }
    // Without --key the models are not known: the pivot says what to do.
    let refused = report_output(&ws, &["--pivot", "model"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("--key"), "{}", text(&refused));
}

#[test]
fn a_name_not_in_the_files_is_refused_with_what_they_hold() {
    let ws = Workspace::new();
    ws.write("b.yaml", &common::batch_manifests("tickets", &chat_lines(2), ""));
    let output = common::bin()
        .current_dir(ws.path())
        .args(["report", "-f", "b.yaml", "--out", "out", "--name", "other"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("no Batch or BatchSweep other in the files (they hold: Batch default/tickets)"),
        "{}",
        text(&output)
    );
}
