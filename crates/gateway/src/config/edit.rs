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
//! - new keys are bare (`port: 1`) when the object's siblings (or, for an
//!   empty object, the nearest enclosing object's) are bare, else quoted
//!   like them; new strings use the quote character of the string they
//!   replace, else of a sibling string, else of the first string in the
//!   file, else `"`;
//! - unset removes the property, its comma and comments on its own line;
//!   a comment on the lines above it stays (it may head a group of keys).
//!
//! The caller re-parses the result and compares it with the intended
//! document before anything is written (`file.rs`), so a surprise here is a
//! refusal, never a damaged file.

use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{
    CstContainerNode, CstInputValue, CstLeafNode, CstNode, CstObject, CstObjectProp, CstRootNode,
    ObjectPropName,
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
    let style = DocStyle::of(&top);
    for edit in edits {
        match edit {
            Edit::Set(parts, value) => set(&top, parts, value, &style)?,
            Edit::Unset(parts) => unset(&top, parts)?,
        }
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
    Array(jsonc_parser::cst::CstArray),
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

fn set(top: &CstObject, parts: &[String], value: &Value, style: &DocStyle) -> Result<(), String> {
    let (last, parents) = parts.split_last().ok_or("an empty key")?;
    let mut current = Container::Object(top.clone());
    for (depth, part) in parents.iter().enumerate() {
        current = match current {
            Container::Object(object) => match object.get(part) {
                Some(prop) => prop
                    .value()
                    .and_then(Container::of)
                    .ok_or_else(|| not_a_container(&parts[..=depth]))?,
                None => {
                    let near = Near::of(&object, style);
                    let prop = object.append(part, CstInputValue::Object(Vec::new()));
                    near.restyle_prop(&prop);
                    Container::Object(prop.object_value().ok_or("a new object vanished")?)
                }
            },
            Container::Array(array) => {
                let element = element(&array, part).ok_or_else(|| no_index(&parts[..=depth]))?;
                Container::of(element).ok_or_else(|| not_a_container(&parts[..=depth]))?
            }
        };
    }
    match current {
        Container::Object(object) => {
            let mut near = Near::of(&object, style);
            match object.get(last) {
                Some(prop) => {
                    if let Some(quote) = prop.value().and_then(|v| string_quote(&v)) {
                        near.quote = quote;
                    }
                    prop.set_value(input(value));
                    if let Some(new) = prop.value() {
                        near.restyle(&new);
                    }
                }
                None => {
                    let prop = object.append(last, input(value));
                    near.restyle_prop(&prop);
                }
            }
        }
        Container::Array(array) => {
            let old = element(&array, last).ok_or_else(|| no_index(parts))?;
            let mut near = match enclosing_object(&old) {
                Some(object) => Near::of(&object, style),
                None => Near {
                    keys: KeyStyle::Quoted('"'),
                    quote: style.string_quote,
                },
            };
            if let Some(quote) = string_quote(&old) {
                near.quote = quote;
            }
            let new = replace(old, input(value)).ok_or("the array element cannot be replaced")?;
            near.restyle(&new);
        }
    }
    Ok(())
}

fn unset(top: &CstObject, parts: &[String]) -> Result<(), String> {
    let (last, parents) = parts.split_last().ok_or("an empty key")?;
    let mut current = Container::Object(top.clone());
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
        Container::Array(array) => element(&array, last).ok_or_else(|| no_index(parts))?.remove(),
    }
    Ok(())
}

fn element(array: &jsonc_parser::cst::CstArray, part: &str) -> Option<CstNode> {
    let index = part.parse::<usize>().ok()?;
    array.elements().into_iter().nth(index)
}

fn not_a_container(parts: &[String]) -> String {
    format!("{} is not an object or array in the text", parts.join("."))
}

fn no_index(parts: &[String]) -> String {
    format!("{} is not an element of the array in the text", parts.join("."))
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

/// How a key is written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum KeyStyle {
    Bare,
    Quoted(char),
}

/// The file's defaults, for values with nothing near them to copy.
struct DocStyle {
    /// The quote character of the first string value in the file.
    string_quote: char,
}

impl DocStyle {
    fn of(top: &CstObject) -> DocStyle {
        DocStyle {
            string_quote: first_string_quote(&CstNode::from(top.clone())).unwrap_or('"'),
        }
    }

    /// The quote character of a string value directly in `object`, else the
    /// file's.
    fn string_quote_near(&self, object: &CstObject) -> char {
        object
            .properties()
            .iter()
            .filter_map(|p| p.value())
            .find_map(|v| string_quote(&v))
            .unwrap_or(self.string_quote)
    }
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

/// How the keys of `object` are written: like its first property, else
/// like the nearest enclosing object's, else quoted with `"`.
fn key_style_near(object: &CstObject) -> KeyStyle {
    let own = object
        .properties()
        .into_iter()
        .find_map(|p| p.name().map(|n| key_style(&n)));
    if let Some(style) = own {
        return style;
    }
    CstNode::from(object.clone())
        .ancestors()
        .filter_map(|a| a.as_object())
        .find_map(|o| {
            o.properties()
                .into_iter()
                .find_map(|p| p.name().map(|n| key_style(&n)))
        })
        .unwrap_or(KeyStyle::Quoted('"'))
}

fn key_style(name: &ObjectPropName) -> KeyStyle {
    match name {
        ObjectPropName::Word(_) => KeyStyle::Bare,
        ObjectPropName::String(s) => KeyStyle::Quoted(s.raw_value().chars().next().unwrap_or('"')),
    }
}

/// The object a value node sits in, directly or through an array.
fn enclosing_object(node: &CstNode) -> Option<CstObject> {
    node.ancestors().find_map(|a| a.as_object())
}

/// The styles of an object's existing keys and strings, read before
/// anything is inserted into it (an inserted node is `"`-quoted until
/// restyled, and must not be copied from).
struct Near {
    keys: KeyStyle,
    quote: char,
}

impl Near {
    fn of(object: &CstObject, style: &DocStyle) -> Near {
        Near {
            keys: key_style_near(object),
            quote: style.string_quote_near(object),
        }
    }

    /// Rewrites a property this module inserted, and everything inside it.
    fn restyle_prop(&self, prop: &CstObjectProp) {
        restyle_name(prop, self.keys);
        if let Some(value) = prop.value() {
            self.restyle(&value);
        }
    }

    /// Rewrites a value this module inserted, and everything inside it.
    fn restyle(&self, node: &CstNode) {
        match node {
            CstNode::Container(CstContainerNode::Object(o)) => {
                for prop in o.properties() {
                    self.restyle_prop(&prop);
                }
            }
            CstNode::Container(CstContainerNode::Array(a)) => {
                for element in a.elements() {
                    self.restyle(&element);
                }
            }
            CstNode::Leaf(CstLeafNode::StringLit(s)) if self.quote != '"' => {
                if let Ok(decoded) = s.decoded_value() {
                    s.set_raw_value(quoted(&decoded, self.quote));
                }
            }
            _ => {}
        }
    }
}

/// Writes a (newly inserted, `"`-quoted) property name in `keys` style.
fn restyle_name(prop: &CstObjectProp, keys: KeyStyle) {
    let Some(ObjectPropName::String(lit)) = prop.name() else {
        return;
    };
    let Ok(name) = lit.decoded_value() else {
        return;
    };
    match keys {
        KeyStyle::Bare if is_bare_key(&name) => lit.set_raw_value(name),
        KeyStyle::Quoted(q) if q != '"' => lit.set_raw_value(quoted(&name, q)),
        _ => {}
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
        for text in ["plain", "it's", "say \"hi\"", "back\\slash", "tab\tnew\nline", "ünï"] {
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
