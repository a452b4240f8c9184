//! The simulated network: capacity-limited pipes (a node's uplink and
//! downlink), latency by network group, and the pairs NAT keeps apart.
//!
//! Invariants: a [`Pipe`] of capacity C carries at most C bytes per second
//! over any interval (messages go through it one after another, in the order
//! they were offered); a message's arrival is never before its last byte left
//! the sender's uplink plus the path latency; whether a pair can connect is a
//! pure function of the run's seed and the pair.

/// Simulated time, microseconds.
pub type Micros = u64;

/// A FIFO pipe of fixed capacity (a node's uplink or downlink).
#[derive(Clone, Debug)]
pub struct Pipe {
    /// Bytes per second.
    pub rate: u64,
    /// When the last byte offered so far is through.
    pub free_at: Micros,
}

impl Pipe {
    pub fn new(bytes_per_s: u64) -> Pipe {
        Pipe {
            rate: bytes_per_s.max(1),
            free_at: 0,
        }
    }

    /// How long `bytes` take through it, rounded up.
    pub fn duration(&self, bytes: u64) -> Micros {
        (bytes * 1_000_000).div_ceil(self.rate)
    }

    /// Offers `bytes` no earlier than `at`; returns (first byte in, last
    /// byte through).
    pub fn take(&mut self, at: Micros, bytes: u64) -> (Micros, Micros) {
        let start = self.free_at.max(at);
        self.free_at = start + self.duration(bytes);
        (start, self.free_at)
    }

    /// Bytes still queued at `now`.
    pub fn backlog(&self, now: Micros) -> u64 {
        self.free_at.saturating_sub(now) * self.rate / 1_000_000
    }
}

/// Sends `bytes` from an uplink through a path of `latency` into a
/// downlink, both pipelined: returns when the last byte arrives.
pub fn transfer(
    up: &mut Pipe,
    down: Option<&mut Pipe>,
    at: Micros,
    latency: Micros,
    bytes: u64,
) -> Micros {
    let (start, sent) = up.take(at, bytes);
    match down {
        Some(down) => {
            let (_, through) = down.take(start + latency, bytes);
            through.max(sent + latency)
        }
        None => sent + latency,
    }
}

/// Sends a small control message: it goes ahead of queued payload (each
/// peer is its own congestion-controlled flow, and data channels interleave
/// messages), so it takes only its own transmission time; the payload
/// queued behind it waits that long more, so the pipe still carries C.
pub fn transfer_control(
    up: &mut Pipe,
    down: Option<&mut Pipe>,
    at: Micros,
    latency: Micros,
    bytes: u64,
) -> Micros {
    let d = up.duration(bytes);
    up.free_at = up.free_at.max(at) + d;
    let mut arrive = at + d + latency;
    if let Some(down) = down {
        let dd = down.duration(bytes);
        down.free_at = down.free_at.max(at + latency) + dd;
        arrive = arrive.max(at + latency + dd);
    }
    arrive
}

/// SplitMix64: a well-mixed 64-bit hash of one word.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash in 0..1 of (seed, a, b), the same for (b, a).
pub fn pair_unit(seed: u64, a: u64, b: u64) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let h = mix(mix(seed ^ lo.wrapping_mul(0x1000_0000_01B3)) ^ hi);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Clone, Debug)]
pub struct Paths {
    pub seed: u64,
    pub same_group_us: Micros,
    pub cross_group_us: Micros,
    pub cross_spread_us: Micros,
    pub nat_fail: f64,
}

impl Paths {
    /// One-way latency between two groups.
    pub fn latency(&self, ga: u16, gb: u16) -> Micros {
        if ga == gb {
            return self.same_group_us;
        }
        let h = pair_unit(self.seed ^ 0x006c_6174_656e_6379, ga as u64, gb as u64);
        self.cross_group_us + (h * self.cross_spread_us as f64) as u64
    }

    /// Whether viewers `a` and `b` (ids unique over the run) can open a
    /// connection. Seeds have public addresses and always can.
    pub fn can_connect(&self, a: u64, b: u64) -> bool {
        pair_unit(self.seed, a, b) >= self.nat_fail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_at_capacity_c_carries_at_most_c() {
        let c = 56_250; // 450 kbit/s
        let mut p = Pipe::new(c);
        let mut done = Vec::new();
        // Far more than it can carry, offered at once and in bursts.
        for i in 0..500u64 {
            let bytes = 100 + (mix(i) % 16_000);
            let at = (i / 50) * 100_000;
            let (_, end) = p.take(at, bytes);
            done.push((end, bytes));
        }
        // Over every window [0, t], bytes through <= C * t (+ rounding).
        for &(t, _) in &done {
            let through: u64 = done.iter().filter(|d| d.0 <= t).map(|d| d.1).sum();
            assert!(
                through as f64 <= c as f64 * t as f64 / 1e6 + 1.0,
                "{through} bytes by {t} us through a pipe of {c} B/s"
            );
        }
        // And it is busy all along: the total takes exactly total / C.
        let total: u64 = done.iter().map(|d| d.1).sum();
        let last = done.last().unwrap().0;
        assert!(last as f64 >= total as f64 * 1e6 / c as f64);
        assert!((last as f64) < total as f64 * 1e6 / c as f64 + 1000.0);
    }

    #[test]
    fn a_transfer_waits_for_the_slower_of_uplink_and_downlink() {
        let mut up = Pipe::new(1_000_000);
        let mut down = Pipe::new(100_000);
        let t = transfer(&mut up, Some(&mut down), 0, 5_000, 100_000);
        assert_eq!(t, 5_000 + 1_000_000);
        let mut up = Pipe::new(100_000);
        let mut down = Pipe::new(1_000_000);
        let t = transfer(&mut up, Some(&mut down), 0, 5_000, 100_000);
        assert_eq!(t, 1_000_000 + 5_000);
    }

    #[test]
    fn nat_decision_is_symmetric_and_near_its_share() {
        let p = Paths {
            seed: 9,
            same_group_us: 0,
            cross_group_us: 0,
            cross_spread_us: 0,
            nat_fail: 0.2,
        };
        let mut failed = 0;
        for a in 0..200u64 {
            for b in 0..a {
                assert_eq!(p.can_connect(a, b), p.can_connect(b, a));
                failed += !p.can_connect(a, b) as u32;
            }
        }
        let share = failed as f64 / (200.0 * 199.0 / 2.0);
        assert!((0.18..0.22).contains(&share), "{share}");
    }
}
