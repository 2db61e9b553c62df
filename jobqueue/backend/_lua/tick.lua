-- A worker's periodic step: heartbeat (when it passes one), renewal of its own runs' leases (when it
-- passes them), and return of runs whose lease expired (their worker died, hung, or lost its
-- outcome). An idle worker's tick passes neither and, with no lease expired, writes nothing.
-- KEYS[1] queue zset   KEYS[2] active hash   KEYS[3] FIFO sequence   KEYS[4] workers zset
-- KEYS[5] completed zset   KEYS[6] failed zset
-- ARGV[1] queue key prefix   ARGV[2] worker id   ARGV[3] lease (ms)   ARGV[4] default priority
-- ARGV[5] most runs returned per tick   ARGV[6] worker info JSON, or '' (no heartbeat this tick)
-- then pairs of job id, run token: the runs this worker owns now, when their leases are to be renewed
-- Returns {returned, now}
local base, wid, lease = ARGV[1], ARGV[2], tonumber(ARGV[3])
local default_p, K = tonumber(ARGV[4]), PRIORITY_BAND
local now = redis_now()

if ARGV[6] ~= '' then
  redis.call('SET', base .. 'worker:' .. wid, ARGV[6], 'PX', lease)
  redis.call('ZADD', KEYS[4], now, wid)
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - 10 * lease)
end

-- Renew only what this worker still owns: a run returned meanwhile belongs to someone else now.
for i = 7, #ARGV, 2 do
  local id = ARGV[i]
  local owner = redis.call('HGET', KEYS[2], id)
  if owner then
    local _, token = parse_owner(owner)
    if token == ARGV[i + 1] then
      redis.call('ZADD', KEYS[1], 'XX', lease_score(now + lease), id)
    end
  end
end

-- Only expired leases are looked at (running jobs are parked at PARKED + their lease's expiry):
-- the cost does not grow with the number of running jobs.
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], PARKED, lease_score(now), 'LIMIT', 0, tonumber(ARGV[5]))
for _, id in ipairs(expired) do
  return_run(KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6], base, id, now, K, default_p)
end

return {#expired, now}
