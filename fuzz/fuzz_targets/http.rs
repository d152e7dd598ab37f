//! Feeds arbitrary bytes to the API's HTTP/1.1 head parsers (request and response), whole and in
//! every prefix a slow client could send.
//!
//! Run with `make fuzz FUZZ_TARGETS=http` (docs/architecture.md, "Fuzzing").
#![no_main]

use keel_net::http::{parse_request, parse_response, MAX_HEAD, MAX_HEADERS, MAX_TARGET};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((req, len))) = parse_request(data) {
        assert!(len <= data.len() && len <= MAX_HEAD);
        assert!(req.headers.len() <= MAX_HEADERS);
        assert!(req.path.len() <= MAX_TARGET);
        // A complete head stays complete (and the same) with more bytes behind it.
        let mut more = data.to_vec();
        more.extend_from_slice(b"trailing");
        assert_eq!(parse_request(&more).ok().flatten(), Some((req, len)));
    }
    if let Ok(Some((resp, len))) = parse_response(data) {
        assert!(len <= data.len() && len <= MAX_HEAD);
        assert!(resp.headers.len() <= MAX_HEADERS);
    }
    // Prefixes, as a slow client sends them: never a panic.
    for cut in [1, data.len() / 2, data.len().saturating_sub(1)] {
        let _ = parse_request(data.get(..cut).unwrap_or_default());
    }
});
