//! Input sources and output sinks as streams.

mod validated_upload;

pub use validated_upload::{ValidatedUpload, validated_file_upload};
