//! A per-worker limit on session log lines.

use log::info;

/// Allows a burst of log lines per second and reports how many it held back.
#[derive(Default)]
pub struct LogLimit {
    window_ms: u64,
    lines: u32,
    suppressed: u64,
}

const LOG_LINES_PER_SECOND: u32 = 10;

impl LogLimit {
    pub fn allow(&mut self, now_ms: u64) -> bool {
        if now_ms >= self.window_ms + 1000 {
            if self.suppressed > 0 {
                info!("session-router: {} session log lines suppressed in the last second", self.suppressed);
            }
            *self = LogLimit { window_ms: now_ms, lines: 0, suppressed: 0 };
        }
        if self.lines < LOG_LINES_PER_SECOND {
            self.lines += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_second_then_silence() {
        let mut limit = LogLimit::default();
        let allowed = (0..1000).filter(|i| limit.allow(5_000 + i % 1000)).count();
        assert_eq!(allowed, LOG_LINES_PER_SECOND as usize);
        assert_eq!(limit.suppressed, 1000 - u64::from(LOG_LINES_PER_SECOND));
        assert!(limit.allow(6_000), "a new second, a new burst");
        assert_eq!(limit.suppressed, 0);
    }
}
