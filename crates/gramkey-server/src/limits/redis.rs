//! Budgets in Redis, shared by every node that points at the same Redis.
//!
//! Each budget is a hash: field = bucket number, value = amount, expiring a bucket after its
//! window. A check of all of a request's budgets is one Lua script, which Redis runs
//! atomically: two nodes can never both take the last call of a budget. The bucket arithmetic
//! is the domain's ([`gramkey_domain::ratelimit`]); on a refusal the script returns the refusing
//! budget's buckets and the wait is computed here, by the same function as in memory.
//!
//! One Redis (or a primary with replicas) is assumed, not Redis Cluster: a request's keys
//! would hash to different slots.

use async_trait::async_trait;
use gramkey_domain::ratelimit::{BudgetKey, WindowSpec, retry_after};
use gramkey_domain::{AppId, UnixTime};
use redis::aio::ConnectionManager;

use super::{BACKEND_TIMEOUT, Backend, BackendError, Check, Verdict};

/// What the scripts share. A budget's hash holds its buckets (field: the bucket's number,
/// value: the amount) and two fields of its own: `-1`, the sum of the buckets, and `-2`, a
/// bucket number no bucket in the hash is below. While `-2` is still in the window, no bucket
/// has left it and `-1` is the budget's use: a check reads two fields, not the hour's sixty
/// buckets (which cost four times the throughput of `GET /me` once an app had been busy for an
/// hour; BENCHMARKS.md). When the window has moved past `-2`, the buckets are counted again and
/// those that left are dropped: a budget's first call of a minute.
///
/// The fields are numbers below every bucket's so that a node running the earlier scripts
/// (during a rolling upgrade) reads them as buckets that left the window and deletes them,
/// rather than failing on them; the next call here then counts again.
const SHARED: &str = r"
local function live(key, oldest)
  local kept = redis.call('HMGET', key, '-1', '-2')
  if kept[1] and kept[2] and tonumber(kept[2]) >= oldest then
    return tonumber(kept[1])
  end
  local flat = redis.call('HGETALL', key)
  local sum, low = 0, nil
  for j = 1, #flat, 2 do
    local b = tonumber(flat[j])
    if b >= 0 then
      if b < oldest then
        redis.call('HDEL', key, flat[j])
      else
        sum = sum + tonumber(flat[j + 1])
        if low == nil or b < low then low = b end
      end
    end
  end
  if low == nil then
    redis.call('HDEL', key, '-1', '-2')
  else
    redis.call('HSET', key, '-1', sum, '-2', low)
  end
  return sum
end
-- After live(key): adds amount to the bucket of time now.
local function charge(key, now, bsecs, nb, amount)
  local bucket = math.floor(now / bsecs)
  local field = tostring(bucket)
  local fresh = redis.call('EXISTS', key) == 0
  redis.call('HINCRBY', key, field, amount)
  if fresh then
    redis.call('HSET', key, '-1', amount, '-2', field)
  else
    redis.call('HINCRBY', key, '-1', amount)
    local low = tonumber(redis.call('HGET', key, '-2'))
    if low == nil or bucket < low then
      redis.call('HSET', key, '-2', field)
    end
  end
  redis.call('EXPIRE', key, bsecs * (nb + 1))
end
";

/// KEYS: the budgets. ARGV[1]: now; then per budget: bucket seconds, buckets, limit, cost, and
/// the seconds its window's time is ahead of `now` (an app's test clock).
/// Returns `{1, used...}` when every budget had room and was charged, or
/// `{0, index, used..., bucket, amount, bucket, amount...}`: what the budgets up to the refusing
/// one hold (`index + 1` numbers), then the refusing budget's live buckets.
const CHECK: &str = r"
local used = {}
for i = 1, #KEYS do
  local a = 1 + (i - 1) * 5
  local bsecs, nb = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local limit, cost = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local now = tonumber(ARGV[1]) + tonumber(ARGV[a + 5])
  used[i] = live(KEYS[i], math.floor(now / bsecs) - nb + 1)
  if used[i] + math.max(cost, 1) > limit then
    local out = {0, i - 1}
    for k = 1, i do out[#out + 1] = used[k] end
    local flat = redis.call('HGETALL', KEYS[i])
    for j = 1, #flat, 2 do
      local b = tonumber(flat[j])
      if b >= 0 then
        out[#out + 1] = b
        out[#out + 1] = tonumber(flat[j + 1])
      end
    end
    return out
  end
end
local out = {1}
for i = 1, #KEYS do
  local a = 1 + (i - 1) * 5
  local bsecs, nb, cost = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 4])
  local now = tonumber(ARGV[1]) + tonumber(ARGV[a + 5])
  if cost > 0 then
    charge(KEYS[i], now, bsecs, nb, cost)
  end
  out[#out + 1] = used[i] + cost
end
return out
";

/// KEYS[1]: the budget. ARGV: now, bucket seconds, buckets, amount.
const ADD: &str = r"
local now, bsecs, nb = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
live(KEYS[1], math.floor(now / bsecs) - nb + 1)
charge(KEYS[1], now, bsecs, nb, tonumber(ARGV[4]))
return 1
";

/// KEYS[1]: the budget. ARGV: now, bucket seconds, buckets, amount. Takes back from the newest
/// live buckets first, each as far as it holds (an attempt charged in one minute may be taken
/// back in the next), never from a bucket that has left the window, and from the sum what they
/// gave: as the in-memory window's `take_back` does.
const REFUND: &str = r"
local amount = tonumber(ARGV[4])
local oldest = math.floor(tonumber(ARGV[1]) / tonumber(ARGV[2])) - tonumber(ARGV[3]) + 1
local flat = redis.call('HGETALL', KEYS[1])
local live = {}
for j = 1, #flat, 2 do
  local b = tonumber(flat[j])
  if b >= oldest then live[#live + 1] = {b, flat[j], tonumber(flat[j + 1])} end
end
table.sort(live, function(x, y) return x[1] > y[1] end)
local taken = 0
for _, bucket in ipairs(live) do
  if amount == 0 then break end
  local t = math.min(amount, bucket[3])
  if t == bucket[3] then
    redis.call('HDEL', KEYS[1], bucket[2])
  elseif t > 0 then
    redis.call('HINCRBY', KEYS[1], bucket[2], -t)
  end
  amount, taken = amount - t, taken + t
end
if taken > 0 and redis.call('HEXISTS', KEYS[1], '-1') == 1 then
  redis.call('HINCRBY', KEYS[1], '-1', -taken)
end
return 1
";

pub struct RedisBackend {
    conn: ConnectionManager,
    check: redis::Script,
    add: redis::Script,
    refund: redis::Script,
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

impl RedisBackend {
    /// Connects to `url` (`redis://host:port/db`). Fails if Redis cannot be reached now; later
    /// outages are reconnected from, and meanwhile the limiter's `OnFailure` applies.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        let client = redis::Client::open(url).map_err(|e| {
            BackendError(format!(
                "not a Redis URL (redis://[:password@]host:port[/db]): {e}"
            ))
        })?;
        let within_5s = |what: &str| BackendError(format!("{what}: no answer within 5 s"));
        // One plain connection first, so a refusal or a bad database number says so.
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| within_5s("connecting"))?
        .map_err(err)?;
        let conn = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            ConnectionManager::new(client),
        )
        .await
        .map_err(|_| within_5s("connecting"))?
        .map_err(err)?;
        Ok(Self {
            conn,
            check: redis::Script::new(&format!("{SHARED}{CHECK}")),
            add: redis::Script::new(&format!("{SHARED}{ADD}")),
            refund: redis::Script::new(REFUND),
        })
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, BackendError> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(BACKEND_TIMEOUT, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| BackendError("Redis did not answer in time".into()))?
            .map_err(err)
    }
}

#[async_trait]
impl Backend for RedisBackend {
    async fn check(&self, now: UnixTime, checks: &[Check]) -> Result<Verdict, BackendError> {
        let mut inv = self.check.prepare_invoke();
        inv.arg(now);
        for c in checks {
            inv.key(c.key.to_string())
                .arg(c.spec.bucket_secs())
                .arg(c.spec.buckets)
                .arg(c.limit.to_string())
                .arg(c.cost)
                .arg(c.offset);
        }
        let out: Vec<i64> = self.run(inv).await?;
        let to_u64 = |n: &i64| u64::try_from(*n).unwrap_or(0);
        match out.split_first() {
            Some((1, used)) if used.len() == checks.len() => Ok(Verdict::Allowed {
                used: used.iter().map(to_u64).collect(),
            }),
            Some((0, [index, rest @ ..]))
                if usize::try_from(*index).is_ok_and(|i| i < checks.len() && i < rest.len()) =>
            {
                let index = usize::try_from(*index).unwrap_or(0);
                let (used, live) = rest.split_at(index + 1);
                let c = &checks[index];
                let mut buckets: Vec<(i64, u64)> = live
                    .chunks_exact(2)
                    .map(|p| (p[0], to_u64(&p[1])))
                    .collect();
                buckets.sort_unstable();
                Ok(Verdict::Limited {
                    index,
                    retry_after: retry_after(
                        c.spec,
                        &buckets,
                        c.cost,
                        c.limit,
                        now.saturating_add(c.offset),
                    ),
                    used: used.iter().map(to_u64).collect(),
                })
            }
            _ => Err(BackendError(format!(
                "unexpected answer from the script: {out:?}"
            ))),
        }
    }

    async fn add(
        &self,
        now: UnixTime,
        key: &BudgetKey,
        spec: WindowSpec,
        amount: u64,
    ) -> Result<(), BackendError> {
        let mut inv = self.add.prepare_invoke();
        inv.key(key.to_string())
            .arg(now)
            .arg(spec.bucket_secs())
            .arg(spec.buckets)
            .arg(amount);
        self.run::<i64>(inv).await.map(|_| ())
    }

    async fn refund(
        &self,
        now: UnixTime,
        key: &BudgetKey,
        spec: WindowSpec,
        amount: u64,
    ) -> Result<(), BackendError> {
        let mut inv = self.refund.prepare_invoke();
        inv.key(key.to_string())
            .arg(now)
            .arg(spec.bucket_secs())
            .arg(spec.buckets)
            .arg(amount);
        self.run::<i64>(inv).await.map(|_| ())
    }

    async fn reset(&self, key: &BudgetKey) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(
            BACKEND_TIMEOUT,
            redis::cmd("DEL")
                .arg(key.to_string())
                .query_async::<i64>(&mut conn),
        )
        .await
        .map_err(|_| BackendError("Redis did not answer in time".into()))?
        .map(|_| ())
        .map_err(err)
    }

    async fn reset_app(&self, app: &AppId) -> Result<(), BackendError> {
        // An app's prefix is digits and colons: nothing in it is a glob character.
        let pattern = format!("{}*", BudgetKey::app_prefix(app));
        let mut conn = self.conn.clone();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = tokio::time::timeout(
                BACKEND_TIMEOUT,
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn),
            )
            .await
            .map_err(|_| BackendError("Redis did not answer in time".into()))?
            .map_err(err)?;
            if !keys.is_empty() {
                tokio::time::timeout(
                    BACKEND_TIMEOUT,
                    redis::cmd("DEL").arg(&keys).query_async::<i64>(&mut conn),
                )
                .await
                .map_err(|_| BackendError("Redis did not answer in time".into()))?
                .map_err(err)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn ping(&self) -> Result<&'static str, BackendError> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(
            BACKEND_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .map_err(|_| BackendError("Redis did not answer in time".into()))?
        .map(|_| "redis")
        .map_err(err)
    }
}
