-- wrk script for scenario 2 (slow upstream, thousands of connections).
--
-- wrk connects every connection at once, so with a fixed 1 s upstream latency all replies would
-- arrive in synchronized waves and "requests / duration" would be quantized (a 10 s run holds 9
-- whole waves: 90 % of the bound even with no proxy at all). So:
--  * delay(): each connection's first request waits a random 0..BENCH_SPREAD_MS, which spreads the
--    connections evenly over one latency period; afterwards requests follow replies at once;
--  * response(): counts 2xx replies that arrive inside the steady-state window
--    [BENCH_WINDOW_FROM_S, BENCH_WINDOW_TO_S] after the start; done() reports that count divided
--    by the window length as window_rps (the throughput to compare with connections / latency).
-- wrk's own latency histogram starts when a request is written, so the initial delay is not in it.
dofile((os.getenv("BENCH_LUA_DIR") or "bench/load") .. "/report.lua")

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec_t;
  int clock_gettime(int clock_id, bench_timespec_t *tp);
]]
local ts = ffi.new("bench_timespec_t")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local spread_ms = tonumber(os.getenv("BENCH_SPREAD_MS") or "1000")
local window_from = tonumber(os.getenv("BENCH_WINDOW_FROM_S") or "3")
local window_to = tonumber(os.getenv("BENCH_WINDOW_TO_S") or "9")

-- main state: hand every thread the common start time and its index
local threads = {}
local start = now()
function setup(thread)
  thread:set("t0", start)
  thread:set("index", #threads + 1)
  table.insert(threads, thread)
end

-- thread state
-- (globals: `counted` is read by done() through thread:get; t0 and index come from setup)
local first_requests = 0
local per_thread_connections = math.floor(tonumber(os.getenv("BENCH_CONNECTIONS") or "0") /
                                          tonumber(os.getenv("BENCH_THREADS") or "1"))
counted = 0
local t_from, t_to

function init(args)
  math.randomseed(index * 7919 + os.time())
  t_from = t0 + window_from
  t_to = t0 + window_to
end

function delay()
  -- The first call per connection comes before any reply (replies take >= 1 latency period).
  if first_requests < per_thread_connections then
    first_requests = first_requests + 1
    return math.random(0, spread_ms)
  end
  return 0
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    local t = now()
    if t >= t_from and t < t_to then counted = counted + 1 end
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + (thread:get("counted") or 0) end
  local window = window_to - window_from
  bench_report(summary, latency,
    string.format(" window_ok=%d window_s=%.2f window_rps=%.1f", total, window, total / window))
end
