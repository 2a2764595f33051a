//! Kafka message payloads turned into ingestion requests.
//!
//! Objects reach the ingest topic in whatever shape their producer speaks: S3 or MinIO bucket
//! notifications, EventBridge events, CloudEvents (structured or binary Kafka binding), or the
//! plain `{"url": ...}` requests that backfill and replay write. The consumer should not care
//! which, so every payload is reduced here to one of three outcomes: [`Request`]s to ingest,
//! [`Parsed::Ignored`] for a well-formed event that asks for nothing (a deletion, a test
//! event), or a [`MessageError`] that says what is wrong, fit for a dead-letter record.
//!
//! Bucket keys become URL paths (`s3://b/a%20b.nc` for the key `a b.nc`), the form the io
//! layer's `Location::parse` decodes back, so keys holding `%`, `#` or `?` stay exact.
//!
//! Parsing is total: any bytes give one of these, never a panic, and payloads over
//! [`MAX_PAYLOAD_BYTES`] are refused before they are parsed.

use std::borrow::Cow;

use base64::Engine as _;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde_json::{Map, Value};

/// Largest payload accepted (1 MiB); bigger ones are refused unread.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// One thing to ingest, whatever message shape announced it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Request {
    /// Absolute URL of the object: s3://bucket/key, gs://..., file:///..., https://... or a
    /// local absolute path turned into file:// URL.
    pub url: String,
    /// Optional collection id override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// Optional kind hint ("netcdf", "hdf5", "zarr", ...), passed through untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The PID of the dataset the file belongs to (a CMIP6 dataset's handle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_pid: Option<String>,
    /// Whether that dataset was retracted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retracted: Option<bool>,
}

/// What the message turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Objects to ingest (an S3 event can carry several records). Never empty.
    Requests(Vec<Request>),
    /// A well-formed event that asks for nothing (e.g. ObjectRemoved, s3:TestEvent):
    /// acknowledged and skipped, with a short reason.
    Ignored(String),
}

/// Why a message cannot be used. Texts quote at most a short prefix of any input value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MessageError {
    #[error("empty message")]
    Empty,
    #[error("payload larger than {limit} bytes ({size} bytes)")]
    TooLarge { size: usize, limit: usize },
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("expected a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error(
        "unknown message shape: expected an S3 event notification, EventBridge event, CloudEvent or {{\"url\": ...}}"
    )]
    UnknownShape,
    #[error("S3 event notification {0}")]
    S3Event(String),
    #[error("S3 event record {index} {problem}")]
    S3Record { index: usize, problem: String },
    #[error("EventBridge event {0}")]
    EventBridge(String),
    #[error("CloudEvent {0}")]
    CloudEvent(String),
    #[error("invalid request: {0}")]
    Request(String),
}

/// Kafka headers as (name, value bytes) pairs; used for CloudEvents binary mode (ce_*
/// headers, content-type).
pub fn parse_message(
    payload: Option<&[u8]>,
    headers: &[(&str, &[u8])],
) -> Result<Parsed, MessageError> {
    let payload = payload.unwrap_or_default();
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(MessageError::TooLarge {
            size: payload.len(),
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    let body = trim_body(payload);
    // The CloudEvents Kafka binding: a cloudevents content type means structured mode,
    // otherwise ce_specversion means binary mode.
    let structured = header(headers, "content-type")
        .and_then(|v| std::str::from_utf8(v).ok())
        .is_some_and(|ct| media_type(ct).eq_ignore_ascii_case("application/cloudevents+json"));
    if !structured && header(headers, "ce_specversion").is_some() {
        return binary_cloud_event(body, headers);
    }
    if body.is_empty() {
        return Err(MessageError::Empty);
    }
    let value = parse_json(body)?;
    let Value::Object(obj) = &value else {
        return Err(MessageError::NotAnObject(json_kind(&value)));
    };
    if structured || obj.contains_key("specversion") {
        return structured_cloud_event(obj);
    }
    known_shape(obj).unwrap_or(Err(MessageError::UnknownShape))
}

/// The deterministic Kafka key for a request: its URL (so ordering is kept per object).
pub fn request_key(r: &Request) -> String {
    r.url.clone()
}

/// Encodes a plain request message (JSON) — what backfill and replay produce.
pub fn encode_request(r: &Request) -> Vec<u8> {
    serde_json::to_vec(r).expect("a struct of strings always serializes")
}

/// Escaped when a key or path becomes a URL path: what `url` escapes in a file path
/// segment, plus `%` (the text is literal), but not `/`. Non-ASCII is always escaped.
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\');

/// URL schemes the io layer can open; anything else is refused here, where the
/// dead-letter record still says which message carried it.
const SCHEMES: &[&str] = &[
    "file", "s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "http", "https",
];

/// CloudEvent types (as substrings) that announce a new object, and ones that announce
/// its removal: AWS (notification and EventBridge names), GCS, Azure.
const CREATED_TYPES: &[&str] = &[
    "ObjectCreated",
    "Object Created",
    "object.finalize",
    "object.v1.finalized",
    "BlobCreated",
];
const REMOVED_TYPES: &[&str] = &[
    "ObjectRemoved",
    "Object Deleted",
    "object.delete",
    "object.v1.deleted",
    "BlobDeleted",
];

/// The self-describing shapes, tried on the top-level object and on CloudEvent data.
fn known_shape(obj: &Map<String, Value>) -> Option<Result<Parsed, MessageError>> {
    if let Some(records) = obj.get("Records") {
        return Some(s3_notification(records));
    }
    if let Some(event) = obj.get("Event").and_then(Value::as_str)
        && event.ends_with("TestEvent")
    {
        return Some(Ok(Parsed::Ignored(format!(
            "S3 test event {}",
            show(event)
        ))));
    }
    if obj.contains_key("detail-type") {
        return Some(eventbridge(obj));
    }
    if obj.contains_key("url") {
        return Some(plain_request(obj).map(|r| Parsed::Requests(vec![r])));
    }
    None
}

/// AWS S3 and MinIO bucket notifications (MinIO's top-level `EventName`/`Key` repeat what
/// the records say, so only the records are read).
fn s3_notification(records: &Value) -> Result<Parsed, MessageError> {
    let Value::Array(records) = records else {
        return Err(MessageError::S3Event(format!(
            "has Records that is {}, not an array",
            json_kind(records)
        )));
    };
    if records.is_empty() {
        return Ok(Parsed::Ignored(
            "S3 event notification with no records".into(),
        ));
    }
    let mut requests = Vec::new();
    let mut skipped = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let err = |problem: String| MessageError::S3Record { index, problem };
        let Value::Object(record) = record else {
            return Err(err(format!("is {}, not an object", json_kind(record))));
        };
        // aws:s3, minio:s3, ceph:s3; other services' records (SNS, SQS) are not S3 events.
        if let Some(source) = record.get("eventSource")
            && !source.as_str().is_some_and(|s| s.ends_with(":s3"))
        {
            return Err(err(format!(
                "has eventSource {}, not an S3 source",
                show_value(source)
            )));
        }
        let Some(name) = record.get("eventName").and_then(Value::as_str) else {
            return Err(err("has no eventName".into()));
        };
        let action = name.strip_prefix("s3:").unwrap_or(name);
        if !(action == "ObjectCreated" || action.starts_with("ObjectCreated:")) {
            skipped.push(action.to_string());
            continue;
        }
        let bucket = str_at(record, &["s3", "bucket", "name"])
            .ok_or_else(|| err("has no s3.bucket.name".into()))?;
        let raw_key = str_at(record, &["s3", "object", "key"])
            .ok_or_else(|| err("has no s3.object.key".into()))?;
        // Notification keys are form-encoded: `+` is a space, then %XX escapes.
        let spaced = raw_key.replace('+', " ");
        let key = percent_decode_str(&spaced)
            .decode_utf8()
            .map_err(|_| err("has an s3.object.key that is not UTF-8 once decoded".into()))?;
        match object_url("s3", bucket, &key).map_err(err)? {
            Target::Source(url) => requests.push(request(url)),
            Target::Skip(why) => skipped.push(format!("{action} of {why}")),
        }
    }
    if requests.is_empty() {
        return Ok(Parsed::Ignored(format!(
            "nothing to ingest ({})",
            list(&skipped)
        )));
    }
    Ok(Parsed::Requests(requests))
}

/// EventBridge events from S3. Their `detail.object.key` is taken literally: unlike bucket
/// notifications it is documented without form encoding, and re-decoding would corrupt
/// keys that really contain `+` or `%`.
fn eventbridge(obj: &Map<String, Value>) -> Result<Parsed, MessageError> {
    let err = |m: &str| MessageError::EventBridge(m.to_string());
    let detail_type = obj
        .get("detail-type")
        .and_then(Value::as_str)
        .ok_or_else(|| err("has a detail-type that is not a string"))?;
    let source = obj
        .get("source")
        .and_then(Value::as_str)
        .ok_or_else(|| err("has no source"))?;
    if source != "aws.s3" {
        return Ok(Parsed::Ignored(format!(
            "EventBridge event from {}, not aws.s3",
            show(source)
        )));
    }
    if detail_type != "Object Created" {
        return Ok(Parsed::Ignored(format!(
            "EventBridge {} event",
            show(detail_type)
        )));
    }
    let detail = obj
        .get("detail")
        .and_then(Value::as_object)
        .ok_or_else(|| err("has no detail object"))?;
    let bucket =
        str_at(detail, &["bucket", "name"]).ok_or_else(|| err("has no detail.bucket.name"))?;
    let key = str_at(detail, &["object", "key"]).ok_or_else(|| err("has no detail.object.key"))?;
    match object_url("s3", bucket, key).map_err(|p| err(&format!("detail {p}")))? {
        Target::Source(url) => Ok(Parsed::Requests(vec![request(url)])),
        Target::Skip(why) => Ok(Parsed::Ignored(format!(
            "EventBridge Object Created of {why}"
        ))),
    }
}

/// `{"url": ..., "collection"?: ..., "kind"?: ..., "dataset_pid"?: ..., "retracted"?: ...}`;
/// other fields are allowed and ignored.
fn plain_request(obj: &Map<String, Value>) -> Result<Request, MessageError> {
    let err = MessageError::Request;
    let url = match obj.get("url") {
        Some(Value::String(s)) => s.trim(),
        None | Some(Value::Null) => return Err(err("url is missing".into())),
        Some(other) => {
            return Err(err(format!(
                "url must be a string, got {}",
                json_kind(other)
            )));
        }
    };
    Ok(Request {
        url: normalize_url(url).map_err(err)?,
        collection: optional_string(obj, "collection").map_err(err)?,
        kind: optional_string(obj, "kind").map_err(err)?,
        dataset_pid: optional_string(obj, "dataset_pid").map_err(err)?,
        retracted: match obj.get("retracted") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                return Err(err(format!(
                    "retracted must be true or false, got {}",
                    json_kind(other)
                )));
            }
        },
    })
}

fn optional_string(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(format!("{field} must not be empty")),
        Some(other) => Err(format!(
            "{field} must be a string, got {}",
            json_kind(other)
        )),
    }
}

/// URLs pass through as given (once checked); absolute local paths become file:// URLs.
fn normalize_url(url: &str) -> Result<String, String> {
    if url.is_empty() {
        return Err("url is empty".into());
    }
    if url.chars().any(char::is_control) {
        return Err(format!("url contains control characters: {}", show(url)));
    }
    if url.starts_with('/') {
        return Ok(format!("file://{}", utf8_percent_encode(url, PATH)));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "url must be absolute (a URL such as s3://bucket/key, or an absolute path), got {}",
            show(url)
        ));
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return Err(format!("url has an invalid scheme: {}", show(url)));
    }
    let lower = scheme.to_ascii_lowercase();
    if !SCHEMES.contains(&lower.as_str()) {
        return Err(format!(
            "unsupported URL scheme {} (expected one of {})",
            show(scheme),
            SCHEMES.join(", ")
        ));
    }
    if lower == "file" {
        if !(rest.starts_with('/') || rest.starts_with("localhost/")) {
            return Err(format!(
                "file URL must hold an absolute path (file:///...), got {}",
                show(url)
            ));
        }
    } else if rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .is_empty()
    {
        return Err(format!("url has no bucket or host: {}", show(url)));
    }
    Ok(url.to_string())
}

/// CloudEvent attributes this module reads.
struct CeAttrs<'a> {
    ty: &'a str,
    source: Option<&'a str>,
    subject: Option<&'a str>,
}

/// CloudEvent data, as far as it could be read.
enum CeData<'a> {
    Absent,
    Json(Cow<'a, Value>),
    Unreadable(MessageError),
}

fn structured_cloud_event(obj: &Map<String, Value>) -> Result<Parsed, MessageError> {
    let err = |m: String| MessageError::CloudEvent(m);
    match obj.get("specversion") {
        Some(Value::String(_)) => {}
        None => {
            return Err(err(
                "has no specversion (content-type says application/cloudevents+json)".into(),
            ));
        }
        Some(other) => {
            return Err(err(format!(
                "has a specversion that is {}, not a string",
                json_kind(other)
            )));
        }
    }
    let ty = match obj.get("type") {
        Some(Value::String(s)) if !s.is_empty() => s.as_str(),
        _ => return Err(err("has no type".into())),
    };
    let attrs = CeAttrs {
        ty,
        source: obj.get("source").and_then(Value::as_str),
        subject: obj.get("subject").and_then(Value::as_str),
    };
    let data = match (obj.get("data"), obj.get("data_base64")) {
        (Some(Value::String(text)), _) => json_data(text.as_bytes()),
        (Some(v), _) if !v.is_null() => CeData::Json(Cow::Borrowed(v)),
        (_, Some(Value::String(b64))) => {
            match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
                Ok(bytes) => json_data(&bytes),
                Err(e) => return Err(err(format!("has data_base64 that is not base64: {e}"))),
            }
        }
        (_, None | Some(Value::Null)) => CeData::Absent,
        (_, Some(other)) => {
            return Err(err(format!(
                "has data_base64 that is {}, not a string",
                json_kind(other)
            )));
        }
    };
    cloud_event(&attrs, data)
}

/// Binary mode: attributes in `ce_*` headers, the payload is the data.
fn binary_cloud_event(body: &[u8], headers: &[(&str, &[u8])]) -> Result<Parsed, MessageError> {
    let text = |name: &str| -> Result<Option<&str>, MessageError> {
        header(headers, name)
            .map(|v| {
                std::str::from_utf8(v)
                    .map_err(|_| MessageError::CloudEvent(format!("header {name} is not UTF-8")))
            })
            .transpose()
    };
    let ty = text("ce_type")?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| MessageError::CloudEvent("has no ce_type header".into()))?;
    let attrs = CeAttrs {
        ty,
        source: text("ce_source")?,
        subject: text("ce_subject")?,
    };
    let data = if body.is_empty() {
        CeData::Absent
    } else {
        json_data(body)
    };
    cloud_event(&attrs, data)
}

fn json_data(bytes: &[u8]) -> CeData<'static> {
    match parse_json(trim_body(bytes)) {
        Ok(v) => CeData::Json(Cow::Owned(v)),
        Err(e) => CeData::Unreadable(e),
    }
}

/// The type says whether anything is asked; the data, else subject and source, say what.
fn cloud_event(attrs: &CeAttrs, data: CeData) -> Result<Parsed, MessageError> {
    let ignored = || Parsed::Ignored(format!("CloudEvent of type {}", show(attrs.ty)));
    if REMOVED_TYPES.iter().any(|t| attrs.ty.contains(t)) {
        return Ok(ignored());
    }
    let created = CREATED_TYPES.iter().any(|t| attrs.ty.contains(t));
    if let CeData::Json(v) = &data
        && let Value::Object(obj) = v.as_ref()
    {
        if let Some(parsed) = known_shape(obj) {
            return parsed;
        }
        if let Some((scheme, bucket, key)) = storage_object_data(obj) {
            if !created {
                return Ok(ignored());
            }
            return match object_url(scheme, bucket, key) {
                Ok(Target::Source(url)) => Ok(Parsed::Requests(vec![request(url)])),
                Ok(Target::Skip(why)) => Ok(Parsed::Ignored(format!("CloudEvent for {why}"))),
                Err(p) => Err(MessageError::CloudEvent(format!("data {p}"))),
            };
        }
    }
    if !created {
        return Ok(ignored());
    }
    if let Some((scheme, bucket, key)) = object_from_attributes(attrs) {
        return match object_url(scheme, bucket, key) {
            Ok(Target::Source(url)) => Ok(Parsed::Requests(vec![request(url)])),
            Ok(Target::Skip(why)) => Ok(Parsed::Ignored(format!("CloudEvent for {why}"))),
            Err(p) => Err(MessageError::CloudEvent(format!("subject/source {p}"))),
        };
    }
    match data {
        CeData::Unreadable(e) => Err(e),
        _ => Err(MessageError::CloudEvent(format!(
            "of type {} names no object: data is no known shape and subject/source give no bucket and key",
            show(attrs.ty)
        ))),
    }
}

/// Object data without event semantics: an EventBridge `detail` (S3) or a GCS
/// StorageObjectData. Keys are literal.
fn storage_object_data(obj: &Map<String, Value>) -> Option<(&'static str, &str, &str)> {
    if let (Some(bucket), Some(key)) = (
        str_at(obj, &["bucket", "name"]),
        str_at(obj, &["object", "key"]),
    ) {
        return Some(("s3", bucket, key));
    }
    if let (Some(Value::String(bucket)), Some(Value::String(name))) =
        (obj.get("bucket"), obj.get("name"))
    {
        return Some(("gs", bucket, name));
    }
    None
}

/// `source` `arn:aws:s3:::bucket[/key]` or `//storage.googleapis.com/projects/_/buckets/B`,
/// with the key in `subject` (GCS: `objects/<name>`). Taken literally.
fn object_from_attributes<'a>(attrs: &CeAttrs<'a>) -> Option<(&'static str, &'a str, &'a str)> {
    let source = attrs.source?;
    if let Some(rest) = source.strip_prefix("arn:aws:s3:::") {
        let (bucket, arn_key) = match rest.split_once('/') {
            Some((b, k)) => (b, Some(k)),
            None => (rest, None),
        };
        return Some(("s3", bucket, attrs.subject.or(arn_key)?));
    }
    if let Some(rest) = source.strip_prefix("//storage.googleapis.com/") {
        let mut parts = rest.split('/');
        parts.find(|p| *p == "buckets")?;
        let bucket = parts.next()?;
        let subject = attrs.subject?;
        return Some((
            "gs",
            bucket,
            subject.strip_prefix("objects/").unwrap_or(subject),
        ));
    }
    None
}

/// What an object-created notification asks to ingest.
#[derive(Debug, PartialEq)]
enum Target {
    /// `scheme://bucket/key`, the key escaped as a URL path (the io layer decodes it back).
    Source(String),
    /// Nothing, and why (named as "... of <why>").
    Skip(String),
}

/// Root metadata documents of a Zarr store: v3, v2 consolidated, v2.
const ZARR_ROOT_DOCUMENTS: [&str; 3] = ["zarr.json", ".zmetadata", ".zgroup"];

/// The source an object-created notification stands for. A folder marker (a key ending in
/// `/`) holds nothing. An object inside a Zarr store (a folder named `*.zarr`) stands for
/// the store when it is the store's root metadata, which writers put last (zarr-python
/// rewrites it when it consolidates); the store's other objects (chunks, node metadata)
/// are skipped, or every chunk upload would ingest the store again.
fn object_url(scheme: &str, bucket: &str, key: &str) -> Result<Target, String> {
    let bucket_ok = !bucket.is_empty()
        && bucket.len() <= 255
        && bucket
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c));
    if !bucket_ok {
        return Err(format!("has an invalid bucket name {}", show(bucket)));
    }
    if key.is_empty() {
        return Err("has an empty object key".into());
    }
    if key.ends_with('/') {
        return Ok(Target::Skip("a folder marker".into()));
    }
    let url = |key: &str| format!("{scheme}://{bucket}/{}", utf8_percent_encode(key, PATH));
    Ok(match (source_key(key), zarr_store_key(key)) {
        (Some(source), _) => Target::Source(url(source)),
        (None, store) => Target::Skip(format!(
            "an object inside the Zarr store {} (its root metadata triggers ingestion)",
            url(store.map_or(key, |(s, _)| s))
        )),
    })
}

/// The source an object key stands for: the key itself, the Zarr store whose root
/// metadata it is, or `None` for another object of a Zarr store (a chunk, a node's
/// metadata). Upload events and backfill listings both go by it.
pub fn source_key(key: &str) -> Option<&str> {
    match zarr_store_key(key) {
        None => Some(key),
        Some((store, inner)) if ZARR_ROOT_DOCUMENTS.contains(&inner) => Some(store),
        Some(_) => None,
    }
}

/// `(store key, key inside the store)` when `key` lies inside a folder named `*.zarr`
/// (the outermost one).
pub fn zarr_store_key(key: &str) -> Option<(&str, &str)> {
    let mut at = 0;
    for segment in key.split('/') {
        let end = at + segment.len();
        if end < key.len() && segment.len() > ".zarr".len() && segment.ends_with(".zarr") {
            return Some((&key[..end], &key[end + 1..]));
        }
        at = end + 1;
    }
    None
}

fn request(url: String) -> Request {
    Request {
        url,
        collection: None,
        kind: None,
        dataset_pid: None,
        retracted: None,
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, MessageError> {
    serde_json::from_slice(bytes).map_err(|e| MessageError::NotJson(e.to_string()))
}

/// Without a UTF-8 byte-order mark and surrounding ASCII whitespace.
fn trim_body(bytes: &[u8]) -> &[u8] {
    bytes
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(bytes)
        .trim_ascii()
}

/// The last header of that name (Kafka allows repeats), names compared case-insensitively.
fn header<'h>(headers: &[(&str, &'h [u8])], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .rev()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

fn str_at<'a>(obj: &'a Map<String, Value>, path: &[&str]) -> Option<&'a str> {
    let (last, parents) = path.split_last()?;
    let mut cur = obj;
    for p in parents {
        cur = cur.get(*p)?.as_object()?;
    }
    cur.get(*last)?.as_str()
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An input string quoted for a message, cut to a short prefix.
fn show(s: &str) -> String {
    const MAX_CHARS: usize = 80;
    match s.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) => show(s),
        other => json_kind(other).to_string(),
    }
}

/// Distinct items, in order, at most a handful.
fn list(items: &[String]) -> String {
    const MAX_ITEMS: usize = 5;
    let mut distinct: Vec<&str> = Vec::new();
    for item in items {
        if !distinct.contains(&item.as_str()) {
            distinct.push(item);
        }
    }
    let mut out = distinct
        .iter()
        .take(MAX_ITEMS)
        .map(|s| s.chars().take(64).collect::<String>())
        .collect::<Vec<_>>()
        .join(", ");
    if distinct.len() > MAX_ITEMS {
        out.push_str(", …");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    type Headers = Vec<(&'static str, &'static [u8])>;

    fn hdrs(pairs: &[(&'static str, &'static str)]) -> Headers {
        pairs.iter().map(|(n, v)| (*n, v.as_bytes())).collect()
    }

    fn parse(payload: &str) -> Result<Parsed, MessageError> {
        parse_message(Some(payload.as_bytes()), &[])
    }

    fn urls(parsed: Result<Parsed, MessageError>) -> Vec<String> {
        match parsed {
            Ok(Parsed::Requests(rs)) => rs.into_iter().map(|r| r.url).collect(),
            other => panic!("expected requests, got {other:?}"),
        }
    }

    fn ignored(parsed: Result<Parsed, MessageError>) -> String {
        match parsed {
            Ok(Parsed::Ignored(reason)) => reason,
            other => panic!("expected ignored, got {other:?}"),
        }
    }

    fn error(parsed: Result<Parsed, MessageError>) -> String {
        match parsed {
            Err(e) => e.to_string(),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// An AWS notification record, as S3 sends it.
    fn aws_record(event_name: &str, bucket: &str, key: &str) -> String {
        format!(
            r#"{{
              "eventVersion": "2.1",
              "eventSource": "aws:s3",
              "awsRegion": "eu-west-1",
              "eventTime": "2024-05-02T09:14:07.512Z",
              "eventName": "{event_name}",
              "userIdentity": {{"principalId": "AWS:AIDAEXAMPLE"}},
              "requestParameters": {{"sourceIPAddress": "10.0.3.17"}},
              "responseElements": {{
                "x-amz-request-id": "C3D13FE58DE4C810",
                "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"
              }},
              "s3": {{
                "s3SchemaVersion": "1.0",
                "configurationId": "ingest-netcdf",
                "bucket": {{
                  "name": "{bucket}",
                  "ownerIdentity": {{"principalId": "A3NL1KOZZKExample"}},
                  "arn": "arn:aws:s3:::{bucket}"
                }},
                "object": {{
                  "key": "{key}",
                  "size": 1048576,
                  "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                  "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
                  "sequencer": "0055AED6DCD90281E5"
                }}
              }}
            }}"#
        )
    }

    fn aws_event(records: &[String]) -> String {
        format!(r#"{{"Records": [{}]}}"#, records.join(","))
    }

    const MINIO_PUT: &str = r#"{
      "EventName": "s3:ObjectCreated:Put",
      "Key": "climate/cmip6/tas day+1.nc",
      "Records": [{
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": "2024-03-01T12:00:00.000Z",
        "eventName": "s3:ObjectCreated:Put",
        "userIdentity": {"principalId": "minioadmin"},
        "requestParameters": {"principalId": "minioadmin", "region": "", "sourceIPAddress": "172.17.0.1"},
        "responseElements": {"x-amz-id-2": "dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8", "x-amz-request-id": "17B8C8F1E4F4F6A2", "x-minio-deployment-id": "6f1c1b9e-3f0f-4f4e-9e6e-2a8f1c1f9a11", "x-minio-origin-endpoint": "http://172.17.0.2:9000"},
        "s3": {
          "s3SchemaVersion": "1.0",
          "configurationId": "Config",
          "bucket": {"name": "climate", "ownerIdentity": {"principalId": "minioadmin"}, "arn": "arn:aws:s3:::climate"},
          "object": {
            "key": "cmip6%2Ftas+day%2B1.nc",
            "size": 2048,
            "eTag": "5d41402abc4b2a76b9719d911017c592",
            "contentType": "application/x-netcdf",
            "userMetadata": {"content-type": "application/x-netcdf"},
            "sequencer": "17B8C8F1E5A0B1C2"
          }
        },
        "source": {"host": "172.17.0.1", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7.0.63"}
      }]
    }"#;

    const TEST_EVENT: &str = r#"{
      "Service": "Amazon S3",
      "Event": "s3:TestEvent",
      "Time": "2024-05-02T09:00:00.000Z",
      "Bucket": "era5-archive",
      "RequestId": "5582815E1AEA5ADF",
      "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"
    }"#;

    const EVENTBRIDGE_CREATED: &str = r#"{
      "version": "0",
      "id": "17793124-05d4-b198-2fde-7ededc63b103",
      "detail-type": "Object Created",
      "source": "aws.s3",
      "account": "111122223333",
      "time": "2024-05-02T09:14:07Z",
      "region": "eu-west-1",
      "resources": ["arn:aws:s3:::era5-archive"],
      "detail": {
        "version": "0",
        "bucket": {"name": "era5-archive"},
        "object": {
          "key": "reanalysis/2m temperature/t2m+2020.nc",
          "size": 5,
          "etag": "b1946ac92492d2347c6235b4d2611184",
          "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
          "sequencer": "617f08299329d189"
        },
        "request-id": "N4N7GDK58NMKJ12R",
        "requester": "123456789012",
        "source-ip-address": "1.2.3.4",
        "reason": "PutObject"
      }
    }"#;

    const EVENTBRIDGE_DELETED: &str = r#"{
      "version": "0",
      "id": "2ee9cc15-d022-99ea-1fb8-1b1bac4850f9",
      "detail-type": "Object Deleted",
      "source": "aws.s3",
      "account": "111122223333",
      "time": "2024-05-02T09:20:00Z",
      "region": "eu-west-1",
      "resources": ["arn:aws:s3:::era5-archive"],
      "detail": {
        "version": "0",
        "bucket": {"name": "era5-archive"},
        "object": {"key": "reanalysis/old.nc", "sequencer": "617f0837b476e463"},
        "request-id": "0BH729840619AG5K",
        "requester": "123456789012",
        "source-ip-address": "1.2.3.4",
        "reason": "DeleteObject",
        "deletion-type": "Delete Marker Created"
      }
    }"#;

    const CE_GCS_FINALIZED: &str = r#"{
      "specversion": "1.0",
      "type": "google.cloud.storage.object.v1.finalized",
      "source": "//storage.googleapis.com/projects/_/buckets/cmip6-mirror",
      "subject": "objects/CMIP/NCAR/tas_Amon.nc",
      "id": "1234567890",
      "time": "2024-05-02T09:14:07.512Z",
      "datacontenttype": "application/json",
      "data": {
        "kind": "storage#object",
        "id": "cmip6-mirror/CMIP/NCAR/tas_Amon.nc/1714641247512000",
        "name": "CMIP/NCAR/tas_Amon.nc",
        "bucket": "cmip6-mirror",
        "generation": "1714641247512000",
        "contentType": "application/x-netcdf",
        "size": "52428800",
        "timeCreated": "2024-05-02T09:14:07.512Z"
      }
    }"#;

    const PLAIN: &str =
        r#"{"url": "s3://era5-archive/reanalysis/t2m.nc", "collection": "era5", "kind": "netcdf"}"#;

    fn ce_with_data(ty: &str, data: &str) -> String {
        format!(
            r#"{{"specversion": "1.0", "type": "{ty}", "source": "/zarrstac/tests", "id": "a1b2c3", "datacontenttype": "application/json", "data": {data}}}"#
        )
    }

    // --- S3 bucket notifications -------------------------------------------------------

    #[test]
    fn aws_put_becomes_an_s3_url() {
        let msg = aws_event(&[aws_record(
            "ObjectCreated:Put",
            "era5-archive",
            "reanalysis/t2m.nc",
        )]);
        assert_eq!(
            parse(&msg),
            Ok(Parsed::Requests(vec![Request {
                url: "s3://era5-archive/reanalysis/t2m.nc".into(),
                collection: None,
                kind: None,
                dataset_pid: None,
                retracted: None,
            }]))
        );
    }

    #[test]
    fn form_encoded_keys_are_decoded_then_escaped_as_a_url_path() {
        let msg = aws_event(&[aws_record(
            "ObjectCreated:Put",
            "b",
            "dir/a+b%20c%2Bd%2Fe%3A1.nc",
        )]);
        // Key is `dir/a b c+d/e:1.nc`; spaces escape in the URL, `:` `+` `/` do not.
        assert_eq!(urls(parse(&msg)), ["s3://b/dir/a%20b%20c+d/e:1.nc"]);
    }

    #[test]
    fn keys_with_percent_hash_question_and_unicode_survive_as_url_path() {
        let msg = aws_event(&[aws_record(
            "ObjectCreated:Put",
            "b",
            "100%25+done%23%3F/caf%C3%A9.nc",
        )]);
        assert_eq!(
            urls(parse(&msg)),
            ["s3://b/100%25%20done%23%3F/caf%C3%A9.nc"]
        );
    }

    #[test]
    fn malformed_escapes_are_kept_literally() {
        let msg = aws_event(&[aws_record("ObjectCreated:Put", "b", "x%zz.nc")]);
        assert_eq!(urls(parse(&msg)), ["s3://b/x%25zz.nc"]);
    }

    #[test]
    fn key_that_decodes_to_invalid_utf8_is_an_error() {
        let msg = aws_event(&[aws_record("ObjectCreated:Put", "b", "bad%FF.nc")]);
        assert_eq!(
            error(parse(&msg)),
            "S3 event record 0 has an s3.object.key that is not UTF-8 once decoded"
        );
    }

    #[test]
    fn minio_event_with_s3_prefix_uses_the_records() {
        assert_eq!(
            urls(parse(MINIO_PUT)),
            ["s3://climate/cmip6/tas%20day+1.nc"]
        );
    }

    #[test]
    fn multi_record_event_yields_every_created_object_in_order() {
        let msg = aws_event(&[
            aws_record("ObjectCreated:Put", "b", "a.nc"),
            aws_record("ObjectRemoved:Delete", "b", "old.nc"),
            aws_record("ObjectCreated:CompleteMultipartUpload", "b", "big+file.h5"),
            aws_record("s3:ObjectCreated:Copy", "other", "c.zarr/.zmetadata"),
        ]);
        assert_eq!(
            urls(parse(&msg)),
            ["s3://b/a.nc", "s3://b/big%20file.h5", "s3://other/c.zarr"]
        );
    }

    #[test]
    fn objects_of_a_zarr_store_stand_for_the_store_only_when_root_metadata() {
        let msg = aws_event(&[
            aws_record("ObjectCreated:Put", "b", "s2/p.zarr/measurements/b02/c/0/0"),
            aws_record("ObjectCreated:Put", "b", "s2/p.zarr/measurements/zarr.json"),
            aws_record("ObjectCreated:Put", "b", "s2/p.zarr/zarr.json"),
            aws_record("ObjectCreated:Put", "b", "v2.zarr/.zgroup"),
            aws_record("ObjectCreated:Put", "b", "a.zarr/b.zarr/zarr.json"),
        ]);
        assert_eq!(urls(parse(&msg)), ["s3://b/s2/p.zarr", "s3://b/v2.zarr"]);
        let only_chunks = aws_event(&[aws_record("ObjectCreated:Put", "b", "p.zarr/x/c/0")]);
        match parse(&only_chunks) {
            Ok(Parsed::Ignored(why)) => {
                assert!(why.contains("inside the Zarr store"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        // A file named like a store is no store.
        assert_eq!(
            object_url("s3", "b", "x.zarr"),
            Ok(Target::Source("s3://b/x.zarr".into()))
        );
        assert_eq!(zarr_store_key(".zarr/zarr.json"), None);
    }

    #[test]
    fn removals_only_are_ignored_with_the_event_names() {
        let msg = aws_event(&[
            aws_record("ObjectRemoved:Delete", "b", "a.nc"),
            aws_record("ObjectRemoved:DeleteMarkerCreated", "b", "b.nc"),
            aws_record("s3:ObjectRemoved:Delete", "b", "c.nc"),
        ]);
        assert_eq!(
            ignored(parse(&msg)),
            "nothing to ingest (ObjectRemoved:Delete, ObjectRemoved:DeleteMarkerCreated)"
        );
    }

    #[test]
    fn other_event_types_and_folder_markers_are_ignored() {
        let msg = aws_event(&[
            aws_record("ObjectRestore:Completed", "b", "a.nc"),
            aws_record("ObjectCreated:Put", "b", "new+folder/"),
        ]);
        assert_eq!(
            ignored(parse(&msg)),
            "nothing to ingest (ObjectRestore:Completed, ObjectCreated:Put of a folder marker)"
        );
    }

    #[test]
    fn test_event_is_ignored() {
        assert_eq!(ignored(parse(TEST_EVENT)), "S3 test event \"s3:TestEvent\"");
    }

    #[test]
    fn empty_records_are_ignored() {
        assert_eq!(
            ignored(parse(r#"{"Records": []}"#)),
            "S3 event notification with no records"
        );
    }

    #[test]
    fn s3_record_problems_name_the_record_and_field() {
        let no_key = r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"size":1}}}]}"#;
        assert_eq!(
            error(parse(no_key)),
            "S3 event record 0 has no s3.object.key"
        );

        let key_number = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":7}}}]}"#;
        assert_eq!(
            error(parse(key_number)),
            "S3 event record 0 has no s3.object.key"
        );

        let msg = aws_event(&[
            aws_record("ObjectCreated:Put", "b", "ok.nc"),
            r#"{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"object":{"key":"x"}}}"#
                .into(),
        ]);
        assert_eq!(
            error(parse(&msg)),
            "S3 event record 1 has no s3.bucket.name"
        );

        let no_name = r#"{"Records":[{"eventSource":"aws:s3","s3":{}}]}"#;
        assert_eq!(error(parse(no_name)), "S3 event record 0 has no eventName");

        let sns = r#"{"Records":[{"eventSource":"aws:sqs","eventName":"x","body":"{}"}]}"#;
        assert_eq!(
            error(parse(sns)),
            "S3 event record 0 has eventSource \"aws:sqs\", not an S3 source"
        );

        assert_eq!(
            error(parse(r#"{"Records":[42]}"#)),
            "S3 event record 0 is a number, not an object"
        );
        assert_eq!(
            error(parse(r#"{"Records":"all"}"#)),
            "S3 event notification has Records that is a string, not an array"
        );

        let bad_bucket = aws_event(&[aws_record("ObjectCreated:Put", "b/c", "k.nc")]);
        assert_eq!(
            error(parse(&bad_bucket)),
            "S3 event record 0 has an invalid bucket name \"b/c\""
        );
        let empty_key = aws_event(&[aws_record("ObjectCreated:Put", "b", "")]);
        assert_eq!(
            error(parse(&empty_key)),
            "S3 event record 0 has an empty object key"
        );
    }

    // --- EventBridge -------------------------------------------------------------------

    #[test]
    fn eventbridge_object_created_takes_the_key_literally() {
        assert_eq!(
            urls(parse(EVENTBRIDGE_CREATED)),
            ["s3://era5-archive/reanalysis/2m%20temperature/t2m+2020.nc"]
        );
    }

    #[test]
    fn eventbridge_deletion_and_other_sources_are_ignored() {
        assert_eq!(
            ignored(parse(EVENTBRIDGE_DELETED)),
            "EventBridge \"Object Deleted\" event"
        );
        let ec2 = r#"{"version":"0","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","detail":{"instance-id":"i-1","state":"running"}}"#;
        assert_eq!(
            ignored(parse(ec2)),
            "EventBridge event from \"aws.ec2\", not aws.s3"
        );
    }

    #[test]
    fn eventbridge_problems_are_specific() {
        let no_key = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{}}}"#;
        assert_eq!(
            error(parse(no_key)),
            "EventBridge event has no detail.object.key"
        );
        let no_detail = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3"}"#;
        assert_eq!(
            error(parse(no_detail)),
            "EventBridge event has no detail object"
        );
        let no_source = r#"{"detail-type":"Object Created","detail":{}}"#;
        assert_eq!(error(parse(no_source)), "EventBridge event has no source");
        let bad_type = r#"{"detail-type":5,"source":"aws.s3"}"#;
        assert_eq!(
            error(parse(bad_type)),
            "EventBridge event has a detail-type that is not a string"
        );
    }

    // --- CloudEvents -------------------------------------------------------------------

    #[test]
    fn structured_cloudevent_with_s3_notification_data() {
        let data = aws_event(&[aws_record("ObjectCreated:Put", "b", "x/y+z.nc")]);
        let msg = ce_with_data("com.amazonaws.s3.notification", &data);
        assert_eq!(urls(parse(&msg)), ["s3://b/x/y%20z.nc"]);
        // The content type alone marks structured mode too.
        let h = hdrs(&[(
            "content-type",
            "application/cloudevents+json; charset=UTF-8",
        )]);
        assert_eq!(
            urls(parse_message(Some(msg.as_bytes()), &h)),
            ["s3://b/x/y%20z.nc"]
        );
    }

    #[test]
    fn structured_cloudevent_with_plain_request_data() {
        let msg = ce_with_data("org.zarrstac.ingest.request", PLAIN);
        assert_eq!(
            parse(&msg),
            Ok(Parsed::Requests(vec![Request {
                url: "s3://era5-archive/reanalysis/t2m.nc".into(),
                collection: Some("era5".into()),
                kind: Some("netcdf".into()),
                dataset_pid: None,
                retracted: None,
            }]))
        );
    }

    #[test]
    fn structured_cloudevent_with_data_as_json_text_or_base64() {
        let as_text = format!(
            r#"{{"specversion":"1.0","type":"org.zarrstac.ingest.request","source":"/replay","id":"1","data":{}}}"#,
            serde_json::to_string(PLAIN).unwrap()
        );
        assert_eq!(
            urls(parse(&as_text)),
            ["s3://era5-archive/reanalysis/t2m.nc"]
        );

        let b64 = base64::engine::general_purpose::STANDARD.encode(PLAIN);
        let as_b64 = format!(
            r#"{{"specversion":"1.0","type":"org.zarrstac.ingest.request","source":"/replay","id":"1","data_base64":"{b64}"}}"#
        );
        assert_eq!(
            urls(parse(&as_b64)),
            ["s3://era5-archive/reanalysis/t2m.nc"]
        );

        let bad_b64 =
            r#"{"specversion":"1.0","type":"t","source":"/s","id":"1","data_base64":"!!!"}"#;
        assert!(
            error(parse(bad_b64)).starts_with("CloudEvent has data_base64 that is not base64"),
            "{bad_b64}"
        );
    }

    #[test]
    fn structured_cloudevent_with_eventbridge_event_or_detail_data() {
        let msg = ce_with_data("aws.s3.eventbridge", EVENTBRIDGE_CREATED);
        assert_eq!(
            urls(parse(&msg)),
            ["s3://era5-archive/reanalysis/2m%20temperature/t2m+2020.nc"]
        );
        let detail = r#"{"bucket":{"name":"b"},"object":{"key":"k 1.nc","size":3}}"#;
        let created = ce_with_data("aws.s3.Object Created", detail);
        assert_eq!(urls(parse(&created)), ["s3://b/k%201.nc"]);
        let deleted = ce_with_data("aws.s3.Object Deleted", detail);
        assert_eq!(
            ignored(parse(&deleted)),
            "CloudEvent of type \"aws.s3.Object Deleted\""
        );
    }

    #[test]
    fn structured_cloudevent_from_gcs() {
        assert_eq!(
            urls(parse(CE_GCS_FINALIZED)),
            ["gs://cmip6-mirror/CMIP/NCAR/tas_Amon.nc"]
        );
        // Without data, source and subject name the object.
        let bare = r#"{"specversion":"1.0","type":"google.cloud.storage.object.v1.finalized","source":"//storage.googleapis.com/projects/_/buckets/cmip6-mirror","subject":"objects/a b.nc","id":"9"}"#;
        assert_eq!(urls(parse(bare)), ["gs://cmip6-mirror/a%20b.nc"]);
        let deleted = CE_GCS_FINALIZED.replace("v1.finalized", "v1.deleted");
        assert_eq!(
            ignored(parse(&deleted)),
            "CloudEvent of type \"google.cloud.storage.object.v1.deleted\""
        );
        let metadata = CE_GCS_FINALIZED.replace("v1.finalized", "v1.metadataUpdated");
        assert!(ignored(parse(&metadata)).contains("metadataUpdated"));
    }

    #[test]
    fn structured_cloudevent_from_s3_arn_source_and_subject() {
        let msg = r#"{"specversion":"1.0","type":"com.amazonaws.s3.ObjectCreated:Put","source":"arn:aws:s3:::era5-archive","subject":"reanalysis/t2m.nc","id":"1"}"#;
        assert_eq!(urls(parse(msg)), ["s3://era5-archive/reanalysis/t2m.nc"]);
        let object_arn = r#"{"specversion":"1.0","type":"ObjectCreated","source":"arn:aws:s3:::b/k.nc","id":"1"}"#;
        assert_eq!(urls(parse(object_arn)), ["s3://b/k.nc"]);
    }

    #[test]
    fn cloudevent_problems_are_specific() {
        let no_type = r#"{"specversion":"1.0","source":"/s","id":"1","data":{}}"#;
        assert_eq!(error(parse(no_type)), "CloudEvent has no type");
        let bad_version = r#"{"specversion":1,"type":"t"}"#;
        assert_eq!(
            error(parse(bad_version)),
            "CloudEvent has a specversion that is a number, not a string"
        );
        let h = hdrs(&[("content-type", "application/cloudevents+json")]);
        assert_eq!(
            error(parse_message(Some(PLAIN.as_bytes()), &h)),
            "CloudEvent has no specversion (content-type says application/cloudevents+json)"
        );
        let nameless =
            r#"{"specversion":"1.0","type":"ObjectCreated","source":"/somewhere","id":"1"}"#;
        assert!(error(parse(nameless)).contains("names no object"));
        let bad_request = ce_with_data("t", r#"{"url":"relative/x.nc"}"#);
        assert!(error(parse(&bad_request)).starts_with("invalid request: url must be absolute"));
    }

    #[test]
    fn unrelated_cloudevent_is_ignored() {
        let msg = ce_with_data("com.example.heartbeat", r#"{"uptime": 12}"#);
        assert_eq!(
            ignored(parse(&msg)),
            "CloudEvent of type \"com.example.heartbeat\""
        );
    }

    #[test]
    fn binary_cloudevent_with_s3_notification_payload() {
        let payload = aws_event(&[aws_record("ObjectCreated:Put", "b", "a+b.nc")]);
        let h = hdrs(&[
            ("ce_specversion", "1.0"),
            ("ce_type", "com.amazonaws.s3.notification"),
            ("ce_source", "arn:aws:s3:::b"),
            ("ce_id", "42"),
            ("content-type", "application/json"),
        ]);
        assert_eq!(
            urls(parse_message(Some(payload.as_bytes()), &h)),
            ["s3://b/a%20b.nc"]
        );
    }

    #[test]
    fn binary_cloudevent_with_plain_payload_and_without_payload() {
        let h = hdrs(&[
            ("ce_specversion", "1.0"),
            ("ce_type", "org.zarrstac.ingest.request"),
            ("ce_source", "/backfill"),
            ("ce_id", "7"),
        ]);
        assert_eq!(
            urls(parse_message(Some(PLAIN.as_bytes()), &h)),
            ["s3://era5-archive/reanalysis/t2m.nc"]
        );
        // A GCS finalize with headers only: subject and source name the object.
        let h = hdrs(&[
            ("CE_SPECVERSION", "1.0"),
            ("ce_type", "google.cloud.storage.object.v1.finalized"),
            (
                "ce_source",
                "//storage.googleapis.com/projects/_/buckets/cmip6",
            ),
            ("ce_subject", "objects/x/y.nc"),
            ("ce_id", "8"),
        ]);
        assert_eq!(urls(parse_message(None, &h)), ["gs://cmip6/x/y.nc"]);
        // Binary mode with an unrelated type and opaque data is simply ignored.
        let h = hdrs(&[("ce_specversion", "1.0"), ("ce_type", "com.example.ping")]);
        assert!(ignored(parse_message(Some(b"\x00\x01 not json"), &h)).contains("ping"));
    }

    #[test]
    fn cloudevents_content_type_means_structured_even_with_ce_headers() {
        let h = hdrs(&[
            ("ce_specversion", "1.0"),
            ("ce_type", "com.example.ping"),
            ("content-type", "application/cloudevents+json"),
        ]);
        assert_eq!(
            urls(parse_message(Some(CE_GCS_FINALIZED.as_bytes()), &h)),
            ["gs://cmip6-mirror/CMIP/NCAR/tas_Amon.nc"]
        );
    }

    #[test]
    fn binary_cloudevent_problems_are_specific() {
        let h = hdrs(&[("ce_specversion", "1.0"), ("ce_id", "1")]);
        assert_eq!(
            error(parse_message(Some(PLAIN.as_bytes()), &h)),
            "CloudEvent has no ce_type header"
        );
        let h: Headers = vec![("ce_specversion", b"1.0"), ("ce_type", b"\xff\xfe")];
        assert_eq!(
            error(parse_message(Some(PLAIN.as_bytes()), &h)),
            "CloudEvent header ce_type is not UTF-8"
        );
        // Created type, unreadable data and no subject/source: the data's own error.
        let h = hdrs(&[("ce_specversion", "1.0"), ("ce_type", "ObjectCreated")]);
        assert!(error(parse_message(Some(b"{oops"), &h)).starts_with("not JSON: "));
    }

    #[test]
    fn removal_type_wins_over_data() {
        // Azure Event Grid blob events carry a `url`; a deletion must not become a request.
        let data = r#"{"api":"DeleteBlob","url":"https://acct.blob.core.windows.net/c/a.nc"}"#;
        let msg = ce_with_data("Microsoft.Storage.BlobDeleted", data);
        assert!(ignored(parse(&msg)).contains("BlobDeleted"));
    }

    // --- Plain requests ----------------------------------------------------------------

    #[test]
    fn plain_request_with_all_fields_and_extras() {
        let msg = r#"{"url":"gs://bucket/x.zarr","collection":"cmip6","kind":"zarr","priority":3,"note":{"by":"replay"}}"#;
        assert_eq!(
            parse(msg),
            Ok(Parsed::Requests(vec![Request {
                url: "gs://bucket/x.zarr".into(),
                collection: Some("cmip6".into()),
                kind: Some("zarr".into()),
                dataset_pid: None,
                retracted: None,
            }]))
        );
        let nulls = r#"{"url":" https://data.example.org/a.nc ","collection":null,"kind":null}"#;
        assert_eq!(
            parse(nulls),
            Ok(Parsed::Requests(vec![request(
                "https://data.example.org/a.nc".into()
            )]))
        );
    }

    #[test]
    fn plain_requests_may_name_their_dataset_s_pid_and_retraction() {
        let msg = r#"{"url":"s3://a/tas.nc","dataset_pid":"hdl:21.14100/x","retracted":true}"#;
        let Ok(Parsed::Requests(r)) = parse(msg) else {
            panic!("{:?}", parse(msg));
        };
        assert_eq!(
            (r[0].dataset_pid.as_deref(), r[0].retracted),
            (Some("hdl:21.14100/x"), Some(true))
        );
        let bad = parse(r#"{"url":"s3://a/tas.nc","retracted":"yes"}"#).unwrap_err();
        assert_eq!(
            bad.to_string(),
            MessageError::Request("retracted must be true or false, got a string".into())
                .to_string()
        );
        let empty = parse(r#"{"url":"s3://a/tas.nc","dataset_pid":""}"#).unwrap_err();
        assert!(
            empty.to_string().contains("dataset_pid must not be empty"),
            "{empty}"
        );
    }

    #[test]
    fn absolute_local_paths_become_file_urls() {
        let msg = r#"{"url":"/data/era5 2020/t2m#1 100%.nc"}"#;
        assert_eq!(
            urls(parse(msg)),
            ["file:///data/era5%202020/t2m%231%20100%25.nc"]
        );
        assert_eq!(
            urls(parse(r#"{"url":"/data/café.nc"}"#)),
            ["file:///data/caf%C3%A9.nc"]
        );
        assert_eq!(
            urls(parse(r#"{"url":"file:///data/a.nc"}"#)),
            ["file:///data/a.nc"]
        );
    }

    #[test]
    fn plain_request_problems_are_specific() {
        let cases = [
            (
                r#"{"url":"data/a.nc"}"#,
                "invalid request: url must be absolute",
            ),
            (
                r#"{"url":"./a.nc"}"#,
                "invalid request: url must be absolute",
            ),
            (r#"{"url":""}"#, "invalid request: url is empty"),
            (r#"{"url":"   "}"#, "invalid request: url is empty"),
            (r#"{"url":null}"#, "invalid request: url is missing"),
            (
                r#"{"url":5}"#,
                "invalid request: url must be a string, got a number",
            ),
            (
                r#"{"url":["s3://b/k"]}"#,
                "invalid request: url must be a string, got an array",
            ),
            (
                r#"{"url":"ftp://host/a.nc"}"#,
                "invalid request: unsupported URL scheme \"ftp\"",
            ),
            (
                r#"{"url":"1s3://b/k"}"#,
                "invalid request: url has an invalid scheme",
            ),
            (
                r#"{"url":"s3:///k.nc"}"#,
                "invalid request: url has no bucket or host",
            ),
            (
                r#"{"url":"file://data/a.nc"}"#,
                "invalid request: file URL must hold an absolute path",
            ),
            (
                r#"{"url":"s3://b/a\nb.nc"}"#,
                "invalid request: url contains control characters",
            ),
            (
                r#"{"url":"s3://b/k","collection":7}"#,
                "invalid request: collection must be a string, got a number",
            ),
            (
                r#"{"url":"s3://b/k","collection":""}"#,
                "invalid request: collection must not be empty",
            ),
            (
                r#"{"url":"s3://b/k","kind":{"x":1}}"#,
                "invalid request: kind must be a string, got an object",
            ),
        ];
        for (msg, want) in cases {
            let got = error(parse(msg));
            assert!(got.starts_with(want), "{msg}: {got}");
        }
    }

    #[test]
    fn encode_request_round_trips_and_keys_by_url() {
        let full = Request {
            url: "s3://b/dir/a%20b.nc".into(),
            collection: Some("c".into()),
            kind: Some("netcdf".into()),
            dataset_pid: None,
            retracted: None,
        };
        let bare = request("file:///data/x.nc".into());
        assert_eq!(
            String::from_utf8(encode_request(&bare)).unwrap(),
            r#"{"url":"file:///data/x.nc"}"#
        );
        for r in [full, bare] {
            assert_eq!(
                parse_message(Some(&encode_request(&r)), &[]),
                Ok(Parsed::Requests(vec![r.clone()]))
            );
            assert_eq!(request_key(&r), r.url);
        }
    }

    #[test]
    fn parsed_urls_are_stable_when_replayed() {
        // A request re-encoded from any shape parses back to itself (replay is idempotent).
        let payloads = [
            aws_event(&[aws_record("ObjectCreated:Put", "b", "a+b%25c%23.nc")]),
            MINIO_PUT.to_string(),
            EVENTBRIDGE_CREATED.to_string(),
            CE_GCS_FINALIZED.to_string(),
            r#"{"url":"/data/x y.nc"}"#.to_string(),
        ];
        for p in payloads {
            let Ok(Parsed::Requests(rs)) = parse(&p) else {
                panic!("{p}")
            };
            for r in rs {
                assert_eq!(
                    parse_message(Some(&encode_request(&r)), &[]),
                    Ok(Parsed::Requests(vec![r.clone()]))
                );
            }
        }
    }

    // --- Malformed input ---------------------------------------------------------------

    #[test]
    fn empty_and_non_json_messages() {
        assert_eq!(parse_message(None, &[]), Err(MessageError::Empty));
        assert_eq!(parse_message(Some(b""), &[]), Err(MessageError::Empty));
        assert_eq!(
            parse_message(Some(b" \r\n\t"), &[]),
            Err(MessageError::Empty)
        );
        assert_eq!(error(parse_message(None, &[])), "empty message");
        assert!(error(parse("hello")).starts_with("not JSON: "));
        assert!(error(parse(r#"{"url": "s3://b/k""#)).starts_with("not JSON: "));
        assert!(error(parse_message(Some(b"{\"url\":\"\xff\"}"), &[])).starts_with("not JSON: "));
        assert_eq!(
            error(parse("[1,2]")),
            "expected a JSON object, got an array"
        );
        assert_eq!(error(parse("42")), "expected a JSON object, got a number");
        assert_eq!(error(parse("null")), "expected a JSON object, got null");
        assert_eq!(
            error(parse(r#"{"hello":"world"}"#)),
            "unknown message shape: expected an S3 event notification, EventBridge event, CloudEvent or {\"url\": ...}"
        );
        // A byte-order mark and surrounding whitespace are tolerated.
        let with_bom = [b"\xEF\xBB\xBF\n".as_slice(), PLAIN.as_bytes(), b"\n"].concat();
        assert_eq!(urls(parse_message(Some(&with_bom), &[])).len(), 1);
    }

    #[test]
    fn oversized_payload_is_refused_before_parsing() {
        let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert_eq!(
            parse_message(Some(&big), &[]),
            Err(MessageError::TooLarge {
                size: MAX_PAYLOAD_BYTES + 1,
                limit: MAX_PAYLOAD_BYTES
            })
        );
        assert_eq!(
            error(parse_message(Some(&big), &[])),
            "payload larger than 1048576 bytes (1048577 bytes)"
        );
        // Exactly at the cap is still read.
        let mut at_cap = PLAIN.as_bytes().to_vec();
        at_cap.resize(MAX_PAYLOAD_BYTES, b' ');
        assert_eq!(urls(parse_message(Some(&at_cap), &[])).len(), 1);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert!(error(parse(&deep)).starts_with("not JSON: "));
        let deep_obj = format!("{}1{}", r#"{"a":"#.repeat(50_000), "}".repeat(50_000));
        assert!(error(parse(&deep_obj)).starts_with("not JSON: "));
    }

    #[test]
    fn long_inputs_are_cut_in_messages() {
        let long = format!(r#"{{"url":"{}"}}"#, "x".repeat(10_000));
        let msg = error(parse(&long));
        assert!(msg.len() < 300, "{msg}");
        let many = aws_event(
            &(0..50)
                .map(|i| aws_record(&format!("ObjectRemoved:Kind{i}"), "b", "k"))
                .collect::<Vec<_>>(),
        );
        let reason = ignored(parse(&many));
        assert!(reason.ends_with(", …)"), "{reason}");
    }

    /// Every prefix and many single-byte corruptions of every valid payload, in every
    /// header mode: no panic, whatever the outcome.
    #[test]
    fn no_panic_on_truncated_or_corrupted_payloads() {
        let mut payloads = vec![
            aws_event(&[
                aws_record("ObjectCreated:Put", "b", "dir/a+b%20c%2F%C3%A9.nc"),
                aws_record("ObjectRemoved:Delete", "b", "old.nc"),
            ]),
            MINIO_PUT.to_string(),
            TEST_EVENT.to_string(),
            EVENTBRIDGE_CREATED.to_string(),
            EVENTBRIDGE_DELETED.to_string(),
            CE_GCS_FINALIZED.to_string(),
            ce_with_data(
                "com.amazonaws.s3.notification",
                &aws_event(&[aws_record("ObjectCreated:Put", "b", "k")]),
            ),
            ce_with_data("x", PLAIN),
            format!(
                r#"{{"specversion":"1.0","type":"t","source":"/s","id":"1","data_base64":"{}"}}"#,
                base64::engine::general_purpose::STANDARD.encode(PLAIN)
            ),
            PLAIN.to_string(),
            r#"{"url":"/data/a b.nc"}"#.to_string(),
        ];
        payloads.push(payloads.concat());
        let header_sets = [
            Headers::new(),
            hdrs(&[("content-type", "application/cloudevents+json")]),
            hdrs(&[
                ("ce_specversion", "1.0"),
                ("ce_type", "google.cloud.storage.object.v1.finalized"),
                ("ce_source", "//storage.googleapis.com/projects/_/buckets/b"),
                ("ce_subject", "objects/k"),
            ]),
        ];
        let mut outcomes = 0usize;
        for p in &payloads {
            let bytes = p.as_bytes();
            for h in &header_sets {
                for end in 0..=bytes.len() {
                    let _ = parse_message(Some(&bytes[..end]), h);
                    outcomes += 1;
                }
            }
            let mut corrupted = bytes.to_vec();
            for i in 0..bytes.len() {
                for flip in [0x01u8, 0x20, 0x80, 0xff] {
                    corrupted[i] ^= flip;
                    let _ = parse_message(Some(&corrupted), &header_sets[0]);
                    corrupted[i] ^= flip;
                    outcomes += 1;
                }
            }
        }
        // Arbitrary bytes from a fixed-seed generator.
        const ALPHABET: &[u8] = b"{}[]\":,0aeu\\/ \xff%+sRrl";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..2000usize {
            let junk: Vec<u8> = (0..len % 97)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ALPHABET[(state % ALPHABET.len() as u64) as usize]
                })
                .collect();
            let _ = parse_message(Some(&junk), &header_sets[len % 3]);
            outcomes += 1;
        }
        assert!(outcomes > 50_000);
    }
}
