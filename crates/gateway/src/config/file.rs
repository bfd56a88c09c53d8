//! [`ConfigFile`]: the JSON5 document, read from disk, edited by dotted key
//! paths (`get`, `set`, `unset`) and written back atomically with mode 0600.
//! Keys the gateway does not know are kept untouched.
//!
//! A file that existed is written back by editing its text in place
//! (`edit.rs`): comments, key order, quoting and formatting outside the
//! edited keys stay as they were. Before the write, the new text is parsed
//! again and must give exactly the intended document (the loaded one with
//! the edits applied, key order included); otherwise nothing is written.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::describe::describe_kind;
use super::edit::{self, Edit};
use super::types::{CONFIG_FILE_NAME, ConfigError};

/// The config file as a JSON document, edited by dotted key paths.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub doc: Value,
    /// Whether the file existed when loaded.
    pub existed: bool,
    /// The text as loaded (`None` for a missing file), edited in place on
    /// save. Not shown by `Debug`: it may hold secrets.
    source: Option<Source>,
    /// `set`/`unset` calls since loading, replayed on `source` by `save`.
    edits: Vec<Edit>,
}

/// The loaded text, redacted in `Debug`.
#[derive(Clone)]
struct Source(String);

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Source({} bytes)", self.0.len())
    }
}

/// The state directory: `$CLAWGATE_STATE_DIR`, else `~/.clawgate`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLAWGATE_STATE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".clawgate")
}

impl ConfigFile {
    /// Loads the file (JSON5); a missing file is an empty document.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ConfigFile::from_doc(path, Value::Object(Map::new()), false));
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        ConfigFile::from_text(path, &text)
    }

    /// Parses the text of a config file found at `path` (what [`ConfigFile::load`]
    /// does once the file is read).
    pub fn from_text(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
        // An empty file (e.g. made with `touch`) is an empty document.
        let doc = if text.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            // json5's messages name the problem and its position, never the
            // surrounding text, so a secret in the file cannot leak here.
            json5::from_str::<Value>(text).map_err(|err| ConfigError::Parse {
                path: path.to_path_buf(),
                message: err.to_string(),
            })?
        };
        if !doc.is_object() {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "the top level is {}, but it must be an object ({{ ... }})",
                    describe_kind(&doc)
                ),
            });
        }
        Ok(ConfigFile {
            source: Some(Source(text.to_string())),
            ..ConfigFile::from_doc(path, doc, true)
        })
    }

    /// A document with no text behind it: `save` writes it as fresh JSON.
    pub(crate) fn from_doc(path: &Path, doc: Value, existed: bool) -> ConfigFile {
        ConfigFile {
            path: path.to_path_buf(),
            doc,
            existed,
            source: None,
            edits: Vec::new(),
        }
    }

    /// The value at a dotted key (`gateway.auth.token`). A numeric part
    /// indexes into an array (`gateway.trustedProxies.0`).
    pub fn get(&self, key: &str) -> Option<&Value> {
        let mut current = &self.doc;
        for part in key_parts(key)? {
            current = match current {
                Value::Object(map) => map.get(part)?,
                Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(current)
    }

    /// Sets a dotted key, creating objects on the way.
    pub fn set(&mut self, key: &str, value: Value) -> Result<(), ConfigError> {
        let parts = key_parts(key).ok_or_else(|| invalid_key_error(key))?;
        let (last, parents) = parts.split_last().expect("key_parts is never empty");
        if !self.doc.is_object() {
            self.doc = Value::Object(Map::new());
        }
        let blocked = |depth: usize, found: &Value| {
            let prefix = parts[..depth].join(".");
            ConfigError::invalid(
                key,
                format!(
                    "cannot be set because {prefix} is {}, not an object; remove it first with: clawgate config unset {prefix}",
                    describe_kind(found)
                ),
            )
        };
        let mut current = &mut self.doc;
        for (depth, part) in parents.iter().enumerate() {
            current = match current {
                Value::Object(map) => map
                    .entry(part.to_string())
                    .or_insert_with(|| Value::Object(Map::new())),
                Value::Array(items) => match part.parse::<usize>() {
                    Ok(index) if index < items.len() => &mut items[index],
                    _ => return Err(array_index_error(key, &parts[..depth], items.len())),
                },
                other => return Err(blocked(depth, other)),
            };
        }
        let edit = Edit::Set(owned(&parts), value.clone());
        match current {
            Value::Object(map) => {
                map.insert(last.to_string(), value);
            }
            Value::Array(items) => match last.parse::<usize>() {
                Ok(index) if index < items.len() => {
                    items[index] = value;
                }
                _ => return Err(array_index_error(key, parents, items.len())),
            },
            other => return Err(blocked(parents.len(), other)),
        }
        self.edits.push(edit);
        Ok(())
    }

    /// Removes a dotted key; returns whether it was present.
    pub fn unset(&mut self, key: &str) -> bool {
        let Some(parts) = key_parts(key) else {
            return false;
        };
        let (last, parents) = parts.split_last().expect("key_parts is never empty");
        let mut current = &mut self.doc;
        for part in parents {
            current = match current {
                Value::Object(map) => match map.get_mut(*part) {
                    Some(next) => next,
                    None => return false,
                },
                Value::Array(items) => {
                    match part.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                        Some(next) => next,
                        None => return false,
                    }
                }
                _ => return false,
            };
        }
        let removed = match current {
            // shift_remove keeps the order of the remaining keys in the file.
            Value::Object(map) => map.shift_remove(*last).is_some(),
            Value::Array(items) => match last.parse::<usize>() {
                Ok(index) if index < items.len() => {
                    items.remove(index);
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if removed {
            self.edits.push(Edit::Unset(owned(&parts)));
        }
        removed
    }

    /// The text `save` writes: the loaded text with the edits applied in
    /// place, checked to parse back to exactly [`ConfigFile::doc`]; for a
    /// file that did not exist (or was blank), the document as JSON.
    pub fn render(&self) -> Result<String, ConfigError> {
        let source = match &self.source {
            Some(Source(text)) if !text.trim().is_empty() => text,
            _ => {
                let mut text = serde_json::to_string_pretty(&self.doc)
                    .map_err(|err| self.write_error(std::io::Error::other(err)))?;
                text.push('\n');
                return Ok(text);
            }
        };
        let edited =
            edit::apply(source, &self.edits).map_err(|problem| self.edit_error(problem))?;
        self.check_edited(&edited)?;
        Ok(edited)
    }

    /// The edited text must parse to the intended document: every edited
    /// key with its new value and every other key, comment-free content and
    /// order as before. Compared as serialised JSON so key order counts.
    fn check_edited(&self, edited: &str) -> Result<(), ConfigError> {
        let parsed = ConfigFile::from_text(&self.path, edited)
            .map_err(|_| self.edit_error("the edited text would not parse as JSON5".to_string()))?;
        let same = serde_json::to_string(&parsed.doc).ok() == serde_json::to_string(&self.doc).ok();
        if same {
            Ok(())
        } else {
            let keys: Vec<String> = self.edits.iter().map(Edit::key).collect();
            Err(self.edit_error(format!(
                "the edited text would not hold exactly the intended change to {}",
                keys.join(", ")
            )))
        }
    }

    fn edit_error(&self, problem: String) -> ConfigError {
        ConfigError::Edit {
            path: self.path.clone(),
            problem,
        }
    }

    fn write_error(&self, source: std::io::Error) -> ConfigError {
        ConfigError::Write {
            path: self.path.clone(),
            source,
        }
    }

    /// Writes the document atomically (temp file + rename), file mode 0600,
    /// parent directory created with 0700.
    pub fn save(&self) -> Result<(), ConfigError> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

        let write_err = |source: std::io::Error| ConfigError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(write_err)?;
            // The umask may have removed bits we did not ask for anyway, but
            // never trust it to have left the directory private.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(write_err)?;
        }
        let file_name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| CONFIG_FILE_NAME.to_string());
        // Rendered (and checked) before anything touches the disk.
        let text = self.render()?;
        let tmp = dir.join(format!(".{file_name}.tmp-{:016x}", rand::random::<u64>()));

        let result = (|| {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            out.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            out.write_all(text.as_bytes())?;
            out.sync_all()?;
            drop(out);
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(err) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_err(err));
        }
        // Make the rename itself durable; a failure here leaves a correct file.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Parses one JSON5 value (what `config set` stores). The error names the
/// problem and its position only, never the input.
pub fn parse_json5_value(text: &str) -> Result<Value, String> {
    json5::from_str::<Value>(text).map_err(|err| err.to_string())
}

/// Whether `key` is a well-formed dotted key path (no empty parts).
pub fn is_valid_key(key: &str) -> bool {
    key_parts(key).is_some()
}

fn owned(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

fn key_parts(key: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        None
    } else {
        Some(parts)
    }
}

fn invalid_key_error(key: &str) -> ConfigError {
    ConfigError::invalid(
        key,
        "is not a valid config path; use dot-separated names such as gateway.auth.mode",
    )
}

fn array_index_error(key: &str, array_parts: &[&str], len: usize) -> ConfigError {
    ConfigError::invalid(
        key,
        format!(
            "cannot be set because {} is an array of {len} items and the next part is not an index below {len}; set the whole array instead",
            array_parts.join(".")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    const TOKEN: &str = "s3cret-token-value-9f2b";

    /// A document as if read from a temp state dir (kept alive by the guard).
    fn file_with(doc: serde_json::Value) -> (ConfigFile, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let file = ConfigFile::from_doc(&dir.path().join(CONFIG_FILE_NAME), doc, true);
        (file, dir)
    }

    #[test]
    fn missing_file_is_an_empty_document() {
        let dir = tempfile::tempdir().unwrap();
        let file = ConfigFile::load(&dir.path().join("nope.json")).unwrap();
        assert!(!file.existed);
        assert_eq!(file.doc, json!({}));
    }

    #[test]
    fn loads_json5_with_comments_and_trailing_commas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(
            &path,
            "// comment\n{ gateway: { port: 19000, /* inline */ bind: 'lan', }, }\n",
        )
        .unwrap();
        let file = ConfigFile::load(&path).unwrap();
        assert!(file.existed);
        assert_eq!(file.get("gateway.port"), Some(&json!(19000)));
        assert_eq!(file.get("gateway.bind"), Some(&json!("lan")));
    }

    #[test]
    fn bad_json5_and_non_object_are_parse_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for text in ["{ gateway: ", "[1, 2]", "\"text\"", "42"] {
            let path = dir.path().join("bad.json");
            std::fs::write(&path, text).unwrap();
            match ConfigFile::load(&path) {
                Err(e @ ConfigError::Parse { .. }) => {
                    assert!(e.to_string().contains(&path.display().to_string()))
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn parse_error_does_not_echo_the_file_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(
            &path,
            format!("{{ gateway: {{ auth: {{ token: {TOKEN} }} }} }}"),
        )
        .unwrap();
        let e = ConfigFile::load(&path).unwrap_err();
        assert!(!e.to_string().contains(TOKEN), "{e}");
    }

    #[test]
    fn get_set_unset_by_dotted_keys() {
        let (mut file, _dir) = file_with(json!({"gateway": {"port": 1}, "list": [1, 2]}));
        assert_eq!(file.get("gateway.port"), Some(&json!(1)));
        assert_eq!(file.get("list.1"), Some(&json!(2)));
        assert_eq!(file.get("gateway.missing"), None);
        assert_eq!(file.get("gateway.port.deeper"), None);
        assert_eq!(file.get(""), None);
        assert_eq!(file.get("gateway..port"), None);

        file.set("gateway.auth.rateLimit.windowMs", json!(5))
            .unwrap();
        assert_eq!(
            file.doc["gateway"]["auth"]["rateLimit"]["windowMs"],
            json!(5)
        );
        file.set("list.0", json!("x")).unwrap();
        assert_eq!(file.doc["list"], json!(["x", 2]));

        assert!(file.unset("gateway.auth.rateLimit.windowMs"));
        assert_eq!(file.doc["gateway"]["auth"]["rateLimit"], json!({}));
        assert!(!file.unset("gateway.auth.rateLimit.windowMs"));
        assert!(!file.unset("nothing.here"));
        assert!(file.unset("list.1"));
        assert_eq!(file.doc["list"], json!(["x"]));
    }

    #[test]
    fn set_through_a_non_object_is_an_error_naming_the_key() {
        let (mut file, _dir) = file_with(json!({"gateway": {"port": 1}}));
        let before = file.doc.clone();
        let e = file.set("gateway.port.x", json!(1)).unwrap_err();
        assert_eq!(e.key(), Some("gateway.port.x"));
        assert!(e.to_string().contains("gateway.port is a number"), "{e}");
        assert!(
            e.to_string().contains("clawgate config unset gateway.port"),
            "{e}"
        );
        assert_eq!(file.doc, before);
        assert!(file.set("a..b", json!(1)).is_err());
        assert!(file.set("", json!(1)).is_err());
    }

    #[test]
    fn unset_keeps_key_order() {
        let (mut file, _dir) = file_with(json!({"a": 1, "b": 2, "c": 3}));
        file.unset("a");
        let keys: Vec<_> = file.doc.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["b", "c"]);
    }

    #[test]
    fn save_is_private_and_creates_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state").join("nested");
        let path = state.join(CONFIG_FILE_NAME);
        let mut file = ConfigFile::load(&path).unwrap();
        file.set("gateway.port", json!(19001)).unwrap();
        file.save().unwrap();
        let file_mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(file_mode, 0o600);
        let dir_mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [CONFIG_FILE_NAME]);
        // Output is JSON (and so JSON5) and loads back.
        let text = std::fs::read_to_string(&path).unwrap();
        let _: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap().doc, file.doc);
    }

    #[test]
    fn save_replaces_a_world_readable_file_with_a_private_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE_NAME);
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut file = ConfigFile::load(&path).unwrap();
        file.set("gateway.auth.token", json!(TOKEN)).unwrap();
        file.save().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn unknown_keys_survive_load_set_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openclaw.json");
        std::fs::write(
            &path,
            r#"// written by hand
{
  agents: { defaults: { model: "x/y", maxTokens: 8192 } }, // trailing comment
  channels: { telegram: { enabled: true } },
  gateway: { port: 18790, customThing: [1, 2, 3] },
}"#,
        )
        .unwrap();
        let mut file = ConfigFile::load(&path).unwrap();
        file.set("gateway.bind", json!("lan")).unwrap();
        file.save().unwrap();
        let back = ConfigFile::load(&path).unwrap();
        assert_eq!(
            back.doc,
            json!({
                "agents": {"defaults": {"model": "x/y", "maxTokens": 8192}},
                "channels": {"telegram": {"enabled": true}},
                "gateway": {"port": 18790, "customThing": [1, 2, 3], "bind": "lan"}
            })
        );
        let keys: Vec<_> = back.doc.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["agents", "channels", "gateway"]);
    }

    /// A hand-written config in the style OpenClaw users keep.
    const COMMENTED: &str = r#"// OpenClaw config (JSON5)
{
  /* the gateway */
  gateway: {
    port: 18789, // default port
    bind: 'loopback',
    auth: {
      mode: 'token', // token auth
      token: 'old-token-1',
    },
  },
  agents: { defaults: { model: 'anthropic/claude' } },
}
"#;

    /// Writes `text`, loads it, runs `change`, saves; the new text.
    fn edited(text: &str, change: impl FnOnce(&mut ConfigFile)) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openclaw.json");
        std::fs::write(&path, text).unwrap();
        let mut file = ConfigFile::load(&path).unwrap();
        change(&mut file);
        file.save().unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::read_to_string(&path).unwrap()
    }

    #[test]
    fn replacing_a_value_changes_only_its_text() {
        let out = edited(COMMENTED, |f| f.set("gateway.port", json!(18800)).unwrap());
        assert_eq!(out, COMMENTED.replace("port: 18789,", "port: 18800,"));
        // A string keeps the quote character it was written with.
        let out = edited(COMMENTED, |f| {
            f.set("gateway.auth.token", json!("new'token")).unwrap()
        });
        assert_eq!(
            out,
            COMMENTED.replace("token: 'old-token-1',", r"token: 'new\'token',")
        );
    }

    #[test]
    fn a_new_key_goes_last_in_its_object_in_the_siblings_style() {
        let out = edited(COMMENTED, |f| {
            f.set("gateway.controlUi.basePath", json!("/ui/")).unwrap();
            f.set("gateway.tickIntervalMs", json!(5000)).unwrap();
        });
        let expected = COMMENTED.replace(
            "      token: 'old-token-1',\n    },\n  },",
            "      token: 'old-token-1',\n    },\n    controlUi: {\n      basePath: '/ui/',\n    },\n    tickIntervalMs: 5000,\n  },",
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn a_new_top_level_section_and_a_key_in_a_one_line_object() {
        let out = edited(COMMENTED, |f| {
            f.set("channels.telegram.enabled", json!(true)).unwrap();
        });
        assert_eq!(
            out,
            COMMENTED.replace(
                "  agents: { defaults: { model: 'anthropic/claude' } },\n}",
                "  agents: { defaults: { model: 'anthropic/claude' } },\n  channels: {\n    telegram: {\n      enabled: true,\n    },\n  },\n}"
            )
        );
    }

    #[test]
    fn unset_removes_the_property_its_comma_and_its_same_line_comment() {
        // In the middle.
        let out = edited(COMMENTED, |f| assert!(f.unset("gateway.port")));
        assert_eq!(
            out,
            COMMENTED.replace("    port: 18789, // default port\n", "")
        );
        // Last, with a trailing comma: the object keeps its trailing comma.
        let out = edited(COMMENTED, |f| assert!(f.unset("gateway.auth.token")));
        assert_eq!(out, COMMENTED.replace("      token: 'old-token-1',\n", ""));
        // A whole section; the comment above it stays.
        let out = edited(COMMENTED, |f| assert!(f.unset("gateway")));
        assert_eq!(
            out,
            "// OpenClaw config (JSON5)\n{\n  /* the gateway */\n  agents: { defaults: { model: 'anthropic/claude' } },\n}\n"
        );
    }

    #[test]
    fn unset_of_the_last_property_without_trailing_commas() {
        let text = "{\n  \"a\": 1, // one\n  /* two */ \"b\": 2 // two\n}\n";
        let out = edited(text, |f| assert!(f.unset("b")));
        assert_eq!(out, "{\n  \"a\": 1 // one\n}\n");
    }

    #[test]
    fn quoted_json_keeps_quoted_keys_and_double_quotes() {
        let text = "{\n    \"gateway\": {\n        \"port\": 18789\n    }\n}";
        let out = edited(text, |f| f.set("gateway.auth.token", json!("t-1")).unwrap());
        assert_eq!(
            out,
            "{\n    \"gateway\": {\n        \"port\": 18789,\n        \"auth\": {\n            \"token\": \"t-1\"\n        }\n    }\n}"
        );
    }

    #[test]
    fn block_comments_and_crlf_line_endings_are_kept() {
        let text = "/* header\r\n   block */\r\n{\r\n  gateway: { /* inline */\r\n    port: 1, /* after */\r\n  },\r\n}\r\n";
        let out = edited(text, |f| {
            f.set("gateway.port", json!(2)).unwrap();
            f.set("gateway.bind", json!("lan")).unwrap();
        });
        assert_eq!(
            out,
            "/* header\r\n   block */\r\n{\r\n  gateway: { /* inline */\r\n    port: 2, /* after */\r\n    bind: \"lan\",\r\n  },\r\n}\r\n"
        );
    }

    #[test]
    fn an_edit_that_cannot_be_made_exactly_is_refused_and_writes_nothing() {
        // Duplicate keys: JSON5 readers take the last, the text editor would
        // change the first. The check after the edit catches it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dup.json");
        let text = format!("{{ gateway: {{ port: 1, port: 2 }}, token: '{TOKEN}' }}");
        std::fs::write(&path, &text).unwrap();
        let mut file = ConfigFile::load(&path).unwrap();
        file.set("gateway.port", json!(3)).unwrap();
        let err = file.save().unwrap_err();
        assert!(matches!(err, ConfigError::Edit { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("gateway.port"), "{message}");
        assert!(message.contains("was not changed"), "{message}");
        assert!(!message.contains(TOKEN), "{message}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn a_blank_existing_file_gets_plain_json() {
        let out = edited("  \n", |f| f.set("gateway.port", json!(1)).unwrap());
        assert_eq!(out, "{\n  \"gateway\": {\n    \"port\": 1\n  }\n}\n");
    }
}
