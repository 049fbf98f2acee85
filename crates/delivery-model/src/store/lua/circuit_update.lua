-- One host's circuit breaker, told what a batch of attempts learned about the host, in order (cluster
-- mode: finish_attempts cannot touch the untagged circuit hash, so the worker sends the signals of the
-- attempts it wrote, fenced ones left out, here right after).
-- KEYS[1] circuit hash
-- ARGV[1] failures that open a circuit, ARGV[2] now (ms), ARGV[3] comma-separated open windows (ms),
-- ARGV[4] circuit hash TTL (s), then one signal per attempt: success|failure|none
-- Returns the number of signals applied.
local windows = circuit_windows(ARGV[3])
local threshold, now_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 5, #ARGV do
  circuit(KEYS[1], ARGV[i], now_ms, threshold, windows, ARGV[4])
end
return #ARGV - 4
