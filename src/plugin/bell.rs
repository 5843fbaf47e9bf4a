//! The delivery thread's bell: how the hot path wakes the delivery thread when,
//! and only when, that thread is parked with nothing to do.
//!
//! One 32-bit word, `AWAKE` or `PARKED`:
//! - the delivery thread, with nothing to do, stores `PARKED`, looks once more
//!   for work (the channel), and if there is none waits on the word with
//!   FUTEX_WAIT until it is rung or its next periodic duty falls due;
//! - a sender, after putting a command on the channel, loads the word: `AWAKE`
//!   (the delivery thread is running, or will look at the channel before it
//!   parks) costs nothing more; `PARKED` is the idle-to-busy transition: the
//!   sender that swaps it back to `AWAKE` issues the one FUTEX_WAKE. No lock,
//!   no other system call.
//!
//! No lost wake-up: both sides put a sequentially consistent fence between
//! their store (the command; `PARKED`) and their load (the word; the channel),
//! so at least one of them sees the other's store: either the sender sees
//! `PARKED` and wakes the thread, or the thread sees the command and does not
//! park. FUTEX_WAIT itself returns at once if the word is no longer `PARKED`.
//!
//! The logic is generic over [`Futex`] so that unit tests can count the waits
//! and wakes; [`SysFutex`] is the system call.

use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::{Duration, Instant};

const AWAKE: u32 = 0;
const PARKED: u32 = 1;

/// The two futex operations the bell needs.
pub trait Futex {
    /// Sleeps while `*word == expected`, at most `timeout` (`None`: no limit).
    /// May return early (a wake, a signal, spuriously).
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>);
    /// Wakes one thread waiting on `word`.
    fn wake_one(&self, word: &AtomicU32);
}

/// Linux futex(2), process-private.
#[derive(Default)]
pub struct SysFutex;

impl Futex for SysFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // Errors (EAGAIN: the word changed; EINTR; ETIMEDOUT) all mean "look again".
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                ts_ptr,
            );
        }
    }

    fn wake_one(&self, word: &AtomicU32) {
        unsafe {
            libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
        }
    }
}

/// Why `park` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parked {
    /// There was work when the thread looked one last time: it did not sleep.
    NotNeeded,
    /// A sender rang.
    Rung,
    /// The deadline (the next periodic duty) came.
    Due,
}

pub struct Bell<F: Futex = SysFutex> {
    word: AtomicU32,
    futex: F,
}

impl Default for Bell<SysFutex> {
    fn default() -> Self {
        Bell::with(SysFutex)
    }
}

impl<F: Futex> Bell<F> {
    pub fn with(futex: F) -> Self {
        Bell { word: AtomicU32::new(AWAKE), futex }
    }

    /// Sender's side, after the command is on the channel: one load; a wake
    /// only when the delivery thread is parked (one sender wins the swap).
    #[inline]
    pub fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.word.load(Ordering::Relaxed) == PARKED && self.word.swap(AWAKE, Ordering::AcqRel) == PARKED {
            self.futex.wake_one(&self.word);
        }
    }

    /// Delivery thread's side, with nothing to do: parks until rung or until
    /// `deadline` (`None`: until rung). `has_work` is asked once after the
    /// thread has declared itself parked; true means it does not sleep.
    pub fn park(&self, deadline: Option<Instant>, has_work: impl FnOnce() -> bool) -> Parked {
        self.word.store(PARKED, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if has_work() {
            self.word.store(AWAKE, Ordering::Relaxed);
            return Parked::NotNeeded;
        }
        let outcome = loop {
            if self.word.load(Ordering::Acquire) == AWAKE {
                break Parked::Rung;
            }
            let timeout = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break Parked::Due;
                    }
                    Some(left)
                }
                None => None,
            };
            self.futex.wait(&self.word, PARKED, timeout);
        };
        // A sender may have swapped it already (Rung); otherwise nobody will
        // wake a thread that is running.
        self.word.store(AWAKE, Ordering::Relaxed);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, AtomicUsize};
    use std::sync::{Arc, Mutex};

    /// Counts the calls; `wait` returns at once (as after a timeout), or runs
    /// `during_wait` first (a sender ringing while the thread sleeps).
    #[derive(Default)]
    struct Counting {
        waits: AtomicUsize,
        wakes: AtomicUsize,
        during_wait: Mutex<Option<Box<dyn FnMut(&AtomicU32) + Send>>>,
    }

    impl Futex for Arc<Counting> {
        fn wait(&self, word: &AtomicU32, expected: u32, _timeout: Option<Duration>) {
            assert_eq!(word.load(Ordering::SeqCst), expected, "waits only while the word says parked");
            self.waits.fetch_add(1, Ordering::SeqCst);
            match self.during_wait.lock().unwrap().as_mut() {
                Some(f) => f(word),
                // Nothing would ever wake this sleep: fail rather than hang.
                None => panic!("the thread went to sleep with nothing to wake it"),
            }
        }
        fn wake_one(&self, _word: &AtomicU32) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Counting>, Bell<Arc<Counting>>) {
        let c = Arc::new(Counting::default());
        (c.clone(), Bell::with(c))
    }

    #[test]
    fn ringing_a_running_thread_makes_no_system_call() {
        let (c, bell) = counting();
        for _ in 0..1000 {
            bell.ring();
        }
        assert_eq!(c.wakes.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn work_seen_after_declaring_parked_means_no_sleep_and_no_wake() {
        let (c, bell) = counting();
        assert_eq!(bell.park(None, || true), Parked::NotNeeded);
        assert_eq!(c.waits.load(Ordering::SeqCst), 0);
        // Back to awake: a ring now costs nothing.
        bell.ring();
        assert_eq!(c.wakes.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_parked_thread_past_its_deadline_returns_due_and_is_awake_again() {
        let (c, bell) = counting();
        let past = Instant::now() - Duration::from_millis(1);
        assert_eq!(bell.park(Some(past), || false), Parked::Due);
        assert_eq!(c.waits.load(Ordering::SeqCst), 0, "no sleep past the deadline");
        bell.ring();
        assert_eq!(c.wakes.load(Ordering::SeqCst), 0, "awake after park returned");
    }

    #[test]
    fn one_wake_for_many_rings_while_parked() {
        let (c, bell) = counting();
        let bell = Arc::new(bell);
        let ringer = bell.clone();
        // While the thread sleeps, three senders ring: one wake only.
        *c.during_wait.lock().unwrap() = Some(Box::new(move |_| {
            ringer.ring();
            ringer.ring();
            ringer.ring();
        }));
        assert_eq!(bell.park(None, || false), Parked::Rung);
        assert_eq!(c.waits.load(Ordering::SeqCst), 1);
        assert_eq!(c.wakes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_spurious_return_sleeps_again_until_rung_or_due() {
        let (c, bell) = counting();
        let bell = Arc::new(bell);
        let ringer = bell.clone();
        let mut calls = 0;
        // Two spurious returns, then a ring.
        *c.during_wait.lock().unwrap() = Some(Box::new(move |_| {
            calls += 1;
            if calls == 3 {
                ringer.ring();
            }
        }));
        assert_eq!(bell.park(Some(Instant::now() + Duration::from_secs(3600)), || false), Parked::Rung);
        assert_eq!(c.waits.load(Ordering::SeqCst), 3);
    }

    /// The real futex: several threads push items in rounds, and each round
    /// must be received in full before the next starts, by a consumer that
    /// parks (with no deadline) whenever the channel looks empty. A lost
    /// wake-up leaves the consumer asleep with the round's last items waiting,
    /// and nothing later rescues it: the round's deadline fails the test.
    #[test]
    fn no_lost_wake_up_with_the_real_futex() {
        const THREADS: u64 = 4;
        const EACH: u64 = 3;
        const ROUNDS: u64 = 3000;
        let bell = Arc::new(Bell::default());
        let got = Arc::new(AtomicU64::new(0));
        let (tx, rx) = crossbeam_channel::unbounded::<u64>();
        let (consumer_bell, consumer_got) = (bell.clone(), got.clone());
        let parks = Arc::new(AtomicU64::new(0));
        let consumer_parks = parks.clone();
        // Detached: with a lost wake-up it sleeps for ever, and the test fails.
        std::thread::spawn(move || loop {
            while rx.try_recv().is_ok() {
                consumer_got.fetch_add(1, Ordering::SeqCst);
            }
            if consumer_bell.park(None, || !rx.is_empty()) == Parked::Rung {
                consumer_parks.fetch_add(1, Ordering::Relaxed);
            }
        });
        // The senders live for the whole test (no thread created per round:
        // other tests in this process map and unmap pages and must not find
        // new thread stacks there). Each round starts at a barrier.
        let start = Arc::new(std::sync::Barrier::new(THREADS as usize + 1));
        let senders: Vec<_> = (0..THREADS)
            .map(|_| {
                let (tx, bell, start) = (tx.clone(), bell.clone(), start.clone());
                std::thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        start.wait();
                        for i in 0..EACH {
                            tx.send(i).unwrap();
                            bell.ring();
                        }
                    }
                })
            })
            .collect();
        for round in 1..=ROUNDS {
            start.wait();
            let want = round * THREADS * EACH;
            let deadline = Instant::now() + Duration::from_secs(30);
            while got.load(Ordering::SeqCst) < want {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: the consumer sleeps with {} item(s) waiting: a lost wake-up",
                    want - got.load(Ordering::SeqCst)
                );
                std::thread::yield_now();
            }
        }
        for s in senders {
            s.join().unwrap();
        }
        // Not a check of the logic, a check that the test exercised parking.
        assert!(parks.load(Ordering::Relaxed) > 0, "the consumer never parked: the test proved nothing");
    }
}
