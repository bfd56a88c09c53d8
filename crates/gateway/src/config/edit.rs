//! Editing the config file's text in place: a dotted-key `set` or `unset`
//! applied to the concrete syntax tree of the JSON5 text (jsonc-parser's
//! CST), so comments, key order, quoting, indentation, line endings and
//! everything else the edit does not touch stay exactly as the user wrote
//! them.
//!
//! What an edit writes:
//! - setting an existing key replaces only its value text (a comment on the
//!   same line stays);
//! - a new key goes at the end of its object, on its own line with the
//!   siblings' indentation (a one-line object becomes multi-line), and
//!   missing objects on the way are created the same way;
//! - new keys are bare (`port: 1`) when the object's keys (or, for an empty
//!   object, the nearest enclosing object's) are bare, else quoted like
//!   them; new strings use the quote character of the string they replace,
//!   else of a string beside them, else of the first string in the file,
//!   else `"`;
//! - unset removes the property, its comma and comments on its own line;
//!   a comment on the lines above it stays (it may head a group of keys).
//!
//! The caller re-parses the result and compares it with the intended
//! document before anything is written (`file.rs`), so a surprise here is a
//! refusal, never a damaged file.

use std::collections::HashMap;

use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{
    CstArray, CstContainerNode, CstInputValue, CstLeafNode, CstNode, CstObject, CstObjectProp,
    CstRootNode, CstStringLit, ObjectPropName,
};
use serde_json::Value;

/// One change to apply to the text, by dotted-key parts.
#[derive(Debug, Clone)]
pub(super) enum Edit {
    Set(Vec<String>, Value),
    Unset(Vec<String>),
}

impl Edit {
    /// The dotted key it changes (never its value: it may be a secret).
    pub(super) fn key(&self) -> String {
        match self {
            Edit::Set(parts, _) | Edit::Unset(parts) => parts.join("."),
        }
    }
}

/// Applies `edits` in order to the JSON5 `text`; the error says why the
/// text could not be edited (never quoting it).
pub(super) fn apply(text: &str, edits: &[Edit]) -> Result<String, String> {
    let root = CstRootNode::parse(text, &json5_options())
        .map_err(|err| format!("the in-place editor cannot read it ({err})"))?;
    let top = root
        .object_value()
        .ok_or_else(|| "the top level is not an object".to_string())?;
    let mut editor = Editor {
        top: top.clone(),
        string_quote: first_string_quote(&CstNode::from(top)).unwrap_or('"'),
        key_styles: HashMap::new(),
        renames: Vec::new(),
    };
    for edit in edits {
        match edit {
            Edit::Set(parts, value) => editor.set(parts, value)?,
            Edit::Unset(parts) => editor.unset(parts)?,
        }
    }
    // Names are restyled last: the CST finds properties by decoding their
    // names, which it can only do while they are quoted.
    for (name, text) in editor.renames {
        name.set_raw_value(text);
    }
    Ok(root.to_string())
}

/// Everything JSON5 allows; nothing it does not (a missing comma).
fn json5_options() -> ParseOptions {
    ParseOptions {
        allow_missing_commas: false,
        ..ParseOptions::default()
    }
}

/// A container on the way to the edited key.
enum Container {
    Object(CstObject),
    Array(CstArray),
}

impl Container {
    fn of(node: CstNode) -> Option<Container> {
        match node {
            CstNode::Container(CstContainerNode::Object(o)) => Some(Container::Object(o)),
            CstNode::Container(CstContainerNode::Array(a)) => Some(Container::Array(a)),
            _ => None,
        }
    }
}

/// How a key is written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum KeyStyle {
    Bare,
    Quoted(char),
}

/// The edits' shared state over one parsed text.
struct Editor {
    top: CstObject,
    /// The quote character of the first string value in the file.
    string_quote: char,
    /// The key style of every object this editor created or inserted into,
    /// by path: such an object's first property may be one of ours (still
    /// `"`-quoted until the end), which must not be copied from.
    key_styles: HashMap<Vec<String>, KeyStyle>,
    /// Property names to rewrite once all edits are in.
    renames: Vec<(CstStringLit, String)>,
}

impl Editor {
    fn set(&mut self, parts: &[String], value: &Value) -> Result<(), String> {
        let (last, parents) = parts.split_last().ok_or("an empty key")?;
        let mut current = Container::Object(self.top.clone());
        let mut keys = KeyStyle::Quoted('"');
        for (depth, part) in parents.iter().enumerate() {
            current = match current {
                Container::Object(object) => {
                    keys = self.key_style(&parts[..depth], &object).unwrap_or(keys);
                    match object.get(part) {
                        Some(prop) => prop
                            .value()
                            .and_then(Container::of)
                            .ok_or_else(|| not_a_container(&parts[..=depth]))?,
                        None => {
                            // The missing objects go in as one value, so
                            // they are laid out (trailing commas included)
                            // like the object they join.
                            let nested = parts[depth + 1..]
                                .iter()
                                .rev()
                                .fold(input(value), |inner, name| {
                                    CstInputValue::Object(vec![(name.clone(), inner)])
                                });
                            return self.append(&object, &parts[..=depth], nested, keys);
                        }
                    }
                }
                Container::Array(array) => {
                    let element =
                        element(&array, part).ok_or_else(|| no_index(&parts[..=depth]))?;
                    Container::of(element).ok_or_else(|| not_a_container(&parts[..=depth]))?
                }
            };
        }
        let new = match current {
            Container::Object(object) => {
                keys = self.key_style(parents, &object).unwrap_or(keys);
                self.key_styles.insert(parents.to_vec(), keys);
                let near_quote = string_quote_in(&object).unwrap_or(self.string_quote);
                match object.get(last) {
                    Some(prop) => {
                        let quote = prop.value().and_then(|v| string_quote(&v));
                        prop.set_value(input(value));
                        prop.value().map(|v| (v, quote.unwrap_or(near_quote)))
                    }
                    None => return self.append(&object, parts, input(value), keys),
                }
            }
            Container::Array(array) => {
                let old = element(&array, last).ok_or_else(|| no_index(parts))?;
                let quote = string_quote(&old).unwrap_or(self.string_quote);
                replace(old, input(value)).map(|v| (v, quote))
            }
        };
        let (new, quote) = new.ok_or("the new value vanished")?;
        self.restyle(&new, parts.to_vec(), keys, quote);
        Ok(())
    }

    /// Appends the property at `path` (its last part) to `object`, whose
    /// keys are written in `keys` style.
    fn append(
        &mut self,
        object: &CstObject,
        path: &[String],
        value: CstInputValue,
        keys: KeyStyle,
    ) -> Result<(), String> {
        let (name, parent) = path.split_last().ok_or("an empty key")?;
        self.key_styles.insert(parent.to_vec(), keys);
        let quote = string_quote_in(object).unwrap_or(self.string_quote);
        let prop = object.append(name, value);
        self.rename(&prop, keys);
        let new = prop.value().ok_or("the new value vanished")?;
        self.restyle(&new, path.to_vec(), keys, quote);
        Ok(())
    }

    fn unset(&mut self, parts: &[String]) -> Result<(), String> {
        let (last, parents) = parts.split_last().ok_or("an empty key")?;
        let mut current = Container::Object(self.top.clone());
        for (depth, part) in parents.iter().enumerate() {
            let next = match &current {
                Container::Object(object) => object.get(part).and_then(|p| p.value()),
                Container::Array(array) => element(array, part),
            };
            current = next
                .and_then(Container::of)
                .ok_or_else(|| not_a_container(&parts[..=depth]))?;
        }
        match current {
            Container::Object(object) => object
                .get(last)
                .ok_or_else(|| format!("{} is not in the text", parts.join(".")))?
                .remove(),
            Container::Array(array) => element(&array, last)
                .ok_or_else(|| no_index(parts))?
                .remove(),
        }
        Ok(())
    }

    /// How the keys of the object at `path` are written: as recorded if
    /// this editor touched it, else like its first property (`None` when it
    /// has none).
    fn key_style(&self, path: &[String], object: &CstObject) -> Option<KeyStyle> {
        if let Some(style) = self.key_styles.get(path) {
            return Some(*style);
        }
        object
            .properties()
            .into_iter()
            .find_map(|p| p.name().map(|n| key_style(&n)))
    }

    /// Queues an inserted property's name for rewriting in `keys` style.
    fn rename(&mut self, prop: &CstObjectProp, keys: KeyStyle) {
        let Some(ObjectPropName::String(lit)) = prop.name() else {
            return;
        };
        let Ok(name) = lit.decoded_value() else {
            return;
        };
        match keys {
            KeyStyle::Bare if is_bare_key(&name) => self.renames.push((lit, name)),
            KeyStyle::Quoted(q) if q != '"' => self.renames.push((lit, quoted(&name, q))),
            _ => {}
        }
    }

    /// Writes a value inserted at `path` in the styles around it: the keys
    /// of objects inside it like `keys`, strings with `quote`.
    fn restyle(&mut self, node: &CstNode, path: Vec<String>, keys: KeyStyle, quote: char) {
        match node {
            CstNode::Container(CstContainerNode::Object(o)) => {
                for prop in o.properties() {
                    self.rename(&prop, keys);
                    if let (Some(name), Some(value)) = (prop.name(), prop.value()) {
                        let mut inner = path.clone();
                        inner.push(name.decoded_value().unwrap_or_default());
                        self.restyle(&value, inner, keys, quote);
                    }
                }
                self.key_styles.insert(path, keys);
            }
            CstNode::Container(CstContainerNode::Array(a)) => {
                for (i, element) in a.elements().iter().enumerate() {
                    let mut inner = path.clone();
                    inner.push(i.to_string());
                    self.restyle(element, inner, keys, quote);
                }
            }
            CstNode::Leaf(CstLeafNode::StringLit(s)) if quote != '"' => {
                if let Ok(decoded) = s.decoded_value() {
                    s.set_raw_value(quoted(&decoded, quote));
                }
            }
            _ => {}
        }
    }
}

fn element(array: &CstArray, part: &str) -> Option<CstNode> {
    let index = part.parse::<usize>().ok()?;
    array.elements().into_iter().nth(index)
}

fn not_a_container(parts: &[String]) -> String {
    format!("{} is not an object or array in the text", parts.join("."))
}

fn no_index(parts: &[String]) -> String {
    format!(
        "{} is not an element of the array in the text",
        parts.join(".")
    )
}

/// Replaces a value node (an array element) with a new value.
fn replace(node: CstNode, value: CstInputValue) -> Option<CstNode> {
    match node {
        CstNode::Container(CstContainerNode::Object(o)) => o.replace_with(value),
        CstNode::Container(CstContainerNode::Array(a)) => a.replace_with(value),
        CstNode::Leaf(CstLeafNode::StringLit(s)) => s.replace_with(value),
        CstNode::Leaf(CstLeafNode::NumberLit(n)) => n.replace_with(value),
        CstNode::Leaf(CstLeafNode::BooleanLit(b)) => b.replace_with(value),
        CstNode::Leaf(CstLeafNode::NullKeyword(n)) => n.replace_with(value),
        CstNode::Leaf(CstLeafNode::WordLit(w)) => w.replace_with(value),
        _ => None,
    }
}

/// The CST form of a parsed value.
fn input(value: &Value) -> CstInputValue {
    match value {
        Value::Null => CstInputValue::Null,
        Value::Bool(b) => CstInputValue::Bool(*b),
        Value::Number(n) => CstInputValue::Number(n.to_string()),
        Value::String(s) => CstInputValue::String(s.clone()),
        Value::Array(items) => CstInputValue::Array(items.iter().map(input).collect()),
        Value::Object(map) => {
            CstInputValue::Object(map.iter().map(|(k, v)| (k.clone(), input(v))).collect())
        }
    }
}

/// The quote character of a string value directly in `object`.
fn string_quote_in(object: &CstObject) -> Option<char> {
    object
        .properties()
        .iter()
        .filter_map(|p| p.value())
        .find_map(|v| string_quote(&v))
}

fn first_string_quote(node: &CstNode) -> Option<char> {
    match node {
        CstNode::Container(CstContainerNode::Object(o)) => o
            .properties()
            .iter()
            .filter_map(|p| p.value())
            .find_map(|v| first_string_quote(&v)),
        CstNode::Container(CstContainerNode::Array(a)) => {
            a.elements().iter().find_map(first_string_quote)
        }
        other => string_quote(other),
    }
}

/// The quote character of a string literal node.
fn string_quote(node: &CstNode) -> Option<char> {
    match node {
        CstNode::Leaf(CstLeafNode::StringLit(s)) => s.raw_value().chars().next(),
        _ => None,
    }
}

fn key_style(name: &ObjectPropName) -> KeyStyle {
    match name {
        ObjectPropName::Word(_) => KeyStyle::Bare,
        ObjectPropName::String(s) => KeyStyle::Quoted(s.raw_value().chars().next().unwrap_or('"')),
    }
}

/// Whether a key can be written without quotes (kept to plain ASCII
/// identifiers, which every JSON5 reader accepts).
fn is_bare_key(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// A string literal with `quote` as its quote character: JSON's escapes,
/// with the quote character escaped instead of `"`.
fn quoted(text: &str, quote: char) -> String {
    let json = serde_json::to_string(text).expect("a string serialises");
    let inner = &json[1..json.len() - 1];
    let mut out = String::with_capacity(json.len());
    out.push(quote);
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('"') if quote != '"' => out.push('"'),
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => out.push('\\'),
            },
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parts(key: &str) -> Vec<String> {
        key.split('.').map(String::from).collect()
    }

    #[test]
    fn quoted_strings_round_trip_through_json5() {
        for text in [
            "plain",
            "it's",
            "say \"hi\"",
            "back\\slash",
            "tab\tnew\nline",
            "ünï",
        ] {
            for q in ['\'', '"'] {
                let lit = quoted(text, q);
                assert!(lit.starts_with(q) && lit.ends_with(q), "{lit}");
                assert_eq!(json5::from_str::<String>(&lit).unwrap(), text, "{lit}");
            }
        }
    }

    #[test]
    fn bare_keys_are_plain_identifiers() {
        assert!(is_bare_key("gateway"));
        assert!(is_bare_key("_x1"));
        assert!(!is_bare_key("1x"));
        assert!(!is_bare_key("openai/gpt-5"));
        assert!(!is_bare_key("a-b"));
        assert!(!is_bare_key(""));
    }

    #[test]
    fn a_new_key_copies_the_quotes_of_its_siblings() {
        let text = "{\n  'gateway': {\n    'bind': 'lan'\n  }\n}\n";
        let out = apply(
            text,
            &[Edit::Set(parts("gateway.auth.mode"), json!("token"))],
        )
        .unwrap();
        assert_eq!(
            out,
            "{\n  'gateway': {\n    'bind': 'lan',\n    'auth': {\n      'mode': 'token'\n    }\n  }\n}\n"
        );
    }

    #[test]
    fn an_array_element_is_replaced_and_removed_in_place() {
        let text = "{\n  list: ['a', /* keep */ 'b', 'c'], // end\n}\n";
        let out = apply(text, &[Edit::Set(parts("list.1"), json!("x"))]).unwrap();
        assert_eq!(out, "{\n  list: ['a', /* keep */ 'x', 'c'], // end\n}\n");
        let out = apply(text, &[Edit::Unset(parts("list.2"))]).unwrap();
        assert_eq!(out, "{\n  list: ['a', /* keep */ 'b'], // end\n}\n");
    }

    #[test]
    fn text_the_editor_cannot_read_is_an_error_without_the_text() {
        let err = apply("{ token: 'hunter2' ", &[]).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(apply("[1]", &[]).is_err());
    }
}
