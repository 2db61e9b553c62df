-- Enqueue one or more jobs atomically, with dedup, "rerun when active", priority and delay.
-- No KEYS: every key is built from the queue's prefix (scripts are not Redis Cluster-safe, nor is
-- arq), which keeps each call small on the hot path.
-- ARGV[1] queue key prefix ("jq:<queue>:")
-- then four values per job: id, arq job JSON without its closing "et"/"d" part (the script adds
-- them, in Redis time), priority (1-10), when: "0" now, "+<ms>" after a delay, "@<ms>" at a time
-- Returns one code per job: 1 created, 0 already waiting/delayed/paused, 2 active (rerun recorded)
local base = ARGV[1]
local now = redis_now()
local queue, active, seq = base .. 'queue', base .. 'active', base .. 'seq'
local completed, failed = base .. 'completed', base .. 'failed'
local codes = {}
local wake = nil  -- when idle workers should look: 0 for a ready job, else the earliest due time
for i = 2, #ARGV, 4 do
  local id, head, p, when = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local due = 0
  local mark = string.sub(when, 1, 1)
  if mark == '+' then
    due = now + tonumber(string.sub(when, 2))
  elseif mark == '@' then
    due = tonumber(string.sub(when, 2))
  end
  local job
  if due > now then
    job = head .. ',"et":' .. now .. ',"d":' .. due .. '}'
  else
    due = 0
    job = head .. ',"et":' .. now .. '}'
  end
  if redis.call('HEXISTS', active, id) == 1 then
    -- Tied to the run that is active now: its end (FINISH, or the return of an expired lease)
    -- consumes it; a job is never created beside a run that still owns the id.
    redis.call('SET', base .. 'rerun:' .. id, job)
    emit(base, 'rerun', id, {'priority', p})
    codes[#codes + 1] = 2
  elseif redis.call('EXISTS', 'arq:job:' .. id) == 0 then
    -- No job key: nothing queued under this id.
    place_job(queue, seq, completed, failed, base, id, job, p, due, now, PRIORITY_BAND, true)
    if wake == nil or due < wake then
      wake = due
    end
    codes[#codes + 1] = 1
  else
    codes[#codes + 1] = 0
  end
end
if wake ~= nil then
  mark(base, wake)
end
return codes
