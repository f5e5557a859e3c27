-- Latency of one URL, for bench/history.py: wrk -t1 -c1 -d2s -s bench/wrk_latency.lua URL -- "Name: value"...
-- Extra arguments are request headers. done() prints "WRKJSON {...}" with percentiles in µs.

function init(args)
  for _, pair in ipairs(args) do
    local name, value = pair:match("^([^:]+): (.*)$")
    wrk.headers[name] = value
  end
end

bad = 0

function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local non200 = 0
  for _, thread in ipairs(threads) do non200 = non200 + (thread:get("bad") or 0) end
  io.write(string.format(
    'WRKJSON {"requests":%d,"non_200":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"seconds":%.3f}\n',
    summary.requests, non200, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, summary.duration / 1e6))
end
