-- START (start_run in _common.lua), called on its own: when arq's claim did not carry it, and
-- again after a paused or not-yet-due answer.
-- KEYS[1] queue zset   KEYS[2] active hash   KEYS[3] paused flag
-- ARGV[1] queue key prefix   ARGV[2] job id   ARGV[3] worker id   ARGV[4] run token
-- ARGV[5] lease (ms)   ARGV[6] attempts allowed
return start_run(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]))
