-- Replay pre-built requests with wrk, each exactly once, then sign off.
--
--   wrk -t T -c C -d CAP -s bench/wrk_replay.lua URL -- REQUESTS_FILE MARKER T
--
-- REQUESTS_FILE: one request per line, "METHOD \t PATH \t Name: v\x1fName: v \t BODY"
-- (bench/common.py write_requests). Request i goes to thread i mod T, so no request is
-- sent twice. When a thread has sent all of its requests it keeps its connections busy
-- with GET /healthz (not counted) until its last answer is in, then writes MARKER.<n>
-- and stops; the driver ends wrk with SIGINT once every thread has signed off (wrk
-- itself would sleep for the whole -d). Times come from CLOCK_MONOTONIC: first request
-- written to last answer read. done() prints one line, "WRKJSON {...}".

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } wrk_replay_timespec;
int clock_gettime(int clk_id, wrk_replay_timespec *tp);
]]
local ts = ffi.new("wrk_replay_timespec")
local function now()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

-- per thread; globals, because done() reads them with thread:get()
local reqs = {}
local filler = nil
local marker = nil
nsent, nanswered, nbad = 0, 0, 0
t_first, t_last = 0, 0
finished = false

function init(args)
  local path = args[1]
  marker = args[2]
  local nthreads = tonumber(args[3])
  local line_no = 0
  for line in io.lines(path) do
    if (line_no % nthreads) == (id - 1) then
      local method, target, head, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      local headers = {}
      for pair in string.gmatch(head, "[^\31]+") do
        local name, value = pair:match("^([^:]+): (.*)$")
        headers[name] = value
      end
      table.insert(reqs, wrk.format(method, target, headers, body))
    end
    line_no = line_no + 1
  end
  filler = wrk.format("GET", "/healthz")
  if #reqs == 0 then
    finished = true
    local f = io.open(marker .. "." .. id, "w"); f:write("0"); f:close()
  end
end

local verified = false

function request()
  -- wrk calls request() once on the first thread before it starts, only to look at the
  -- request (script_verify_request); that one is never sent, so it gets the filler.
  if id == 1 and not verified then
    verified = true
    return filler
  end
  if nsent < #reqs then
    nsent = nsent + 1
    if nsent == 1 then t_first = now() end
    return reqs[nsent]
  end
  return filler
end

function response(status, headers, body)
  if finished then return end
  -- /healthz answers exactly {"ok":true}; everything else answers a replayed request.
  if body ~= nil and body:find('^%s*{"ok":%s*true}%s*$') then return end
  nanswered = nanswered + 1
  if status < 200 or status > 299 then nbad = nbad + 1 end
  if nanswered >= #reqs then
    t_last = now()
    finished = true
    local f = io.open(marker .. "." .. id, "w")
    f:write(tostring(nanswered))
    f:close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local answered, bad, first, last, complete = 0, 0, nil, 0, true
  for _, thread in ipairs(threads) do
    answered = answered + (thread:get("nanswered") or 0)
    bad = bad + (thread:get("nbad") or 0)
    local tf, tl = thread:get("t_first") or 0, thread:get("t_last") or 0
    if tf > 0 and (first == nil or tf < first) then first = tf end
    if tl > last then last = tl end
    if not thread:get("finished") then complete = false end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"answered":%d,"non_2xx":%d,"seconds":%.6f,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"t_first":%.6f,"t_last":%.6f,"complete":%s,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"requests":%d}\n',
    answered, bad, (first and last > first) and (last - first) or 0,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    first or 0, last, complete and "true" or "false", e.connect, e.read, e.write, e.status, e.timeout, summary.requests))
end
