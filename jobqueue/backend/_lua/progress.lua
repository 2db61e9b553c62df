-- A handler's progress or log line, written only by the run that owns the job: a run whose lease
-- expired (its job returned, maybe running elsewhere now) writes nothing.
-- KEYS[1] active hash
-- ARGV[1] queue key prefix   ARGV[2] job id   ARGV[3] run token   ARGV[4] progress | log
-- ARGV[5] the progress as JSON, or the log line   ARGV[6] the run's attempt   ARGV[7] log lines kept
-- Returns 1 written, -1 not the owner (nothing written)
local base, id, token = ARGV[1], ARGV[2], ARGV[3]
local owner = redis.call('HGET', KEYS[1], id)
if not owner or select(2, parse_owner(owner)) ~= token then
  return -1
end
if ARGV[4] == 'progress' then
  redis.call('SET', base .. 'progress:' .. id, ARGV[5])
  emit(base, 'progress', id, {'attempt', ARGV[6], 'progress', ARGV[5]})
else
  local logs = base .. 'logs:' .. id
  redis.call('RPUSH', logs, ARGV[5])
  redis.call('LTRIM', logs, -tonumber(ARGV[7]), -1)
end
return 1
