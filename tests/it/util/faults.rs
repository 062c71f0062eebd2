//! A proxy in front of a registry (and its token server) that injects
//! faults: dropped connections, truncated bodies, 500s, 429s, flipped bytes
//! and stalls in its answers, flipped or cut request bodies on their way
//! up, from a seeded random source so a failure can be replayed.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::http::{forward, HttpResponse, Reply, Server};

/// Probabilities, per request, of each fault (at most one per request).
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
    /// Send half of the body, pause `stall_for`, then send the rest.
    pub stall: f64,
    pub stall_for: Duration,
    /// Flip one byte of a request's body (an upload, a manifest) before
    /// it reaches the registry.
    pub body_flip: f64,
    /// Forward only the first half of a request's body.
    pub body_truncate: f64,
}

impl Faults {
    /// No faults at all.
    pub const NONE: Faults = Faults {
        drop: 0.0,
        truncate: 0.0,
        error_500: 0.0,
        error_429: 0.0,
        flip: 0.0,
        stall: 0.0,
        stall_for: Duration::ZERO,
        body_flip: 0.0,
        body_truncate: 0.0,
    };

    /// `rate` of the requests get a fault, spread over every kind (request
    /// body faults apply to requests that have a body), stalls of
    /// `stall_for`.
    pub fn spread(rate: f64, stall_for: Duration) -> Faults {
        let share = rate / 8.0;
        Faults {
            drop: share,
            truncate: share,
            error_500: share,
            error_429: share,
            flip: share,
            stall: share,
            stall_for,
            body_flip: share,
            body_truncate: share,
        }
    }
}

/// The fault a request drew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Drop,
    Error500,
    Error429,
    BodyFlip,
    BodyTruncate,
    Truncate,
    Flip,
    Stall,
}

impl Faults {
    /// The fault whose band of `0.0..1.0` holds `roll`.
    fn pick(&self, roll: f64) -> Fault {
        let bands = [
            (self.drop, Fault::Drop),
            (self.error_500, Fault::Error500),
            (self.error_429, Fault::Error429),
            (self.body_flip, Fault::BodyFlip),
            (self.body_truncate, Fault::BodyTruncate),
            (self.truncate, Fault::Truncate),
            (self.flip, Fault::Flip),
            (self.stall, Fault::Stall),
        ];
        let mut threshold = 0.0;
        for (probability, fault) in bands {
            threshold += probability;
            if roll < threshold {
                return fault;
            }
        }
        Fault::None
    }
}

#[derive(Debug, Default)]
pub struct FaultCounts {
    pub requests: AtomicU64,
    pub dropped: AtomicU64,
    pub truncated: AtomicU64,
    pub errors: AtomicU64,
    pub flipped: AtomicU64,
    pub stalled: AtomicU64,
    /// Request bodies flipped or cut.
    pub bodies: AtomicU64,
    /// Requests to the token server (`/token`), faulty or not.
    pub token_requests: AtomicU64,
}

impl FaultCounts {
    /// One line: how many requests and faults of each kind.
    pub fn summary(&self) -> String {
        let seen = |counter: &AtomicU64| counter.load(Ordering::SeqCst);
        format!(
            "{} requests ({} to the token server): {} dropped, {} truncated, {} 500/429, {} flipped, {} stalled, {} request bodies damaged",
            seen(&self.requests),
            seen(&self.token_requests),
            seen(&self.dropped),
            seen(&self.truncated),
            seen(&self.errors),
            seen(&self.flipped),
            seen(&self.stalled),
            seen(&self.bodies)
        )
    }

    /// Faults injected, all kinds.
    pub fn faults(&self) -> u64 {
        [&self.dropped, &self.truncated, &self.errors, &self.flipped, &self.stalled, &self.bodies]
            .iter()
            .map(|counter| counter.load(Ordering::SeqCst))
            .sum()
    }
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

    /// A number in `0..bound`.
    pub fn below(&self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// Forwards to an upstream registry and injects faults. A Bearer challenge
/// whose realm is the upstream itself (a token server in front of the
/// registry) is rewritten to point at the proxy, so token requests go
/// through the faults too.
pub struct FaultProxy {
    pub server: Server,
    pub counts: Arc<FaultCounts>,
}

impl FaultProxy {
    pub fn start(upstream: u16, faults: Faults, seed: u64) -> FaultProxy {
        let counts = Arc::new(FaultCounts::default());
        let rng = Rng::new(seed);
        let own_port = Arc::new(AtomicU16::new(0));
        let server = {
            let counts = counts.clone();
            let own_port = own_port.clone();
            Server::start(move |mut request| {
                counts.requests.fetch_add(1, Ordering::SeqCst);
                if request.path() == "/token" {
                    counts.token_requests.fetch_add(1, Ordering::SeqCst);
                }
                let fault = faults.pick(rng.unit());
                match fault {
                    Fault::Drop => {
                        counts.dropped.fetch_add(1, Ordering::SeqCst);
                        return Reply::Drop;
                    }
                    Fault::Error500 => {
                        counts.errors.fetch_add(1, Ordering::SeqCst);
                        return Reply::Send(HttpResponse::new(500).body("injected"));
                    }
                    Fault::Error429 => {
                        counts.errors.fetch_add(1, Ordering::SeqCst);
                        return Reply::Send(HttpResponse::new(429).header("Retry-After", "0"));
                    }
                    // A request without a body to damage is lost instead.
                    Fault::BodyFlip | Fault::BodyTruncate if request.body.len() < 2 => {
                        counts.dropped.fetch_add(1, Ordering::SeqCst);
                        return Reply::Drop;
                    }
                    Fault::BodyFlip => {
                        counts.bodies.fetch_add(1, Ordering::SeqCst);
                        let at = rng.below(request.body.len() as u64) as usize;
                        request.body[at] ^= 0x20;
                    }
                    Fault::BodyTruncate => {
                        counts.bodies.fetch_add(1, Ordering::SeqCst);
                        let half = request.body.len() / 2;
                        request.body.truncate(half);
                    }
                    _ => {}
                }
                let Ok(mut response) = forward(upstream, &request) else { return Reply::Drop };
                point_realm_here(&mut response, upstream, own_port.load(Ordering::SeqCst));
                match fault {
                    // An answer without a body to damage: it is lost, or
                    // held back before it is sent.
                    Fault::Truncate | Fault::Flip if response.body.len() < 2 => {
                        counts.dropped.fetch_add(1, Ordering::SeqCst);
                        Reply::Drop
                    }
                    Fault::Stall if response.body.is_empty() => {
                        counts.stalled.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(faults.stall_for);
                        Reply::Send(response)
                    }
                    Fault::Truncate => {
                        counts.truncated.fetch_add(1, Ordering::SeqCst);
                        let half = response.body.len() / 2;
                        Reply::Truncate(response, half)
                    }
                    Fault::Flip => {
                        counts.flipped.fetch_add(1, Ordering::SeqCst);
                        let at = rng.below(response.body.len() as u64) as usize;
                        response.body[at] ^= 0x20;
                        Reply::Send(response)
                    }
                    Fault::Stall => {
                        counts.stalled.fetch_add(1, Ordering::SeqCst);
                        let half = response.body.len() / 2;
                        Reply::Stall(response, half, faults.stall_for)
                    }
                    _ => Reply::Send(response),
                }
            })
        };
        own_port.store(server.port, Ordering::SeqCst);
        FaultProxy { server, counts }
    }
}

/// `realm="http://127.0.0.1:<upstream>/..."` → the proxy's own port.
fn point_realm_here(response: &mut HttpResponse, upstream: u16, own: u16) {
    let upstream = format!("127.0.0.1:{upstream}/");
    for (name, value) in &mut response.headers {
        if name.eq_ignore_ascii_case("www-authenticate") && value.contains(&upstream) {
            *value = value.replace(&upstream, &format!("127.0.0.1:{own}/"));
        }
    }
}
