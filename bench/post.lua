-- bench/post.lua — wrk script for the post runs of bench/rest.sh.
--   wrk ... -s bench/post.lua URL -- ROOMS TOKEN PREFIX CLIENT_ID
-- ROOMS: comma-separated room ids, posted to round-robin; TOKEN: bearer
-- token; PREFIX: makes every client_id of this run unique
-- (PREFIX-<thread>-<n>); CLIENT_ID: "1" to send client_id, "0" not to.
-- Counts answers by status; with client_id it also keeps the ids sent but
-- not answered when wrk's clock ran out (requests wrk abandoned in flight:
-- the server may still commit them), so rest.sh can account for every row.

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("tid", counter)
   table.insert(threads, thread)
end

function init(args)
   rooms = {}
   for r in string.gmatch(args[1], "[^,]+") do table.insert(rooms, r) end
   prefix = args[3] .. "-" .. tid .. "-"
   with_cid = args[4] == "1"
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Authorization"] = "Bearer " .. args[2]
   sent, n201, n200, n4xx, n5xx, nother = 0, 0, 0, 0, 0, 0
   pending = {}
end

function request()
   sent = sent + 1
   local room = rooms[(sent % #rooms) + 1]
   local body
   if with_cid then
      pending[sent] = true
      body = string.format('{"room":"%s","content":"bench message %d of thread %d",' ..
                           '"client_id":"%s%d"}', room, sent, tid, prefix, sent)
   else
      body = string.format('{"room":"%s","content":"bench message %d of thread %d"}',
                           room, sent, tid)
   end
   return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
   if status == 201 then n201 = n201 + 1
   elseif status == 200 then n200 = n200 + 1
   elseif status >= 400 and status < 500 then n4xx = n4xx + 1
   elseif status >= 500 then n5xx = n5xx + 1
   else nother = nother + 1 end
   if with_cid and status < 300 then
      local n = string.match(body, '"client_id":"[^"]*%-(%d+)"')
      if n then pending[tonumber(n)] = nil end
   end
end

function done(summary, latency, requests)
   local s = { sent = 0, n201 = 0, n200 = 0, n4xx = 0, n5xx = 0, nother = 0 }
   local ids = {}
   for _, t in ipairs(threads) do
      for k, _ in pairs(s) do s[k] = s[k] + t:get(k) end
      local id = t:get("tid")
      for n, _ in pairs(t:get("pending")) do
         table.insert(ids, id .. "-" .. n)
      end
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d" ..
      " status_err=%d connect=%d read=%d write=%d timeout=%d" ..
      " sent=%d n201=%d n200=%d n4xx=%d n5xx=%d nother=%d pending=%s\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout,
      s.sent, s.n201, s.n200, s.n4xx, s.n5xx, s.nother, table.concat(ids, ",")))
end
