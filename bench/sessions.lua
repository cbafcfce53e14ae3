-- wrk script for bench/run.py's many-sessions phase: every request carries the cookies of a session
-- picked at random from BENCH_COOKIES (a file, one Cookie header value per line), plus X-CSRF.
-- Random, not round-robin: a cycle over more sessions than a cache holds would defeat any LRU cache
-- entirely, which measures the cycle, not the gateway. The result line comes from report.lua.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local sessions = {}
for line in io.lines(os.getenv("BENCH_COOKIES")) do
  if line ~= "" then sessions[#sessions + 1] = line end
end

local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

init = function(args)
  math.randomseed(os.time() * 1000 + (seed or 0))
end

request = function()
  local cookie = sessions[math.random(#sessions)]
  return wrk.format(nil, nil, { ["Cookie"] = cookie, ["X-CSRF"] = "1" })
end
