#![no_main]
//! Queue payloads: S3/MinIO notifications, EventBridge, CloudEvents, plain requests; the
//! first bytes also become a CloudEvents binary-mode header.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = zarrstac_queue::events::parse_message(Some(data), &[]);
    let split = data
        .len()
        .min(usize::from(data.first().copied().unwrap_or(0)));
    let (header, payload) = data.split_at(split);
    let _ = zarrstac_queue::events::parse_message(
        Some(payload),
        &[
            ("ce_type", header),
            ("ce_specversion", b"1.0"),
            ("ce_source", b"/f"),
        ],
    );
});
