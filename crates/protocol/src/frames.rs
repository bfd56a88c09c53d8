//! Frame shapes: requests in, responses and events out.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::schema::{self, NON_EMPTY, Prop, STRING, Schema};

/// Top-level `error.code` values.
pub mod error_code {
    pub const NOT_PAIRED: &str = "NOT_PAIRED";
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const APPROVAL_NOT_FOUND: &str = "APPROVAL_NOT_FOUND";
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
}

static REQUEST_FRAME: Schema = Schema::Object(&[
    Prop::required("type", Schema::Const("req")),
    Prop::required("id", NON_EMPTY),
    Prop::required("method", NON_EMPTY),
    Prop::optional("params", Schema::Any),
    Prop::optional(
        "traceparent",
        Schema::Str {
            min: 0,
            max: Some(128),
        },
    ),
    Prop::optional("expectedProfileId", STRING),
]);

/// A request frame from a client.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: String,
    pub method: String,
    pub params: Option<Value>,
}

/// Why an inbound text frame is not a usable request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameError {
    /// Not JSON at all.
    #[error("frame is not valid JSON")]
    NotJson,
    /// JSON, but not a valid request frame. `id` is the frame's `id` when it
    /// had a usable one; `problems` is the reference-style problem list.
    #[error("invalid request frame: {problems}")]
    Invalid {
        id: Option<String>,
        problems: String,
    },
}

/// Parses one inbound text frame as a request.
pub fn parse_request(text: &str) -> Result<Request, FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|_| FrameError::NotJson)?;
    request_from_value(value)
}

/// Validates an already-parsed JSON value as a request frame.
pub fn request_from_value(value: Value) -> Result<Request, FrameError> {
    if let Some(problems) = schema::validate(&value, &REQUEST_FRAME) {
        let id = value
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        return Err(FrameError::Invalid { id, problems });
    }
    let Value::Object(mut map) = value else {
        unreachable!("schema checked the frame is an object")
    };
    let take_string = |map: &mut serde_json::Map<String, Value>, key: &str| match map.remove(key) {
        Some(Value::String(s)) => s,
        _ => unreachable!("schema checked {key} is a string"),
    };
    let id = take_string(&mut map, "id");
    let method = take_string(&mut map, "method");
    Ok(Request {
        id,
        method,
        params: map.remove("params"),
    })
}

/// The error object of a failed response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorShape {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Boxed: errors travel in `Result`s on hot paths and should stay small.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Box<Value>>,
}

impl ErrorShape {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ErrorShape {
            code: code.to_string(),
            message: message.into(),
            retryable: None,
            retry_after_ms: None,
            details: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(error_code::INVALID_REQUEST, message)
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    /// The `details.code`, when there is one.
    pub fn detail_code(&self) -> Option<&str> {
        self.details.as_ref()?.get("code")?.as_str()
    }
}

/// A response frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(rename = "type")]
    pub kind: ResponseTag,
    pub id: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorShape>,
}

/// The literal `"res"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum ResponseTag {
    #[serde(rename = "res")]
    Res,
}

impl Response {
    pub fn ok(id: impl Into<String>, payload: Value) -> Self {
        Response {
            kind: ResponseTag::Res,
            id: id.into(),
            ok: true,
            payload: Some(payload),
            error: None,
        }
    }

    pub fn err(id: impl Into<String>, error: ErrorShape) -> Self {
        Response {
            kind: ResponseTag::Res,
            id: id.into(),
            ok: false,
            payload: None,
            error: Some(error),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("response frames always serialize")
    }

    /// A success frame for request `id` whose payload is JSON text already
    /// (`payload_json` must be one JSON value as serde_json writes it): the
    /// same text as
    /// `Response::ok(id, from_str(payload_json)).to_json()`, without
    /// building the value.
    pub fn ok_text(id: &str, payload_json: &str) -> String {
        let id = serde_json::to_string(id).expect("strings serialize");
        format!(r#"{{"type":"res","id":{id},"ok":true,"payload":{payload_json}}}"#)
    }

    /// A success frame for request `id` whose payload is a typed value,
    /// serialized in one pass (no intermediate `Value`): the same text as
    /// `Response::ok(id, to_value(payload)).to_json()`.
    pub fn ok_json(id: &str, payload: &impl Serialize) -> String {
        #[derive(Serialize)]
        struct Ok<'a, T> {
            #[serde(rename = "type")]
            kind: ResponseTag,
            id: &'a str,
            ok: bool,
            payload: &'a T,
        }
        serde_json::to_string(&Ok {
            kind: ResponseTag::Res,
            id,
            ok: true,
            payload,
        })
        .expect("response frames always serialize")
    }
}

/// An event frame. `seq` is per connection and absent on the pre-auth
/// `connect.challenge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventTag,
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// The literal `"event"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum EventTag {
    #[serde(rename = "event")]
    Event,
}

impl Event {
    pub fn new(event: impl Into<String>, payload: Value, seq: Option<u64>) -> Self {
        Event {
            kind: EventTag::Event,
            event: event.into(),
            payload: Some(payload),
            seq,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("event frames always serialize")
    }
}

/// Serializes an event whose payload is already JSON text, with the
/// connection's `seq`; used for broadcasts so the payload is encoded once.
pub fn event_json_with_seq(event: &str, payload_json: &str, seq: u64) -> String {
    let name = serde_json::to_string(event).expect("strings serialize");
    format!(r#"{{"type":"event","event":{name},"payload":{payload_json},"seq":{seq}}}"#)
}

/// The routing fields of any frame, read without decoding the rest (the
/// params or payload are skipped, not built): what a relay needs to pass a
/// frame on untouched. Fields are borrowed from the text where possible.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct FrameHead<'a> {
    #[serde(borrow, rename = "type", default)]
    pub kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub event: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    pub seq: Option<u64>,
}

impl<'a> FrameHead<'a> {
    /// Reads the routing fields of `text` (`None`: not a JSON object).
    pub fn parse(text: &'a str) -> Option<FrameHead<'a>> {
        serde_json::from_str(text).ok()
    }

    /// A request frame (`type: "req"`).
    pub fn is_request(&self) -> bool {
        self.kind.as_deref() == Some("req")
    }

    /// An event frame (`type: "event"`).
    pub fn is_event(&self) -> bool {
        self.kind.as_deref() == Some("event")
    }
}

/// A response frame read without decoding its payload (kept as raw JSON
/// text borrowed from the frame): what a relay needs from a large answer
/// such as an upstream's `hello-ok`.
#[derive(Debug, Deserialize)]
pub struct RawResponse<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub id: std::borrow::Cow<'a, str>,
    pub ok: bool,
    #[serde(borrow, default)]
    pub payload: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    pub error: Option<ErrorShape>,
}

impl<'a> RawResponse<'a> {
    /// Reads a response frame in one pass (`None`: not one).
    pub fn parse(text: &'a str) -> Option<RawResponse<'a>> {
        serde_json::from_str::<RawResponse<'a>>(text)
            .ok()
            .filter(|r| r.kind == "res")
    }
}

/// `text` (an event frame) with its `seq` replaced by `seq`; `None` when
/// it is not a JSON object.
pub fn with_seq(text: &str, seq: u64) -> Option<String> {
    let mut frame: serde_json::Map<String, Value> = serde_json::from_str(text).ok()?;
    frame.insert("seq".into(), Value::from(seq));
    serde_json::to_string(&frame).ok()
}

/// Any frame a gateway sends, as a client sees it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ServerFrame {
    Response(Response),
    Event(Event),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_text_payload_frames_like_a_value_payload() {
        // As serde_json writes it (the text is passed through unchanged).
        let payload = r#"{"ok":true,"b":[1,{"c":null}],"a":"é\"","d":-1.5}"#;
        for id in ["1", "a\"b\\c\u{1}"] {
            let value: Value = serde_json::from_str(payload).unwrap();
            assert_eq!(
                Response::ok_text(id, payload),
                Response::ok(id, value).to_json()
            );
        }
    }

    #[test]
    fn parses_a_request() {
        let r = parse_request(r#"{"type":"req","id":"1","method":"health","params":{}}"#).unwrap();
        assert_eq!(r.id, "1");
        assert_eq!(r.method, "health");
        assert_eq!(r.params, Some(json!({})));
    }

    #[test]
    fn rejects_like_the_reference() {
        assert_eq!(parse_request("nope"), Err(FrameError::NotJson));
        assert_eq!(
            parse_request(r#"{"type":"event","event":"x"}"#),
            Err(FrameError::Invalid {
                id: None,
                problems: "must have required property 'id'; at root: unexpected property 'event'; at /type: must be equal to constant".into()
            })
        );
        assert_eq!(
            parse_request(r#"{"type":"req","id":"h"}"#),
            Err(FrameError::Invalid {
                id: Some("h".into()),
                problems: "must have required property 'method'".into()
            })
        );
    }

    #[test]
    fn frame_heads_route_without_decoding() {
        let h = FrameHead::parse(
            r#"{"type":"req","id":"7","method":"sessions.list","params":{"x":[1,2]}}"#,
        )
        .unwrap();
        assert!(h.is_request());
        assert_eq!(h.id.as_deref(), Some("7"));
        assert_eq!(h.method.as_deref(), Some("sessions.list"));
        let h = FrameHead::parse(
            r#"{"type":"event","event":"presence","payload":{},"seq":4,"recipientProfileId":"p"}"#,
        )
        .unwrap();
        assert!(h.is_event());
        assert_eq!(h.seq, Some(4));
        assert!(FrameHead::parse("nope").is_none());
        assert!(FrameHead::parse("[1]").is_none());
        let text = with_seq(
            r#"{"type":"event","event":"presence","payload":{"seq":1},"seq":4,"x":1}"#,
            9,
        )
        .unwrap();
        assert_eq!(
            text,
            r#"{"type":"event","event":"presence","payload":{"seq":1},"seq":9,"x":1}"#
        );
    }

    #[test]
    fn raw_responses_keep_the_payload_as_text() {
        let r = RawResponse::parse(r#"{"type":"res","id":"c","ok":true,"payload":{"a": [1, 2]}}"#)
            .unwrap();
        assert!(r.ok);
        assert_eq!(r.payload.unwrap().get(), r#"{"a": [1, 2]}"#);
        assert!(RawResponse::parse(r#"{"type":"event","event":"x","id":"c","ok":true}"#).is_none());
        let e = RawResponse::parse(
            r#"{"type":"res","id":"c","ok":false,"error":{"code":"X","message":"m"}}"#,
        )
        .unwrap();
        assert_eq!(e.error.unwrap().code, "X");
    }

    #[test]
    fn event_with_seq_is_valid_json() {
        let s = event_json_with_seq("tick", r#"{"ts":1}"#, 7);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            v,
            json!({"type":"event","event":"tick","payload":{"ts":1},"seq":7})
        );
    }
}
