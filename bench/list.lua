-- bench/list.lua — wrk script for the list run of bench/rest.sh: plain GETs
-- (wrk's own request), and one machine-readable result line at the end.
-- No response() function, so wrk does not parse bodies.

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d" ..
      " status_err=%d connect=%d read=%d write=%d timeout=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
