-- Baseline (d): the simulator's own capacity, measured with wrk (no Python on the client side).
-- Every request POSTs the same prepared 600-number sendmsg form body, read from the file named
-- after "--" on wrk's command line:
--   wrk -t1 -c64 -d5s -s benchmarks/baselines/wrk_sendmsg.lua http://127.0.0.1:PORT -- BODYFILE
local body = nil

function init(args)
  local handle = assert(io.open(args[1], "rb"))
  body = handle:read("*a")
  handle:close()
end

function request()
  return wrk.format("POST", "/http/sendmsg",
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
