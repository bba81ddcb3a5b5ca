//! Ports for the real components the tests start (swtpm, mosquitto). They are taken below the
//! kernel's ephemeral range (32768 and up by default): a port from `bind(0)` is in that range, and
//! between the check and the component's own bind, any outgoing connection on the machine may take
//! it as its local port — with many tests connecting over loopback at once, that happened.
//! Components that still fail to bind are retried on other ports by their starters.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener;

/// A port `p` such that `p..p + n` are all free now, in 20000..32000.
pub(crate) fn free_ports(n: u16) -> u16 {
    let random = RandomState::new();
    for i in 0u32..500 {
        let p = 20_000 + u16::try_from(random.hash_one(i) % u64::from(12_000 - n)).unwrap();
        if (p..p + n).all(|q| TcpListener::bind(("127.0.0.1", q)).is_ok()) {
            return p;
        }
    }
    panic!("no {n} free consecutive ports in 20000..32000");
}
