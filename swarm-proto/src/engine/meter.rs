//! Playback metering: startup time, stalls and stalled time, from the media
//! element's events. One definition for the browser and the simulator.
//!
//! Startup runs from the engine's first input (or the origin the driver
//! set with `Engine::count_startup_from`) to the first `Playing`. A
//! `Waiting` after startup is a stall, unless the player is seeking (waiting
//! for a position the viewer jumped to is seek latency, not a stall) or has
//! ended.

use super::MediaEvent;
use crate::Millis;

#[derive(Debug, Default)]
pub(crate) struct Meter {
    pub startup_ms: Option<u64>,
    pub stalls: u32,
    stalled_ms: u64,
    stall_since: Option<Millis>,
    seeking: bool,
    ended: bool,
}

impl Meter {
    pub fn on_media(&mut self, ev: MediaEvent, now: Millis, started_at: Millis) {
        match ev {
            MediaEvent::Playing => {
                self.startup_ms
                    .get_or_insert(now.saturating_sub(started_at));
                self.end_stall(now);
                self.seeking = false;
                self.ended = false;
            }
            MediaEvent::Waiting => {
                if self.startup_ms.is_some()
                    && self.stall_since.is_none()
                    && !self.seeking
                    && !self.ended
                {
                    self.stalls += 1;
                    self.stall_since = Some(now);
                }
            }
            MediaEvent::Ended => {
                self.ended = true;
                self.end_stall(now);
            }
        }
    }

    pub fn on_seek(&mut self, now: Millis) {
        self.seeking = true;
        self.ended = false;
        self.end_stall(now);
    }

    fn end_stall(&mut self, now: Millis) {
        if let Some(t) = self.stall_since.take() {
            self.stalled_ms += now.saturating_sub(t);
        }
    }

    /// Stalled time so far, a stall in progress included.
    pub fn stalled_ms(&self, now: Millis) -> u64 {
        self.stalled_ms + self.stall_since.map_or(0, |t| now.saturating_sub(t))
    }
}
