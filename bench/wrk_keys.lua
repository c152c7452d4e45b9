-- wrk script for bench/run.sh: cycles through prebuilt requests, one extra header line each,
-- read from the file given after `--` (e.g. `cookie: sid=3f9a...`), and prints a JSON summary.
--   wrk -t1 -c32 -d8s -s bench/wrk_keys.lua http://127.0.0.1:10001/ -- headers.txt
local requests = {}
local i = 0

function init(args)
  local path = args[1]
  for line in io.lines(path) do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    if name then
      requests[#requests + 1] = wrk.format("GET", "/", { [name] = value, ["Host"] = "bench" })
    end
  end
  if #requests == 0 then
    error("no header lines in " .. tostring(path))
  end
end

function request()
  i = i % #requests + 1
  return requests[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
