//! Input sources and output sinks as streams.

mod secret_sink;
mod validated_upload;

pub use secret_sink::{Packed, pack_for_secret};
pub use validated_upload::{ValidatedUpload, validated_file_upload};
