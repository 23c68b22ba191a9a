//! The durable record of a direct run: `output.jsonl` and `errors.jsonl`, appended to and
//! fsynced in groups, are both the results and the checkpoint (a custom_id in either is done
//! and never sent again), plus `finished.json` once the run concluded.
//!
//! After a crash the last line may be cut short: opening the checkpoint trims it, so that
//! request is sent again, as it never counted as done.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::lines::ResultLine;

/// The successful lines.
pub const OUTPUT_FILE: &str = "output.jsonl";
/// The failed lines.
pub const ERRORS_FILE: &str = "errors.jsonl";
const FINISHED_FILE: &str = "finished.json";
/// Most lines written (and fsynced) as one group.
const GROUP: usize = 1024;

/// Lines done so far, by file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub completed: u64,
    pub failed: u64,
}

/// How a direct run concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    /// Every line got an answer (successful or not).
    Completed,
    /// The completion window passed; lines not done are `batch_expired` errors.
    Expired,
    /// Cancelled; lines not done are `batch_cancelled` errors.
    Cancelled,
}

#[derive(Serialize, Deserialize)]
struct Finished {
    conclusion: Conclusion,
    counts: Counts,
}

/// What an existing checkpoint holds.
#[derive(Debug, Default)]
pub struct Recovered {
    pub done: HashSet<String>,
    pub counts: Counts,
    /// Set when an earlier run already concluded.
    pub conclusion: Option<Conclusion>,
}

/// Opens (creating) the checkpoint directory and reads what is done.
pub fn recover(dir: &Path) -> std::io::Result<Recovered> {
    std::fs::create_dir_all(dir)?;
    let mut recovered = Recovered::default();
    recovered.counts.completed = scan(&dir.join(OUTPUT_FILE), &mut recovered.done)?;
    recovered.counts.failed = scan(&dir.join(ERRORS_FILE), &mut recovered.done)?;
    if let Ok(bytes) = std::fs::read(dir.join(FINISHED_FILE)) {
        let finished: Finished = serde_json::from_slice(&bytes).map_err(invalid(&dir.join(FINISHED_FILE)))?;
        recovered.conclusion = Some(finished.conclusion);
    }
    Ok(recovered)
}

/// Adds the custom_ids of a result file to `done`, trimming a last line cut short by a crash.
fn scan(path: &Path, done: &mut HashSet<String>) -> std::io::Result<u64> {
    #[derive(Deserialize)]
    struct Id {
        custom_id: String,
    }
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let (mut complete_bytes, mut lines, mut line) = (0u64, 0u64, Vec::new());
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        let id: Id = serde_json::from_slice(&line).map_err(invalid(path))?;
        done.insert(id.custom_id);
        complete_bytes += n as u64;
        lines += 1;
    }
    if !line.is_empty() {
        tracing::warn!(file = %path.display(), "dropping a result line cut short by a crash; it is sent again");
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(complete_bytes)?;
        file.sync_all()?;
    }
    Ok(lines)
}

fn invalid(path: &Path) -> impl Fn(serde_json::Error) -> std::io::Error + '_ {
    move |e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} is damaged ({e}); delete the checkpoint to start over",
                path.display()
            ),
        )
    }
}

/// Records that the run concluded.
pub fn finish(dir: &Path, conclusion: Conclusion, counts: Counts) -> std::io::Result<()> {
    let path = dir.join(FINISHED_FILE);
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(&Finished { conclusion, counts })?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()
}

/// Appends result lines on a thread of its own: each group is written and fsynced before the
/// counts it adds are published.
pub struct Writer {
    lines: mpsc::Sender<ResultLine>,
    task: tokio::task::JoinHandle<std::io::Result<Counts>>,
}

impl Writer {
    /// Starts appending to the checkpoint in `dir`, publishing counts (from `counts`) on `progress`.
    pub fn start(dir: PathBuf, counts: Counts, progress: watch::Sender<Counts>) -> Self {
        let (lines, rx) = mpsc::channel(GROUP);
        let task = tokio::task::spawn_blocking(move || write_groups(&dir, counts, rx, &progress));
        Writer { lines, task }
    }

    /// Queues a line; fails only when the writer stopped on an I/O error.
    pub async fn push(&self, line: ResultLine) -> bool {
        self.lines.send(line).await.is_ok()
    }

    /// Writes what is queued; returns the final counts, or the first I/O error.
    pub async fn close(self) -> std::io::Result<Counts> {
        drop(self.lines);
        self.task.await.map_err(std::io::Error::other)?
    }
}

fn write_groups(
    dir: &Path,
    mut counts: Counts,
    mut rx: mpsc::Receiver<ResultLine>,
    progress: &watch::Sender<Counts>,
) -> std::io::Result<Counts> {
    let open = |name| OpenOptions::new().create(true).append(true).open(dir.join(name));
    let (mut output, mut errors) = (open(OUTPUT_FILE)?, open(ERRORS_FILE)?);
    while let Some(first) = rx.blocking_recv() {
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        let mut group = vec![first];
        while group.len() < GROUP {
            match rx.try_recv() {
                Ok(line) => group.push(line),
                Err(_) => break,
            }
        }
        for line in group {
            let (buffer, count) = match line.is_error {
                false => (&mut ok, &mut counts.completed),
                true => (&mut failed, &mut counts.failed),
            };
            buffer.extend_from_slice(&line.json);
            buffer.push(b'\n');
            *count += 1;
        }
        for (file, buffer) in [(&mut output, &ok), (&mut errors, &failed)] {
            if !buffer.is_empty() {
                file.write_all(buffer)?;
                file.sync_data()?;
            }
        }
        progress.send_replace(counts);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, is_error: bool) -> ResultLine {
        ResultLine {
            custom_id: id.into(),
            is_error,
            json: format!(r#"{{"custom_id":"{id}"}}"#).into_bytes(),
        }
    }

    #[tokio::test]
    async fn written_lines_are_recovered_and_a_torn_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(Counts::default());
        let writer = Writer::start(dir.path().to_path_buf(), Counts::default(), tx);
        for (id, err) in [("a", false), ("b", true), ("c", false)] {
            assert!(writer.push(line(id, err)).await);
        }
        assert_eq!(
            writer.close().await.unwrap(),
            Counts {
                completed: 2,
                failed: 1
            }
        );
        assert_eq!(
            *rx.borrow(),
            Counts {
                completed: 2,
                failed: 1
            }
        );

        let mut output = OpenOptions::new()
            .append(true)
            .open(dir.path().join(OUTPUT_FILE))
            .unwrap();
        output.write_all(br#"{"custom_id":"d"#).unwrap();
        let recovered = recover(dir.path()).unwrap();
        assert_eq!(
            recovered.counts,
            Counts {
                completed: 2,
                failed: 1
            }
        );
        let mut done: Vec<_> = recovered.done.into_iter().collect();
        done.sort();
        assert_eq!(done, ["a", "b", "c"]);
        assert!(recovered.conclusion.is_none());
        let text = std::fs::read_to_string(dir.path().join(OUTPUT_FILE)).unwrap();
        assert!(text.ends_with("}\n"), "{text}");

        finish(dir.path(), Conclusion::Expired, recovered.counts).unwrap();
        assert_eq!(recover(dir.path()).unwrap().conclusion, Some(Conclusion::Expired));
    }
}
