//! Health-check state of one backend: healthy after `healthy_threshold` consecutive successes,
//! unhealthy after `unhealthy_threshold` consecutive failures. New backends start unhealthy and
//! are checked at once.

/// One backend's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Health {
    pub healthy: bool,
    successes: u32,
    failures: u32,
}

impl Health {
    /// Records a check result; returns true when the state flipped.
    pub fn observe(&mut self, ok: bool, healthy_threshold: u32, unhealthy_threshold: u32) -> bool {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if !self.healthy && self.successes >= healthy_threshold.max(1) {
                self.healthy = true;
                return true;
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.healthy && self.failures >= unhealthy_threshold.max(1) {
                self.healthy = false;
                return true;
            }
        }
        false
    }

    /// Forced down (the backend's zone is in outage); thresholds start over.
    pub fn force_down(&mut self) -> bool {
        let was = self.healthy;
        *self = Health::default();
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let mut h = Health::default();
        assert!(!h.healthy);
        assert!(!h.observe(true, 2, 3));
        assert!(h.observe(true, 2, 3), "second success turns healthy");
        assert!(h.healthy);
        assert!(!h.observe(false, 2, 3));
        assert!(!h.observe(false, 2, 3));
        assert!(!h.observe(true, 2, 3), "a success resets the failure count");
        assert!(!h.observe(false, 2, 3));
        assert!(!h.observe(false, 2, 3));
        assert!(
            h.observe(false, 2, 3),
            "third consecutive failure turns unhealthy"
        );
        assert!(!h.healthy);
        assert!(!h.observe(true, 2, 3));
        assert!(h.observe(true, 2, 3));
        assert!(h.force_down());
        assert!(!h.healthy);
        assert!(!h.force_down());
    }

    #[test]
    fn threshold_one_flips_at_once() {
        let mut h = Health::default();
        assert!(h.observe(true, 1, 1));
        assert!(h.observe(false, 1, 1));
    }
}
