//! Helpers the config unit tests share (compiled for tests only).

use serde_json::Value;

use super::file::ConfigFile;
use super::types::CONFIG_FILE_NAME;

/// A config file holding `doc`, as if read from a temp state dir (kept
/// alive by the returned guard).
pub(crate) fn file_with(doc: Value) -> (ConfigFile, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = ConfigFile::from_doc(&dir.path().join(CONFIG_FILE_NAME), doc, true);
    (file, dir)
}
