-- CLAIM: a worker takes up to `most` ready jobs in one step (BullMQ's moveToActive, batched). Due
-- delayed and retried jobs first move into the ready band at their priority; then the head of the
-- queue is taken in (priority, FIFO) order. Each job taken gets an owner (this worker and a run
-- token), a lease (it is parked at PARKED + the lease's expiry) and an attempt.
-- KEYS[1] queue zset   KEYS[2] active hash   KEYS[3] paused flag   KEYS[4] FIFO sequence
-- KEYS[5] arq's zset for the worker's own cron jobs
-- ARGV[1] queue key prefix   ARGV[2] worker id   ARGV[3] claim id (run tokens are <claim id>.<n>)
-- ARGV[4] lease (ms)   ARGV[5] attempts allowed   ARGV[6] most jobs to take   ARGV[7] the queue's job
-- id prefix   ARGV[8] default priority   ARGV[9] most jobs promoted
-- Returns {status, now, ms until the next delayed job is due (-1: none), more ready (0/1), then six
-- values per job taken: id, run token, arq job JSON, 1 run it | 4 every attempt used by runs that
-- never reported back (fail it), attempt, when it fell due after a retry's backoff or a promotion
-- (ms, '' when not: then the job's own "d")}; status 1 claimed (maybe nothing), 2 the queue is paused.
-- A claim sent again with the same claim id (its first reply was lost) answers the first reply.
local base, worker, claim_id = ARGV[1], ARGV[2], ARGV[3]
local lease, allowed, most = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local prefix, default_p, K = ARGV[7], tonumber(ARGV[8]), PRIORITY_BAND
local record = base .. 'claim:' .. worker
local last = redis.call('GET', record)
if last and string.sub(last, 1, #claim_id + 1) == claim_id .. '\n' then
  return cjson.decode(string.sub(last, #claim_id + 2))
end
local now = redis_now()
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {2, now, -1, 0}
end

local function ours(id)
  return string.sub(id, 1, #prefix) == prefix
end

-- An id that is not the queue's own is an arq cron job queued by an older worker: arq runs those
-- from their own zset.
local function to_cron(id, score)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[5], score, id)
end

local due = redis.call('ZRANGEBYSCORE', KEYS[1], now - K / 2, now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[9]))
for i = 1, #due, 2 do
  if ours(due[i]) then
    redis.call('ZADD', KEYS[1], 'XX', ready_score(KEYS[4], score_priority(due[i + 1], default_p), K), due[i])
  else
    to_cron(due[i], due[i + 1])
  end
end

local reply = {1, now, -1, 0}
local taken = 0
local head = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, most)
for i = 1, #head, 2 do
  local id, score = head[i], head[i + 1]
  local job = ours(id) and redis.call('GET', 'arq:job:' .. id)
  if not ours(id) then
    to_cron(id, now)
  elseif not job then
    redis.call('ZREM', KEYS[1], id)  -- an entry whose job was deleted by hand: nothing to run
  else
    taken = taken + 1
    local token = claim_id .. '.' .. taken
    redis.call('ZADD', KEYS[1], 'XX', lease_score(now + lease), id)
    redis.call('HSET', KEYS[2], id, worker .. '|' .. token .. '|' .. now .. '|' .. score)
    local info = base .. 'info:' .. id
    local made = tonumber(redis.call('HGET', info, 'attempts') or '0')
    local code, attempt = 4, made
    if made < allowed then
      code, attempt = 1, redis.call('HINCRBY', info, 'attempts', 1)
    end
    reply[#reply + 1], reply[#reply + 2], reply[#reply + 3], reply[#reply + 4], reply[#reply + 5] =
      id, token, job, code, attempt
    reply[#reply + 1] = tonumber(redis.call('HGET', info, 'due')) or ''
    emit(base, 'active', id, {'attempt', attempt})
  end
end

-- Taken all it could: another idle worker may take the rest.
if #head >= 2 * most and #redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1) > 0 then
  reply[4] = 1
  mark(base, 0)
end
local next_due = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '(' .. PARKED, 'WITHSCORES', 'LIMIT', 0, 1)
if #next_due > 0 then
  reply[3] = math.ceil(tonumber(next_due[2]) - now)
end
if taken > 0 then
  redis.call('SET', record, claim_id .. '\n' .. cjson.encode(reply), 'PX', lease)
end
return reply
