//! Any bytes found in Redis: decoding never panics, never allocates past
//! the value bound, and whatever decodes re-encodes to the same entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratacache::Codec;

const MAX_VALUE: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let plain = Codec::new(usize::MAX, 3, MAX_VALUE, None);
    let signed = Codec::new(64, 3, MAX_VALUE, Some(b"fuzz key"));
    for codec in [&plain, &signed] {
        if let Ok(entry) = codec.decode(data) {
            assert!(entry.payload.len() <= MAX_VALUE, "decompression bound");
            let again = codec
                .decode(&codec.encode(&entry))
                .expect("an entry it decoded re-encodes decodably");
            assert_eq!(again.meta, entry.meta);
            assert_eq!(again.payload, entry.payload);
        }
    }
});
