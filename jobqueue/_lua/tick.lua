-- A worker's periodic step: heartbeat, promotion of due jobs, repair of jobs whose worker died.
-- KEYS[1] queue zset   KEYS[2] active hash   KEYS[3] FIFO sequence   KEYS[4] paused flag
-- KEYS[5] workers zset   KEYS[6] completed zset   KEYS[7] failed zset
-- ARGV[1] queue key prefix   ARGV[2] K   ARGV[3] now (ms)   ARGV[4] worker id   ARGV[5] lease (ms)
-- ARGV[6] default priority   ARGV[7] most jobs promoted per tick   ARGV[8] worker info JSON
-- Returns {paused (0/1), promoted, repaired, ms until the next delayed job is due (-1: none)}
local base, K, now, wid, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local default_p = tonumber(ARGV[6])

redis.call('SET', base .. 'worker:' .. wid, ARGV[8], 'PX', lease)
redis.call('ZADD', KEYS[5], now, wid)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - 10 * lease)

-- Due delayed and retried jobs move into the ready band at their priority, behind the jobs
-- already waiting at that priority (FIFO by a per-queue sequence).
local promoted = 0
local due = redis.call('ZRANGEBYSCORE', KEYS[1], now - K / 2, now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[7]))
for i = 1, #due, 2 do
  local id = due[i]
  if redis.call('EXISTS', 'arq:in-progress:' .. id) == 0 then
    local p = math.floor((tonumber(due[i + 1]) % 1) * 16 + 0.5)
    if p < 1 or p > 10 then
      p = default_p
    end
    redis.call('ZADD', KEYS[1], 'XX', ready_score(KEYS[3], p, K), id)
    promoted = promoted + 1
  end
end

-- An active job whose worker's heartbeat expired goes back to waiting at once (arq would only
-- retry it when its in-progress key times out). A rerun recorded meanwhile replaces its payload.
local repaired = 0
local active = redis.call('HGETALL', KEYS[2])
for i = 1, #active, 2 do
  local id, owner = active[i], string.match(active[i + 1], '^([^|]*)')
  if owner ~= wid and redis.call('EXISTS', base .. 'worker:' .. owner) == 0 then
    redis.call('HDEL', KEYS[2], id)
    redis.call('DEL', 'arq:in-progress:' .. id)
    place_rerun(KEYS[1], KEYS[3], KEYS[6], KEYS[7], base, id, now, K)
    repaired = repaired + 1
  end
end

local next_due = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local wait = -1
if #next_due > 0 then
  wait = math.floor(tonumber(next_due[2]) - now)
end
return {redis.call('EXISTS', KEYS[4]), promoted, repaired, wait}
