//! The DLP decoders and encoders on arbitrary bytes: no panic, output never
//! longer than the input for decoders, and every encoder round-trips through
//! its decoder.

#![no_main]

use bottle_dlp::{
    base32_encode, base64_decode, base64_encode, hex_decode, hex_encode, percent_decode,
    percent_encode,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert!(base64_decode(data).len() <= data.len());
    assert!(hex_decode(data).len() <= data.len());
    assert!(percent_decode(data).len() <= data.len());
    for url in [false, true] {
        for pad in [false, true] {
            assert_eq!(base64_decode(&base64_encode(data, url, pad)), data);
        }
    }
    assert_eq!(hex_decode(&hex_encode(data, false)), data);
    assert_eq!(hex_decode(&hex_encode(data, true)), data);
    assert_eq!(percent_decode(&percent_encode(data)), data);
    assert_eq!(base32_encode(data).len(), (data.len() * 8).div_ceil(5));
});
