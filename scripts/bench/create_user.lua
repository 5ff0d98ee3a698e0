-- wrk script for scripts/bench/run: every request POSTs a new SCIM user with a unique
-- userName, "bench-<run>-<thread>-<counter>@example.com", so no request hits a 409.
--   wrk ... -s scripts/bench/create_user.lua URL -- RUN_ID
-- The bearer token comes from wrk's -H option (wrk.headers).

local threads = 0

-- Runs once per wrk thread in the main Lua state: number the threads.
function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

-- Runs in each thread's own Lua state: the run id (so two runs on one store never collide).
function init(args)
  run_id = args[1] or tostring(os.time())
  counter = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/scim+json"
end

function request()
  counter = counter + 1
  local name = string.format("bench-%s-%d-%d@example.com", run_id, thread_no, counter)
  local body = '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],'
    .. '"userName":"' .. name .. '","active":true,'
    .. '"emails":[{"value":"' .. name .. '","type":"work","primary":true}]}'
  return wrk.format(nil, nil, nil, body)
end
