//! Any bytes offered on `spoke/{gw}/up/evt` and any topic string: reading the routing fields and
//! feeding them to the hub's inbox never panics.
#![no_main]

use dosegate_core::fleet::{GatewayId, Inbox, Topic, wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(topic) = std::str::from_utf8(data) {
        let _ = Topic::parse(topic);
    }
    let gw = GatewayId::new("spoke-01").expect("valid id");
    if let Ok(header) = wire::entry_header(data, &gw) {
        let mut inbox = Inbox::new();
        let _ = inbox.receive(&gw, &header);
        let _ = inbox.receive(&gw, &header);
    }
});
