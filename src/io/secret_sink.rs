//! Packing result files into a Secret's data: as they are when they fit, gzip-compressed
//! (`output.jsonl.gz`) when only that fits, or not at all. Compression streams from disk and
//! stops as soon as the budget is passed, so memory stays bounded by the budget.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

/// What goes into the Secret.
#[derive(Debug, PartialEq, Eq)]
pub enum Packed {
    /// Keys and bytes for the Secret's `data` (`.gz` keys when compressed).
    Fits(BTreeMap<String, Vec<u8>>),
    /// Even compressed, the files need more than the budget.
    TooLarge { bytes: u64 },
}

/// Packs `files` (Secret key, path) within `budget` bytes.
pub fn pack_for_secret(files: &[(String, PathBuf)], budget: u64) -> std::io::Result<Packed> {
    let mut raw_total = 0;
    for (_, path) in files {
        raw_total += std::fs::metadata(path)?.len();
    }
    if raw_total <= budget {
        let data = files
            .iter()
            .map(|(key, path)| Ok((key.clone(), std::fs::read(path)?)))
            .collect::<std::io::Result<_>>()?;
        return Ok(Packed::Fits(data));
    }
    let mut data = BTreeMap::new();
    let mut left = budget;
    for (key, path) in files {
        match gzip_within(path, left)? {
            Some(bytes) => {
                left -= bytes.len() as u64;
                data.insert(format!("{key}.gz"), bytes);
            }
            None => return Ok(Packed::TooLarge { bytes: raw_total }),
        }
    }
    Ok(Packed::Fits(data))
}

/// The gzip of the file, or `None` as soon as it passes `budget` bytes.
fn gzip_within(path: &Path, budget: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        encoder.write_all(&buf[..n])?;
        if encoder.get_ref().len() as u64 > budget {
            return Ok(None);
        }
    }
    let bytes = encoder.finish()?;
    Ok((bytes.len() as u64 <= budget).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, content: &[u8]) -> (String, PathBuf) {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        (name.to_string(), path)
    }

    #[test]
    fn small_files_go_in_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            file(dir.path(), "output.jsonl", b"{}\n"),
            file(dir.path(), "errors.jsonl", b"{}\n{}\n"),
        ];
        let Packed::Fits(data) = pack_for_secret(&files, 100).unwrap() else {
            panic!()
        };
        assert_eq!(data["output.jsonl"], b"{}\n");
        assert_eq!(data["errors.jsonl"].len(), 6);
    }

    #[test]
    fn repetitive_output_is_gzipped_when_only_that_fits() {
        let dir = tempfile::tempdir().unwrap();
        let line = br#"{"custom_id":"a","response":{"status_code":200,"body":{"usage":{"total_tokens":3}}}}"#;
        let content: Vec<u8> = line.iter().chain(b"\n").copied().cycle().take(200_000).collect();
        let files = [file(dir.path(), "output.jsonl", &content)];
        let Packed::Fits(data) = pack_for_secret(&files, 50_000).unwrap() else {
            panic!("did not fit")
        };
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&data["output.jsonl.gz"][..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, content);
    }

    #[test]
    fn what_does_not_fit_even_compressed_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let noise: Vec<u8> = (0..300_000).map(|_| rand::random::<u8>()).collect();
        let files = [file(dir.path(), "output.jsonl", &noise)];
        let packed = pack_for_secret(&files, 100_000).unwrap();
        assert!(
            matches!(packed, Packed::TooLarge { bytes: 300_000 }),
            "random bytes fitted compressed"
        );
    }
}
