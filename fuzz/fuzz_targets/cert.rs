//! The `[signing]` certificate (`sign::key::parse_certificate`): an X.509 certificate's DER,
//! read for its issuer, serial number, subject common name and RSA public key.
#![no_main]

use keel_builder::sign::der::Reader;
use keel_builder::sign::key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = key::parse_certificate(data) {
        // What was read out of the certificate is inside it, and is itself one DER value.
        assert!(data.starts_with(&cert.der));
        for part in [&cert.issuer, &cert.serial] {
            assert!(cert.der.windows(part.len()).any(|w| w == part.as_slice()));
            let mut r = Reader::new(part);
            assert_eq!(r.any().map(|v| v.raw.len()), Ok(part.len()));
        }
    }
});
