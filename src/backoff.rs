//! How long to wait before a restart. Pure: no clock, the RNG is lent.

use std::time::Duration;

use rand::Rng;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Growth {
    Fixed,
    Linear,
    Exponential,
}

/// The delay before a restart, as a function of the failure streak.
///
/// The *n*-th consecutive failed start (counting from 0) waits
///
/// 1. `initial` (fixed), `initial * (n + 1)` (linear) or `initial * 2^n`
///    (exponential), capped at [`max`](Backoff::max);
/// 2. then multiplied by a uniform factor in `[1 - jitter, 1 + jitter]`;
/// 3. then raised to [`floor`](Backoff::floor).
///
/// An exit of a process that had reached `Running` resets the streak; with
/// [`immediate_after_running`](Backoff::immediate_after_running) it is
/// restarted at once instead of waiting the first step.
///
/// | reference system | expressed as |
/// |---|---|
/// | gunicorn companion `restart_delay=5` | `Backoff::fixed(5s)` |
/// | Twisted procmon `min=2 max=10 threshold=10` | `Backoff::exponential(2s).max(10s).jitter(0.0).immediate_after_running(true)`, start grace 10 s |
/// | lifecycle `base=2 max=60 jitter=0.25`, floor 1 s | `Backoff::exponential(2s).max(60s).jitter(0.25).floor(1s)` |
/// | supervisord (1 s, 2 s, 3 s, ...; RUNNING restarts at once) | `Backoff::linear(1s).immediate_after_running(true)` |
/// | Erlang/OTP (restart at once) | `Backoff::none()` |
///
/// ```
/// use std::time::Duration;
/// use procsup::Backoff;
/// let b = Backoff::exponential(Duration::from_secs(1)).max(Duration::from_secs(30));
/// assert_eq!(b.get_max(), Duration::from_secs(30));
/// assert_eq!(b.get_jitter(), 0.25);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    growth: Growth,
    initial: Duration,
    max: Duration,
    jitter: f64,
    floor: Duration,
    immediate_after_running: bool,
}

/// The default cap of growing backoffs.
const DEFAULT_MAX: Duration = Duration::from_secs(60);
/// The default jitter of exponential backoff: ±25 %, against thundering herds.
const DEFAULT_JITTER: f64 = 0.25;

impl Backoff {
    fn new(growth: Growth, initial: Duration, max: Duration, jitter: f64) -> Self {
        Backoff { growth, initial, max, jitter, floor: Duration::ZERO, immediate_after_running: false }
    }

    /// Restart at once, every time.
    ///
    /// ```
    /// assert_eq!(procsup::Backoff::none(), procsup::Backoff::fixed(std::time::Duration::ZERO));
    /// ```
    pub fn none() -> Self {
        Self::fixed(Duration::ZERO)
    }

    /// The same delay after every failure (gunicorn's companion manager,
    /// systemd's `RestartSec=`).
    pub fn fixed(delay: Duration) -> Self {
        Self::new(Growth::Fixed, delay, delay, 0.0)
    }

    /// `step`, `2 * step`, `3 * step`, ... capped at 60 s (or at `step`, if
    /// longer) unless [`max`](Backoff::max) says otherwise (supervisord's
    /// BACKOFF).
    pub fn linear(step: Duration) -> Self {
        Self::new(Growth::Linear, step, DEFAULT_MAX.max(step), 0.0)
    }

    /// `initial * 2^n`, capped at 60 s (or at `initial`, if longer), with
    /// ±25 % jitter unless [`max`](Backoff::max) and
    /// [`jitter`](Backoff::jitter) say otherwise.
    pub fn exponential(initial: Duration) -> Self {
        Self::new(Growth::Exponential, initial, DEFAULT_MAX.max(initial), DEFAULT_JITTER)
    }

    /// The cap before jitter, no shorter than the first delay
    /// (`add_process` refuses a cap below it). Ignored by
    /// [`fixed`](Backoff::fixed).
    ///
    /// ```
    /// use procsup::{Backoff, Error, ProcessSpec, Supervisor};
    /// use std::time::Duration;
    /// let mut sup = Supervisor::new();
    /// let b = Backoff::exponential(Duration::from_secs(5)).max(Duration::from_secs(1));
    /// let err = sup.add_process(ProcessSpec::new("a", "true").backoff(b)).unwrap_err();
    /// assert!(matches!(err, Error::InvalidSpec { .. }), "{err}");
    /// ```
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Jitter factor in `[0, 1]`: the capped delay is multiplied by a uniform
    /// factor in `[1 - jitter, 1 + jitter]`. Validated by `add_process`.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// The least delay after jitter (the lifecycle coordinator's 1 s).
    pub fn floor(mut self, floor: Duration) -> Self {
        self.floor = floor;
        self
    }

    /// Restart at once when a process that had reached `Running` exits
    /// (Twisted's threshold rule, supervisord's autorestart). Off by default:
    /// such an exit then waits the first step of the backoff.
    pub fn immediate_after_running(mut self, yes: bool) -> Self {
        self.immediate_after_running = yes;
        self
    }

    /// The first step.
    pub fn get_initial(&self) -> Duration {
        self.initial
    }

    /// The cap before jitter.
    pub fn get_max(&self) -> Duration {
        self.max
    }

    /// The jitter factor.
    pub fn get_jitter(&self) -> f64 {
        self.jitter
    }

    /// The least delay after jitter.
    pub fn get_floor(&self) -> Duration {
        self.floor
    }

    /// Whether an exit after `Running` restarts at once.
    pub fn get_immediate_after_running(&self) -> bool {
        self.immediate_after_running
    }

    /// Why this backoff cannot be used, if it cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        if !self.jitter.is_finite() || !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!("backoff jitter must be in [0, 1], got {}", self.jitter));
        }
        for (what, d) in [("initial", self.initial), ("max", self.max), ("floor", self.floor)] {
            crate::spec::check_duration(what, d)?;
        }
        if self.growth != Growth::Fixed && self.max < self.initial {
            return Err(format!(
                "backoff max {:?} is shorter than its first delay {:?}: the cap would be the only delay",
                self.max, self.initial
            ));
        }
        Ok(())
    }

    /// The delay before restart after an exit. `streak` counts the failed
    /// starts before this one; `after_running` says the child had reached
    /// `Running`.
    pub(crate) fn delay(&self, streak: u32, after_running: bool, rng: &mut impl Rng) -> Duration {
        if after_running && self.immediate_after_running {
            return Duration::ZERO;
        }
        let base = self.base(streak);
        let jittered = if self.jitter > 0.0 {
            // `check` keeps jitter in [0, 1], so the factor is in [0, 2] and
            // `mul_f64` cannot panic on a negative or overflowing result.
            base.mul_f64(1.0 + rng.random_range(-self.jitter..=self.jitter))
        } else {
            base
        };
        jittered.max(self.floor)
    }

    /// Whether [`delay`](Backoff::delay) is zero for this streak, whatever
    /// the jitter draws: a zero base stays zero, and no floor raises it.
    pub(crate) fn is_zero(&self, streak: u32, after_running: bool) -> bool {
        (after_running && self.immediate_after_running) || (self.base(streak).is_zero() && self.floor.is_zero())
    }

    /// The capped delay of the `streak`-th failure, before jitter and floor.
    fn base(&self, streak: u32) -> Duration {
        match self.growth {
            Growth::Fixed => self.initial,
            Growth::Linear => self.initial.saturating_mul(streak.saturating_add(1)).min(self.max),
            Growth::Exponential => 1u32
                .checked_shl(streak)
                .and_then(|factor| self.initial.checked_mul(factor))
                .unwrap_or(self.max)
                .min(self.max),
        }
    }
}

impl Default for Backoff {
    /// Exponential from 100 ms to 60 s with ±25 % jitter.
    fn default() -> Self {
        Self::exponential(Duration::from_millis(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn exponential_doubles_then_caps() {
        let b = Backoff::exponential(secs(1.0)).jitter(0.0).max(secs(10.0));
        let mut rng = StdRng::seed_from_u64(0);
        let got: Vec<f64> = (0..6).map(|n| b.delay(n, false, &mut rng).as_secs_f64()).collect();
        assert_eq!(got, [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]);
        // A huge streak neither overflows nor panics.
        assert_eq!(b.delay(u32::MAX, false, &mut rng), secs(10.0));
    }

    #[test]
    fn linear_grows_by_step() {
        let b = Backoff::linear(secs(1.0)).max(secs(3.0));
        let mut rng = StdRng::seed_from_u64(0);
        let got: Vec<f64> = (0..5).map(|n| b.delay(n, false, &mut rng).as_secs_f64()).collect();
        assert_eq!(got, [1.0, 2.0, 3.0, 3.0, 3.0]);
        assert_eq!(b.delay(u32::MAX, false, &mut rng), secs(3.0));
    }

    #[test]
    fn fixed_ignores_streak_and_max() {
        let b = Backoff::fixed(secs(5.0)).max(secs(1.0));
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(b.delay(0, false, &mut rng), secs(5.0));
        assert_eq!(b.delay(7, true, &mut rng), secs(5.0));
    }

    #[test]
    fn immediate_after_running_only_after_running() {
        let b = Backoff::exponential(secs(2.0)).immediate_after_running(true);
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(b.delay(3, true, &mut rng), Duration::ZERO);
        assert!(b.delay(0, false, &mut rng) > Duration::ZERO);
    }

    #[test]
    fn jitter_stays_in_band_and_floor_holds() {
        let b = Backoff::exponential(secs(0.5)).jitter(1.0).floor(secs(1.0));
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..1000 {
            let d = b.delay(0, false, &mut rng);
            assert!(d >= secs(1.0) && d <= secs(1.0), "{d:?}");
        }
        let b = Backoff::exponential(secs(10.0)).jitter(0.25);
        for _ in 0..1000 {
            let d = b.delay(0, false, &mut rng).as_secs_f64();
            assert!((7.5..=12.5).contains(&d), "{d}");
        }
    }

    #[test]
    fn check_rejects_a_cap_below_the_first_delay() {
        assert!(Backoff::exponential(secs(5.0)).max(secs(1.0)).check().is_err());
        assert!(Backoff::linear(secs(5.0)).max(secs(1.0)).check().is_err());
        assert!(Backoff::exponential(secs(5.0)).max(secs(5.0)).check().is_ok());
        // Without a cap of its own, a long first delay is its own cap.
        assert!(Backoff::exponential(secs(120.0)).check().is_ok());
        assert!(Backoff::linear(secs(120.0)).check().is_ok());
    }

    #[test]
    fn check_rejects_bad_jitter() {
        for j in [f64::NAN, -0.1, 1.5, f64::INFINITY] {
            assert!(Backoff::exponential(secs(1.0)).jitter(j).check().is_err(), "{j}");
        }
        assert!(Backoff::exponential(secs(1.0)).jitter(1.0).check().is_ok());
    }
    #[test]
    fn is_zero_says_what_delay_draws() {
        let mut rng = StdRng::seed_from_u64(5);
        let zero = Duration::ZERO;
        let cases = [
            Backoff::none(),
            Backoff::fixed(secs(1.0)),
            Backoff::exponential(zero).jitter(0.5),
            // 2^32 overflows: the cap, not 0 * 2^n.
            Backoff::exponential(zero).max(secs(60.0)),
            Backoff::linear(zero).floor(secs(0.5)),
            Backoff::exponential(secs(0.1)).immediate_after_running(true),
            Backoff::default(),
        ];
        for b in &cases {
            for streak in [0, 1, 31, 32, 40, u32::MAX] {
                for after_running in [false, true] {
                    let zero_drawn = (0..50).all(|_| b.delay(streak, after_running, &mut rng).is_zero());
                    assert_eq!(b.is_zero(streak, after_running), zero_drawn, "{b:?} streak {streak} {after_running}");
                }
            }
        }
        assert!(!Backoff::exponential(zero).max(secs(60.0)).is_zero(32, false));
        assert!(Backoff::exponential(zero).max(secs(60.0)).is_zero(31, false));
    }
}
