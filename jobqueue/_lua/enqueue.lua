-- Enqueue one or more jobs atomically, with dedup, "rerun when active", priority and delay.
-- KEYS[1] queue zset (arq's queue)   KEYS[2] active hash   KEYS[3] FIFO sequence
-- KEYS[4] completed zset              KEYS[5] failed zset
-- ARGV[1] queue key prefix ("jq:<queue>:")   ARGV[2] priority band width K   ARGV[3] now (ms)
-- then four values per job: id, arq job JSON, priority (1-10), due time in ms (0 = now)
-- Returns one code per job: 1 created, 0 already waiting/delayed/paused, 2 active (rerun recorded)
local base, K, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local codes = {}
for i = 4, #ARGV, 4 do
  local id, job, p, due = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  if redis.call('HEXISTS', KEYS[2], id) == 1 or redis.call('EXISTS', 'arq:in-progress:' .. id) == 1 then
    redis.call('SET', base .. 'rerun:' .. id, job)
    codes[#codes + 1] = 2
  elseif redis.call('EXISTS', 'arq:job:' .. id) == 1 then
    codes[#codes + 1] = 0
  else
    place_job(KEYS[1], KEYS[3], KEYS[4], KEYS[5], base, id, job, p, due, now, K)
    codes[#codes + 1] = 1
  end
end
return codes
