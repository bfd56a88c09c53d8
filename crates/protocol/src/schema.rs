//! A small closed-schema validator that reports problems the way the
//! reference gateway words them.
//!
//! Reference messages look like `at /client/id: must be equal to one of the
//! allowed values` or `at root: unexpected property 'foo'`; clients match on
//! these texts, so the wording, the order (per object: missing required
//! property, then the first unexpected property, then each declared property
//! in declaration order) and the `"; "` joining are part of the contract.

use serde_json::Value;

/// The shape a JSON value must have.
#[derive(Debug)]
pub enum Schema {
    /// Anything, including `null`.
    Any,
    Bool,
    /// An integer no smaller than `min`.
    Int {
        min: i64,
    },
    /// A string whose length in characters lies within the bounds.
    Str {
        min: usize,
        max: Option<usize>,
    },
    /// The exact string.
    Const(&'static str),
    /// One of the strings.
    Enum(&'static [&'static str]),
    /// An array whose items all match.
    Array(&'static Schema),
    /// An object with arbitrary non-empty keys whose values all match.
    Record(&'static Schema),
    /// An object with exactly these properties (extra ones rejected).
    Object(&'static [Prop]),
}

/// One declared property of an [`Schema::Object`].
#[derive(Debug)]
pub struct Prop {
    pub name: &'static str,
    pub schema: Schema,
    pub required: bool,
}

impl Prop {
    pub const fn required(name: &'static str, schema: Schema) -> Self {
        Prop {
            name,
            schema,
            required: true,
        }
    }
    pub const fn optional(name: &'static str, schema: Schema) -> Self {
        Prop {
            name,
            schema,
            required: false,
        }
    }
}

/// A non-empty string.
pub const NON_EMPTY: Schema = Schema::Str { min: 1, max: None };
/// Any string.
pub const STRING: Schema = Schema::Str { min: 0, max: None };

/// Validates `value` and returns the reference-style problem list joined
/// with `"; "`, or `None` when the value conforms.
pub fn validate(value: &Value, schema: &Schema) -> Option<String> {
    let mut problems = Vec::new();
    check(value, schema, &mut String::new(), &mut problems);
    if problems.is_empty() {
        return None;
    }
    let mut unique: Vec<String> = Vec::with_capacity(problems.len());
    for p in problems {
        if !unique.contains(&p) {
            unique.push(p);
        }
    }
    Some(unique.join("; "))
}

fn at(path: &str, message: impl AsRef<str>) -> String {
    if path.is_empty() {
        message.as_ref().to_string()
    } else {
        format!("at {path}: {}", message.as_ref())
    }
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn check(value: &Value, schema: &Schema, path: &mut String, out: &mut Vec<String>) {
    match schema {
        Schema::Any => {}
        Schema::Bool => {
            if !value.is_boolean() {
                out.push(at(path, "must be boolean"));
            }
        }
        Schema::Int { min } => match value.as_i64() {
            Some(n) if n >= *min => {}
            Some(_) => out.push(at(path, format!("must be >= {min}"))),
            None => {
                // Integral floats (1.0) are integers in JSON Schema.
                match value.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.is_finite() => {
                        if f < *min as f64 {
                            out.push(at(path, format!("must be >= {min}")));
                        }
                    }
                    _ => out.push(at(path, "must be integer")),
                }
            }
        },
        Schema::Str { min, max } => match value.as_str() {
            Some(s) => {
                let len = s.chars().count();
                if len < *min {
                    out.push(at(
                        path,
                        format!("must not have fewer than {min} characters"),
                    ));
                }
                if let Some(max) = max
                    && len > *max
                {
                    out.push(at(
                        path,
                        format!("must not have more than {max} characters"),
                    ));
                }
            }
            None => out.push(at(path, "must be string")),
        },
        Schema::Const(expected) => {
            if value.as_str() != Some(expected) {
                out.push(at(path, "must be equal to constant"));
            }
        }
        Schema::Enum(allowed) => {
            if !value.as_str().is_some_and(|s| allowed.contains(&s)) {
                out.push(at(path, "must be equal to one of the allowed values"));
            }
        }
        Schema::Array(item) => match value.as_array() {
            Some(items) => {
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&i.to_string());
                    check(v, item, path, out);
                    path.truncate(len);
                }
            }
            None => out.push(at(path, "must be array")),
        },
        Schema::Record(item) => match value.as_object() {
            Some(map) => {
                for (k, v) in map {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&escape_pointer(k));
                    if k.is_empty() {
                        out.push(at(path, "must not have fewer than 1 characters"));
                    }
                    check(v, item, path, out);
                    path.truncate(len);
                }
            }
            None => out.push(at(path, "must be object")),
        },
        Schema::Object(props) => {
            let Some(map) = value.as_object() else {
                out.push(at(path, "must be object"));
                return;
            };
            if let Some(missing) = props
                .iter()
                .find(|p| p.required && !map.contains_key(p.name))
            {
                out.push(at(
                    path,
                    format!("must have required property '{}'", missing.name),
                ));
            }
            if let Some(extra) = map.keys().find(|k| !props.iter().any(|p| p.name == *k)) {
                let where_ = if path.is_empty() {
                    "root"
                } else {
                    path.as_str()
                };
                out.push(format!("at {where_}: unexpected property '{extra}'"));
            }
            for prop in props.iter() {
                if let Some(v) = map.get(prop.name) {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&escape_pointer(prop.name));
                    check(v, &prop.schema, path, out);
                    path.truncate(len);
                }
            }
        }
    }
}

/// The closed empty object: the params of methods that take none.
pub const EMPTY_OBJECT: Schema = Schema::Object(&[]);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    static NESTED: Schema = Schema::Object(&[
        Prop::required("a", Schema::Int { min: 1 }),
        Prop::required("b", NON_EMPTY),
        Prop::optional("c", Schema::Array(&NON_EMPTY)),
        Prop::optional(
            "d",
            Schema::Object(&[Prop::required("e", Schema::Enum(&["x", "y"]))]),
        ),
    ]);

    #[test]
    fn reports_in_reference_order() {
        let v = json!({"foo": 1, "a": "x"});
        assert_eq!(
            validate(&v, &NESTED).unwrap(),
            "must have required property 'b'; at root: unexpected property 'foo'; at /a: must be integer"
        );
        let v = json!({"a": 0, "b": "", "c": ["", "ok"], "d": {"e": "z", "q": 1}});
        assert_eq!(
            validate(&v, &NESTED).unwrap(),
            "at /a: must be >= 1; at /b: must not have fewer than 1 characters; at /c/0: must not have fewer than 1 characters; at /d: unexpected property 'q'; at /d/e: must be equal to one of the allowed values"
        );
        assert!(validate(&json!({"a": 2, "b": "x"}), &NESTED).is_none());
        assert_eq!(validate(&json!([]), &NESTED).unwrap(), "must be object");
    }
}
