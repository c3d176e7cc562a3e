-- wrk script for bench/fault/run.sh: requests cycle over a healthy path, a path the upstream
-- always answers 503 and one it always answers 500; each response is classified by its body
-- (wrk does not say which request a response belongs to) and the counts are printed at the end.
local paths = {"/rule-engine/ok", "/rule-engine/ok", "/rule-engine/broken", "/rule-engine/bad-input"}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  n = 0
  counts = {}
end

function request()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1])
end

function response(status, headers, body)
  local kind
  if status == 200 then
    kind = "ok_200"
  elseif body:find("circuit open", 1, true) then
    kind = "circuit_open_503"
  elseif body:find("model unavailable", 1, true) then
    kind = "upstream_503"
  elseif body:find("bad input", 1, true) then
    kind = "upstream_500"
  else
    kind = "other_" .. status
  end
  counts[kind] = (counts[kind] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do
      total[k] = (total[k] or 0) + v
    end
  end
  for _, k in ipairs({"ok_200", "upstream_503", "upstream_500", "circuit_open_503"}) do
    io.write(string.format("count %s %d\n", k, total[k] or 0))
    total[k] = nil
  end
  for k, v in pairs(total) do
    io.write(string.format("count %s %d\n", k, v))
  end
end
