//! Queue-facing pieces of zarrstac: what arrives on the ingest topic and what is put on it.

pub mod events;
pub mod kafka;
pub mod offsets;

pub use events::{
    MAX_PAYLOAD_BYTES, MessageError, Parsed, Request, encode_request, parse_message, request_key,
};
pub use offsets::OffsetTracker;
