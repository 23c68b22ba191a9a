//! The Dockerfile cannot be built here (no Docker engine; CI's e2e workflow builds it), so
//! this checks what would break it silently: every file the build compiles in is copied into
//! the build stage and not excluded by .dockerignore, and the image runs as the non-root UID
//! the chart's pods declare.

use crate::common;

use std::path::{Component, Path, PathBuf};

use common::repo_path;

fn dockerfile() -> String {
    std::fs::read_to_string(repo_path("Dockerfile")).unwrap()
}

/// Sources of the build stage's `COPY` lines (not `COPY --from`), repo-relative.
fn copied() -> Vec<String> {
    dockerfile()
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().skip(1).collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.trim_end_matches('/').to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Repo-relative paths of every `include_str!`/`include_bytes!` under src/.
fn compiled_in_files() -> Vec<String> {
    let root = PathBuf::from(repo_path(""));
    let mut found = Vec::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for macro_name in ["include_str!(\"", "include_bytes!(\""] {
                for (at, matched) in text.match_indices(macro_name) {
                    let rest = &text[at + matched.len()..];
                    let relative = &rest[..rest.find('"').unwrap()];
                    let file = normalize(&path.parent().unwrap().join(relative));
                    found.push(file.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
    }
    found
}

fn covered(file: &str, sources: &[String]) -> bool {
    sources.iter().any(|s| file == s || file.starts_with(&format!("{s}/")))
}

#[test]
fn the_build_stage_gets_every_file_the_build_reads() {
    let sources = copied();
    let mut needed = vec![
        "Cargo.toml".to_string(),
        "Cargo.lock".to_string(),
        "build.rs".to_string(),
        "src/main.rs".to_string(),
    ];
    needed.extend(compiled_in_files());
    needed.extend(bench_files(&std::fs::read_to_string(repo_path("Cargo.toml")).unwrap()));
    assert!(needed.iter().any(|f| f == "deploy/rbac.yaml"), "found {needed:?}");

    let ignore = std::fs::read_to_string(repo_path(".dockerignore")).unwrap();
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    for file in &needed {
        assert!(
            covered(file, &sources),
            "the Dockerfile does not COPY {file} (copies {sources:?})"
        );
        assert!(
            !ignored.iter().any(|i| file == i || file.starts_with(&format!("{i}/"))),
            ".dockerignore excludes {file}"
        );
    }
}

#[test]
fn the_image_runs_as_the_charts_non_root_user() {
    let text = dockerfile();
    let final_stage = &text[text.rfind("\nFROM ").unwrap()..];
    assert!(final_stage.contains("distroless"), "a distroless base");
    assert!(final_stage.contains("\nUSER 65532:65532\n"));
    assert!(final_stage.contains("ENTRYPOINT [\"/usr/local/bin/llm-batch-operator\"]"));
    let helpers = std::fs::read_to_string(repo_path("charts/llm-batch-operator/templates/_helpers.tpl")).unwrap();
    assert!(helpers.contains("runAsUser: 65532") && helpers.contains("runAsGroup: 65532"));
}

/// The files of Cargo.toml's `[[bench]]` targets (cargo refuses a manifest whose targets are missing).
fn bench_files(manifest: &str) -> Vec<String> {
    manifest
        .split("[[bench]]")
        .skip(1)
        .filter_map(|section| {
            let name = section.lines().find_map(|l| l.trim().strip_prefix("name = "))?;
            Some(format!("benches/{}.rs", name.trim_matches('"')))
        })
        .collect()
}
