-- Shared by the wrk scripts in bench/load: the request shape (from the environment) and a
-- done() hook that prints one machine-readable line with p50/p99/p99.9 from wrk's histogram.
--   BENCH_METHOD      GET (default) or POST
--   BENCH_BODY_BYTES  size of the JSON request body for POST, e.g. 1024 or 65536 (default 0)

local method = os.getenv("BENCH_METHOD") or "GET"
local body_bytes = tonumber(os.getenv("BENCH_BODY_BYTES") or "0")

wrk.method = method
if body_bytes > 0 then
  -- A JSON object of exactly body_bytes bytes: {"pad":"xxx..."}
  local overhead = #'{"pad":""}'
  wrk.body = '{"pad":"' .. string.rep("x", math.max(body_bytes - overhead, 0)) .. '"}'
  wrk.headers["Content-Type"] = "application/json"
elseif method == "POST" then
  wrk.body = '{"player":"bench"}'
  wrk.headers["Content-Type"] = "application/json"
end

-- Prints: RESULT requests=N non2xx=N ... rps=X p50_us=N p99_us=N p999_us=N mean_us=N
-- `extra` is appended as given (key=value pairs).
function bench_report(summary, latency, extra)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  local ok = summary.requests - e.status
  io.write(string.format(
    "RESULT requests=%d non2xx=%d connect_err=%d read_err=%d write_err=%d timeouts=%d " ..
    "duration_s=%.3f rps=%.1f ok_rps=%.1f p50_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%.0f%s\n",
    summary.requests, e.status, e.connect, e.read, e.write, e.timeout,
    seconds, summary.requests / seconds, ok / seconds,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean, extra or ""))
end
