//! Any bytes published on the bus channel: decoding never panics, and a
//! message it accepts re-encodes to one that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratacache::bus::BusMessage;

fuzz_target!(|data: &[u8]| {
    if let Some(msg) = BusMessage::decode(data) {
        assert_eq!(BusMessage::decode(&msg.encode()), Some(msg));
    }
});
