//! How config values are named in error messages: by kind only where the
//! value could be a secret, shortened otherwise.

use serde_json::Value;

/// "a string", "a number", ... for messages that must not echo a value.
pub(super) fn describe_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A short rendering of a non-secret value for error messages.
pub(super) fn describe_value(value: &Value) -> String {
    match value {
        Value::Array(_) | Value::Object(_) | Value::Null => describe_kind(value).to_string(),
        other => {
            let text = other.to_string();
            if text.chars().count() > 40 {
                format!("{}...", text.chars().take(40).collect::<String>())
            } else {
                text
            }
        }
    }
}
