-- Replays a pregenerated file of signed pushes, each request at most once.
--
--   wrk -tT ... -s bench/replay.lua URL -- PUSHFILE xml|success T
--
-- PUSHFILE holds two lines a push: the target (path and query), then the body.
-- Thread k of T sends pushes k, k+T, k+2T, ...; a thread that runs out of pushes
-- starts over and counts the repeats (the run is then invalid: a repeated MsgId is
-- deduplicated by the project).  Every response is checked: its status must be 200
-- and its body must start with "<xml>", after any white space (echo apps) or be "success" (the bare route).
-- done() prints one JSON line, prefixed "BENCH_JSON ", for the driver.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local file, expect, nthreads = args[1], args[2] or "xml", tonumber(args[3] or "1")
   reqs = {}
   local headers = { ["Content-Type"] = "text/xml" }
   local i, target = 0, nil
   for line in io.lines(file) do
      if target == nil then
         target = line
      else
         if i % nthreads == tid then
            reqs[#reqs + 1] = wrk.format("POST", target, headers, line)
         end
         i = i + 1
         target = nil
      end
   end
   navail = #reqs
   expect_xml = (expect == "xml")
   pos = 0
   sent = 0
   repeats = 0
   non200 = 0
   badbody = 0
   statuses = {}
end

function request()
   pos = pos + 1
   if pos > #reqs then
      pos = 1
   end
   sent = sent + 1
   if sent > #reqs then
      repeats = repeats + 1
   end
   return reqs[pos]
end

function response(status, headers, body)
   if status ~= 200 then
      non200 = non200 + 1
      statuses[status] = (statuses[status] or 0) + 1
   elseif expect_xml then
      if not string.find(body, "^%s*<xml>") then
         badbody = badbody + 1
      end
   elseif body ~= "success" then
      badbody = badbody + 1
   end
end

function done(summary, latency, requests)
   local t_non200, t_bad, t_repeats, t_avail, t_sent = 0, 0, 0, 0, 0
   local codes = {}
   for _, thread in ipairs(threads) do
      t_non200 = t_non200 + thread:get("non200")
      t_bad = t_bad + thread:get("badbody")
      t_repeats = t_repeats + thread:get("repeats")
      t_sent = t_sent + thread:get("sent")
      t_avail = t_avail + thread:get("navail")
      for code, count in pairs(thread:get("statuses")) do
         codes[#codes + 1] = string.format('"%d": %d', code, count)
      end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"non200": %d, "statuses": {%s}, "bad_body": %d, "repeats": %d, "sent": %d, "available": %d, ' ..
      '"latency_us": {"p50": %.1f, "p90": %.1f, "p99": %.1f, "max": %.1f, "mean": %.1f}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      t_non200, table.concat(codes, ", "), t_bad, t_repeats, t_sent, t_avail,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
