//! The payment PIN's lockout: five wrong PINs in a row lock the card's PIN, for longer each
//! time it happens again (15 minutes, then 30, 60, … at most a day). While locked, every
//! attempt is refused, the right PIN too — otherwise a guesser would simply keep going. A right
//! PIN outside a lock clears the count. Counted per card, whichever path took the PIN (the
//! phone's forward-scan confirmation, a reverse-scan confirmation on the phone).

use chrono::{DateTime, Duration, Utc};

/// Wrong PINs in a row that lock it.
pub const MAX_WRONG: i32 = 5;
/// The first lock; each further lock doubles it, up to `LONGEST_LOCK_MINUTES`.
pub const FIRST_LOCK_MINUTES: i64 = 15;
pub const LONGEST_LOCK_MINUTES: i64 = 24 * 60;

/// What the card remembers about PIN attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PinState {
    /// Wrong PINs since the last right one or the last lock.
    pub failures: i32,
    /// Locks so far (decides how long the next one lasts); cleared by a right PIN.
    pub locks: i32,
    pub locked_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinAttempt {
    Accepted,
    /// Wrong; `tries_left` more before the PIN locks (0: it just locked, until `locked_until`).
    Wrong {
        tries_left: i32,
        locked_until: Option<DateTime<Utc>>,
    },
    /// Refused without looking at the PIN: locked until then.
    Locked {
        until: DateTime<Utc>,
    },
}

fn lock_length(locks: i32) -> Duration {
    let doublings = (locks - 1).clamp(0, 16) as u32;
    Duration::minutes((FIRST_LOCK_MINUTES << doublings).min(LONGEST_LOCK_MINUTES))
}

/// One attempt at `now`, `correct` or not: the verdict and the card's state afterwards.
pub fn attempt(state: PinState, correct: bool, now: DateTime<Utc>) -> (PinAttempt, PinState) {
    if let Some(until) = state.locked_until.filter(|u| *u > now) {
        return (PinAttempt::Locked { until }, state);
    }
    if correct {
        return (PinAttempt::Accepted, PinState::default());
    }
    let failures = state.failures + 1;
    if failures < MAX_WRONG {
        let next = PinState {
            failures,
            locked_until: None,
            ..state
        };
        let verdict = PinAttempt::Wrong {
            tries_left: MAX_WRONG - failures,
            locked_until: None,
        };
        return (verdict, next);
    }
    let locks = state.locks + 1;
    let until = now + lock_length(locks);
    let next = PinState {
        failures: 0,
        locks,
        locked_until: Some(until),
    };
    let verdict = PinAttempt::Wrong {
        tries_left: 0,
        locked_until: Some(until),
    };
    (verdict, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_wrong_lock_and_the_sixth_is_refused_even_when_right() {
        let now = Utc::now();
        let mut s = PinState::default();
        for left in (0..MAX_WRONG).rev() {
            let (v, next) = attempt(s, false, now);
            s = next;
            match v {
                PinAttempt::Wrong { tries_left, .. } => assert_eq!(tries_left, left),
                other => panic!("expected wrong, got {other:?}"),
            }
        }
        let until = now + Duration::minutes(FIRST_LOCK_MINUTES);
        assert_eq!(s.locked_until, Some(until));
        assert_eq!(attempt(s, true, now).0, PinAttempt::Locked { until });
        // After the lock, the right PIN is accepted and the slate is clean.
        let later = until + Duration::seconds(1);
        assert_eq!(
            attempt(s, true, later),
            (PinAttempt::Accepted, PinState::default())
        );
    }

    #[test]
    fn each_further_lock_lasts_twice_as_long_up_to_a_day() {
        let mut now = Utc::now();
        let mut s = PinState::default();
        let mut lengths = Vec::new();
        for _ in 0..9 {
            for _ in 0..MAX_WRONG {
                s = attempt(s, false, now).1;
            }
            let until = s.locked_until.unwrap();
            lengths.push((until - now).num_minutes());
            now = until + Duration::seconds(1);
        }
        assert_eq!(lengths, [15, 30, 60, 120, 240, 480, 960, 1440, 1440]);
    }
}
