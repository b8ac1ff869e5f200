-- POST /webhook with a real signed push payload; every request gets its own
-- X-GitHub-Delivery so each one is a new delivery (no dedupe short-cut).
-- Environment: BENCH_BODY (payload file), BENCH_SIGNATURE, BENCH_RUN (id prefix).
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
  body = f:read("*a")
  f:close()
  signature = os.getenv("BENCH_SIGNATURE")
  prefix = os.getenv("BENCH_RUN") .. "-" .. tid .. "-"
  counter = 0
end

function request()
  counter = counter + 1
  return wrk.format("POST", "/webhook", {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = prefix .. counter,
    ["X-Hub-Signature-256"] = signature,
  }, body)
end
