//! Writes the byte-pair encodings' tables the token estimate and the simulator count with
//! (`src/bpe`), from tiktoken-rs's ranks, into `OUT_DIR`: compiled into the binary, they cost
//! nothing to load, where building tiktoken-rs's own maps takes a tenth of a second and about
//! 36 MiB per process.

use std::path::Path;

#[path = "src/bpe/table.rs"]
mod table;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/bpe/table.rs");
    let out = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    let encodings = [
        ("o200k_base", tiktoken_rs::o200k_base()),
        ("cl100k_base", tiktoken_rs::cl100k_base()),
    ];
    for (name, bpe) in encodings {
        let bpe = bpe.expect("tiktoken-rs loads its own tables");
        // Ordinary tokens are ranked 0, 1, ...; the first rank that decodes to nothing ends
        // them (the special tokens come after a gap and are never counted here).
        let tokens: Vec<Vec<u8>> = (0..).map_while(|rank| bpe.decode_bytes(&[rank]).ok()).collect();
        let (bytes, ends, index) = table::write(&tokens);
        for (part, data) in [("bytes", bytes), ("ends", ends), ("index", index)] {
            let path = Path::new(&out).join(format!("{name}.{part}"));
            std::fs::write(&path, data).unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
        }
    }
}
