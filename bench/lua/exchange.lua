-- wrk script: POST /oauth/access_token, each request redeeming a different code from
-- $BENCH_DIR/codes.txt. Thread k of n takes codes k, k+n, k+2n, ... so no code is sent twice.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  nthreads = tonumber(os.getenv("WRK_THREADS"))
  codes = {}
  local n = 0
  for line in io.lines(os.getenv("BENCH_DIR") .. "/codes.txt") do
    if n % nthreads == tid then codes[#codes + 1] = line end
    n = n + 1
  end
  next_code = 1
  prefix = "client_id=" .. os.getenv("CLIENT_ID") .. "&client_secret=" .. os.getenv("CLIENT_SECRET")
    .. "&grant_type=authorization_code&redirect_uri=" .. os.getenv("REDIRECT_URI_ENC") .. "&code="
end

function request()
  local code = codes[next_code] or "exhausted"
  next_code = next_code + 1
  return wrk.format("POST", "/oauth/access_token",
    { ["Content-Type"] = "application/x-www-form-urlencoded" }, prefix .. code)
end
