-- Enqueue one or more jobs atomically, with dedup, "rerun when active", priority and delay.
-- No KEYS: every key is built from the queue's prefix (scripts are not Redis Cluster-safe, nor is
-- arq), which keeps each call small on the hot path.
-- ARGV[1] queue key prefix ("jq:<queue>:")   ARGV[2] now (ms)
-- then four values per job: id, arq job JSON, priority (1-10), due time in ms (0 = now)
-- Returns one code per job: 1 created, 0 already waiting/delayed/paused, 2 active (rerun recorded)
local base, now = ARGV[1], tonumber(ARGV[2])
local queue, active, seq = base .. 'queue', base .. 'active', base .. 'seq'
local completed, failed = base .. 'completed', base .. 'failed'
local codes = {}
for i = 3, #ARGV, 4 do
  local id, job, p, due = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  if redis.call('EXISTS', 'arq:job:' .. id) == 0 then
    -- No job key: nothing queued or running under this id (arq deletes the key only when it
    -- finishes a run), so a new job, even while our record of the last run is being written.
    place_job(queue, seq, completed, failed, base, id, job, p, due, now, PRIORITY_BAND)
    codes[#codes + 1] = 1
  elseif redis.call('HEXISTS', active, id) == 1 or redis.call('EXISTS', 'arq:in-progress:' .. id) == 1 then
    redis.call('SET', base .. 'rerun:' .. id, job)
    codes[#codes + 1] = 2
  else
    codes[#codes + 1] = 0
  end
end
return codes
