//! Input sources and output sinks as streams.

mod chunk_scan;
mod object_input;
pub mod object_output;
pub mod object_storage;
pub mod observed_store;
mod secret_sink;
mod validated_upload;

pub use chunk_scan::{ScanError, scan_object};
pub use object_input::{Checked, ObjectInput};
pub use secret_sink::{Packed, pack_for_secret};
pub use validated_upload::{
    Digest, Expected, MakePreparer, OpenSource, ValidatedUpload, prepared_upload, validated_file_upload,
};
