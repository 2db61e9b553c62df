-- Jobs a worker is about to run: mark them active, unless the queue is paused.
-- KEYS[1] active hash   KEYS[2] paused flag
-- ARGV: pairs of job id, "<worker id>|<start ms>"
-- Returns 1 when the jobs may run, 0 when the queue is paused (the tries arq counted are given back).
if redis.call('EXISTS', KEYS[2]) == 1 then
  for i = 1, #ARGV, 2 do
    if tonumber(redis.call('GET', 'arq:retry:' .. ARGV[i]) or '0') > 0 then
      redis.call('DECR', 'arq:retry:' .. ARGV[i])
    end
  end
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
