-- arq's claim of a job, its first read of the job and our START, as one script: what arq 0.28's
-- Worker.start_jobs does with WATCH, EXISTS, ZSCORE and MULTI/PSETEX/EXEC, and Worker.run_job
-- with GET and INCR/EXPIRE of the try count, decided the same way (jobqueue._arq answers arq's
-- calls from the reply), then START (start_run) for the run this worker will make.
-- KEYS[1] arq's in-progress key   KEYS[2] queue zset   KEYS[3] arq's job key   KEYS[4] arq's retry key
-- KEYS[5] active hash   KEYS[6] paused flag
-- ARGV[1] arq's clock (ms)   ARGV[2] in-progress TTL (ms)   ARGV[3] queue key prefix   ARGV[4] job id
-- ARGV[5] worker id   ARGV[6] run token   ARGV[7] lease (ms)   ARGV[8] attempts allowed
-- ARGV[9] the queue's job id prefix (`<queue>:`): only such jobs are ours to START; arq's cron
-- jobs share the queue zset and arq runs them itself.
-- Returns {in progress (0/1), score or false}: not claimed, as arq's reads would have seen it;
-- {0, score, job or false, try count, START's reply or false}: claimed, read (and started).
local id = ARGV[4]
local in_progress = redis.call('EXISTS', KEYS[1])
local score = redis.call('ZSCORE', KEYS[2], id)
if in_progress == 1 or not score or tonumber(score) == 0 or tonumber(score) > tonumber(ARGV[1]) then
  return {in_progress, score or false}
end
redis.call('PSETEX', KEYS[1], ARGV[2], '1')
local job = redis.call('GET', KEYS[3])
local tries = redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], 88400)
local started = false
if string.sub(id, 1, #ARGV[9]) == ARGV[9] then
  started = start_run(KEYS[2], KEYS[5], KEYS[6], ARGV[3], id, ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]))
end
return {0, score, job or false, tries, started}
