//! Budgets in this process: one mutex over a map of windows. Every operation is a handful of
//! integer additions under the lock, so one lock serves a node's request rate; idle windows are
//! swept out every few thousand operations so the map does not grow without bound.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use gramkey_domain::UnixTime;
use gramkey_domain::ratelimit::{Window, WindowSpec, fits};

use super::{Backend, BackendError, Check, Verdict};

/// How many operations between sweeps of idle windows.
const SWEEP_EVERY: u64 = 4096;

#[derive(Default)]
pub struct MemoryBackend {
    windows: Mutex<HashMap<String, (WindowSpec, Window)>>,
    ops: AtomicU64,
}

impl MemoryBackend {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (WindowSpec, Window)>> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn maybe_sweep(&self, map: &mut HashMap<String, (WindowSpec, Window)>, now: UnixTime) {
        if self.ops.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            map.retain(|_, (spec, w)| !w.is_idle(*spec, now));
        }
    }

    /// How many windows are held (for tests of the sweep).
    pub fn len(&self) -> usize {
        self.lock().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn check(&self, now: UnixTime, checks: &[Check]) -> Result<Verdict, BackendError> {
        let mut map = self.lock();
        self.maybe_sweep(&mut map, now);
        let mut used = Vec::with_capacity(checks.len());
        for (index, c) in checks.iter().enumerate() {
            let Some((_, w)) = map.get_mut(&c.key) else {
                if !fits(0, c.cost, c.limit) {
                    used.push(0);
                    return Ok(Verdict::Limited {
                        index,
                        retry_after: c.spec.window_secs,
                        used,
                    });
                }
                used.push(0);
                continue;
            };
            let u = w.used(c.spec, now);
            if !fits(u, c.cost, c.limit) {
                used.push(u);
                return Ok(Verdict::Limited {
                    index,
                    retry_after: w.retry_after(c.spec, c.cost, c.limit, now),
                    used,
                });
            }
            used.push(u);
        }
        for (c, u) in checks.iter().zip(used.iter_mut()) {
            if c.cost > 0 {
                let (_, w) = map
                    .entry(c.key.clone())
                    .or_insert_with(|| (c.spec, Window::default()));
                w.add(c.spec, now, c.cost);
                *u += c.cost;
            }
        }
        Ok(Verdict::Allowed { used })
    }

    async fn add(
        &self,
        now: UnixTime,
        key: &str,
        spec: WindowSpec,
        amount: u64,
    ) -> Result<(), BackendError> {
        let mut map = self.lock();
        self.maybe_sweep(&mut map, now);
        match map.get_mut(key) {
            Some((_, w)) => w.add(spec, now, amount),
            None => {
                let mut w = Window::default();
                w.add(spec, now, amount);
                map.insert(key.to_owned(), (spec, w));
            }
        }
        Ok(())
    }

    async fn refund(
        &self,
        now: UnixTime,
        key: &str,
        spec: WindowSpec,
        amount: u64,
    ) -> Result<(), BackendError> {
        if let Some((_, w)) = self.lock().get_mut(key) {
            w.take_back(spec, now, amount);
        }
        Ok(())
    }

    async fn reset(&self, key: &str) -> Result<(), BackendError> {
        self.lock().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_windows_are_swept() {
        let b = MemoryBackend::default();
        for i in 0..SWEEP_EVERY {
            b.add(1_000, &format!("k{i}"), WindowSpec::HOUR, 1)
                .await
                .unwrap();
        }
        assert!(b.len() > 4000);
        // An hour later every window is idle; the next sweep drops them.
        for _ in 0..SWEEP_EVERY {
            b.add(10_000, "live", WindowSpec::HOUR, 1).await.unwrap();
        }
        assert_eq!(b.len(), 1);
    }
}
