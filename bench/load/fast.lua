-- wrk script for the closed-loop scenarios (1: small GET, 3: POST bodies). No per-request Lua
-- hooks, so wrk stays as cheap as possible; only done() reports.
dofile((os.getenv("BENCH_LUA_DIR") or "bench/load") .. "/report.lua")

function done(summary, latency, requests)
  bench_report(summary, latency)
end
