//! Budgets in this process: one mutex over a map of windows. Every operation is a handful of
//! integer additions under the lock, so one lock serves a node's request rate.
//!
//! Idle windows are swept out a few at a time: each operation looks at the next window in a
//! queue of all of them, and at one more for each window it created; it drops the idle ones
//! and requeues the rest. The queue is looked at at least as fast as it grows, so the map
//! cannot grow without bound, and no operation ever scans it whole (a flood of distinct keys
//! makes no request wait for a sweep).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use gramkey_domain::ratelimit::{BudgetKey, Window, WindowSpec, fits};
use gramkey_domain::{AppId, UnixTime};

use super::{Backend, BackendError, Check, Verdict};

struct Slot {
    spec: WindowSpec,
    window: Window,
    /// Which queue entry is this slot's: a key reset and created again is queued again, and
    /// its old entry must not keep it alive twice.
    generation: u64,
}

#[derive(Default)]
struct Windows {
    map: HashMap<BudgetKey, Slot, foldhash::fast::RandomState>,
    queue: VecDeque<(BudgetKey, u64)>,
    next_generation: u64,
}

impl Windows {
    /// Adds `amount` to `key`'s window at `now`, creating (and queueing) it if it is new; true
    /// when it was. A known key costs one lookup.
    fn charge(&mut self, key: &BudgetKey, spec: WindowSpec, now: UnixTime, amount: u64) -> bool {
        if let Some(slot) = self.map.get_mut(key) {
            slot.window.add(spec, now, amount);
            return false;
        }
        self.next_generation += 1;
        self.queue.push_back((key.clone(), self.next_generation));
        let mut window = Window::default();
        window.add(spec, now, amount);
        self.map.insert(
            key.clone(),
            Slot {
                spec,
                window,
                generation: self.next_generation,
            },
        );
        true
    }

    /// Looks at the next `n` queued windows (idle ones are judged at the real time `now`).
    fn sweep_some(&mut self, now: UnixTime, n: usize) {
        for _ in 0..n {
            let Some((key, generation)) = self.queue.pop_front() else {
                return;
            };
            let Some(slot) = self.map.get_mut(&key) else {
                continue;
            };
            if slot.generation != generation {
                continue;
            }
            if slot.window.is_idle(slot.spec, now) {
                self.map.remove(&key);
            } else {
                self.queue.push_back((key, generation));
            }
        }
    }
}

#[derive(Default)]
pub struct MemoryBackend {
    windows: Mutex<Windows>,
}

impl MemoryBackend {
    fn lock(&self, now: UnixTime) -> std::sync::MutexGuard<'_, Windows> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        w.sweep_some(now, 1);
        w
    }

    /// How many windows are held (for tests of the sweep).
    pub fn len(&self) -> usize {
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn check(&self, now: UnixTime, checks: &[Check]) -> Result<Verdict, BackendError> {
        let mut w = self.lock(now);
        let mut used = Vec::with_capacity(checks.len());
        for (index, c) in checks.iter().enumerate() {
            let at = now.saturating_add(c.offset);
            let mut slot = w.map.get_mut(&c.key);
            let u = slot.as_mut().map_or(0, |s| s.window.used(c.spec, at));
            used.push(u);
            if !fits(u, c.cost, c.limit) {
                let retry_after = match slot {
                    None => c.spec.window_secs,
                    Some(s) => s.window.retry_after(c.spec, c.cost, c.limit, at),
                };
                return Ok(Verdict::Limited {
                    index,
                    retry_after,
                    used,
                });
            }
        }
        let mut created = 0;
        for (c, u) in checks.iter().zip(used.iter_mut()) {
            if c.cost > 0 {
                let at = now.saturating_add(c.offset);
                created += usize::from(w.charge(&c.key, c.spec, at, c.cost));
                *u += c.cost;
            }
        }
        w.sweep_some(now, created);
        Ok(Verdict::Allowed { used })
    }

    async fn add(
        &self,
        now: UnixTime,
        key: &BudgetKey,
        spec: WindowSpec,
        amount: u64,
    ) -> Result<(), BackendError> {
        let mut w = self.lock(now);
        if w.charge(key, spec, now, amount) {
            w.sweep_some(now, 1);
        }
        Ok(())
    }

    async fn refund(
        &self,
        now: UnixTime,
        key: &BudgetKey,
        spec: WindowSpec,
        amount: u64,
    ) -> Result<(), BackendError> {
        if let Some(slot) = self.lock(now).map.get_mut(key) {
            slot.window.take_back(spec, now, amount);
        }
        Ok(())
    }

    async fn reset(&self, key: &BudgetKey) -> Result<(), BackendError> {
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .remove(key);
        Ok(())
    }

    async fn reset_app(&self, app: &AppId) -> Result<(), BackendError> {
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .retain(|k, _| !k.is_of(app));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gramkey_domain::ratelimit::Counted;

    fn queued(b: &MemoryBackend) -> usize {
        b.windows.lock().unwrap().queue.len()
    }

    #[tokio::test]
    async fn idle_windows_are_swept_a_few_at_a_time() {
        let b = MemoryBackend::default();
        for i in 0..1000 {
            b.add(1_000, &format!("k{i}").into(), WindowSpec::HOUR, 1)
                .await
                .unwrap();
        }
        assert_eq!(b.len(), 1000, "live windows stay");
        // An hour later every window is idle: each operation drops the next one in the queue.
        b.add(10_000, &"live".into(), WindowSpec::HOUR, 1)
            .await
            .unwrap();
        assert!(b.len() > 990);
        for _ in 0..1000 {
            b.add(10_000, &"live".into(), WindowSpec::HOUR, 1)
                .await
                .unwrap();
        }
        assert_eq!(b.len(), 1);
        assert_eq!(queued(&b), 1);
    }

    #[tokio::test]
    async fn a_flood_of_new_keys_sweeps_as_fast_as_it_grows() {
        let b = MemoryBackend::default();
        for i in 0..1000 {
            b.add(1_000, &format!("old{i}").into(), WindowSpec::HOUR, 1)
                .await
                .unwrap();
        }
        // An hour later, as many new keys, one operation each and nothing else: every old
        // window has been looked at, and dropped, by the time the flood ends.
        for i in 0..1000 {
            b.add(10_000, &format!("new{i}").into(), WindowSpec::HOUR, 1)
                .await
                .unwrap();
        }
        assert_eq!(b.len(), 1000);
        assert_eq!(queued(&b), 1000);
    }

    #[tokio::test]
    async fn a_key_reset_and_created_again_is_queued_once() {
        let b = MemoryBackend::default();
        for _ in 0..100 {
            b.add(1_000, &"k".into(), WindowSpec::HOUR, 1)
                .await
                .unwrap();
            b.reset(&"k".into()).await.unwrap();
        }
        b.add(1_000, &"k".into(), WindowSpec::HOUR, 1)
            .await
            .unwrap();
        for _ in 0..30 {
            b.add(1_000, &"other".into(), WindowSpec::HOUR, 1)
                .await
                .unwrap();
        }
        assert_eq!(
            queued(&b),
            2,
            "stale entries are dropped as the sweep meets them"
        );
    }

    #[tokio::test]
    async fn a_clock_ahead_keeps_its_own_windows_and_sweeps_in_real_time() {
        let b = MemoryBackend::default();
        let ahead = AppId::parse("42").unwrap();
        let check = |key: BudgetKey, offset: i64| Check {
            key,
            spec: WindowSpec::HOUR,
            limit: 2,
            cost: 1,
            offset,
        };
        b.add(1_000, &"real".into(), WindowSpec::HOUR, 1)
            .await
            .unwrap();
        // Calls two hours ahead, many of them: the real window is not judged idle by them.
        for _ in 0..50 {
            b.check(
                1_000,
                &[check(BudgetKey::app(&ahead, Counted::Calls), 7_200)],
            )
            .await
            .unwrap();
        }
        assert!(matches!(
            b.check(1_000, &[check("real".into(), 0)]).await.unwrap(),
            Verdict::Allowed { used } if used == vec![2]
        ));
        // The window ahead is full at its own time, and rolls over an hour later (its time).
        assert!(matches!(
            b.check(
                1_000,
                &[check(BudgetKey::app(&ahead, Counted::Calls), 7_200)]
            )
            .await
            .unwrap(),
            Verdict::Limited { .. }
        ));
        assert!(matches!(
            b.check(
                1_000,
                &[check(BudgetKey::app(&ahead, Counted::Calls), 10_800)]
            )
            .await
            .unwrap(),
            Verdict::Allowed { .. }
        ));
        b.reset_app(&ahead).await.unwrap();
        assert_eq!(b.len(), 1);
    }
}
