//! A proxy in front of a registry that injects faults into its answers:
//! dropped connections, truncated bodies, 500s, 429s and flipped bytes, from
//! a seeded random source so a failure can be replayed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::util::http::{forward, HttpResponse, Reply, Server};

/// Probabilities, per response, of each fault.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Close the connection without an answer.
    pub drop: f64,
    /// Send only half of the body.
    pub truncate: f64,
    pub error_500: f64,
    /// 429 with `Retry-After: 0`.
    pub error_429: f64,
    /// Flip one byte of a non-empty body.
    pub flip: f64,
}

#[derive(Debug, Default)]
pub struct FaultCounts {
    pub requests: AtomicU64,
    pub dropped: AtomicU64,
    pub truncated: AtomicU64,
    pub errors: AtomicU64,
    pub flipped: AtomicU64,
}

/// A deterministic random source shared by a server's threads.
pub struct Rng(Mutex<u64>);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(Mutex::new(seed | 1))
    }

    pub fn next(&self) -> u64 {
        let mut state = self.0.lock().unwrap();
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    pub fn unit(&self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Forwards to an upstream registry and injects faults into responses.
pub struct FaultProxy {
    pub server: Server,
    pub counts: Arc<FaultCounts>,
}

impl FaultProxy {
    pub fn start(upstream: u16, faults: Faults, seed: u64) -> FaultProxy {
        let counts = Arc::new(FaultCounts::default());
        let rng = Rng::new(seed);
        let server = {
            let counts = counts.clone();
            Server::start(move |request| {
                counts.requests.fetch_add(1, Ordering::SeqCst);
                let roll = rng.unit();
                let mut threshold = faults.drop;
                if roll < threshold {
                    counts.dropped.fetch_add(1, Ordering::SeqCst);
                    return Reply::Drop;
                }
                threshold += faults.error_500;
                if roll < threshold {
                    counts.errors.fetch_add(1, Ordering::SeqCst);
                    return Reply::Send(HttpResponse::new(500).body("injected"));
                }
                threshold += faults.error_429;
                if roll < threshold {
                    counts.errors.fetch_add(1, Ordering::SeqCst);
                    return Reply::Send(HttpResponse::new(429).header("Retry-After", "0"));
                }
                let Ok(mut response) = forward(upstream, &request) else { return Reply::Drop };
                threshold += faults.truncate;
                if roll < threshold && response.body.len() > 1 {
                    counts.truncated.fetch_add(1, Ordering::SeqCst);
                    let half = response.body.len() / 2;
                    return Reply::Truncate(response, half);
                }
                threshold += faults.flip;
                if roll < threshold && !response.body.is_empty() {
                    counts.flipped.fetch_add(1, Ordering::SeqCst);
                    let at = (rng.next() as usize) % response.body.len();
                    response.body[at] ^= 0x20;
                }
                Reply::Send(response)
            })
        };
        FaultProxy { server, counts }
    }
}
