-- A worker is about to run a job: mark it active, unless the queue is paused.
-- KEYS[1] active hash   KEYS[2] paused flag
-- ARGV[1] job id   ARGV[2] "<worker id>|<start ms>"
-- Returns 1 when the job may run, 0 when the queue is paused (the try arq counted is given back).
if redis.call('EXISTS', KEYS[2]) == 1 then
  if tonumber(redis.call('GET', 'arq:retry:' .. ARGV[1]) or '0') > 0 then
    redis.call('DECR', 'arq:retry:' .. ARGV[1])
  end
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
