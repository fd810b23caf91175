//! Fuzzes the egress proxy's request-head handling: the bytes go to a real
//! proxy connection (hyper's parser plus the proxy's dispatch, routing, host
//! and path checks) over an in-memory stream; nothing can reach a network.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bottle_egress::fuzzing::parsers(data);
    let _ = bottle_egress::fuzzing::request_head(data);
});
