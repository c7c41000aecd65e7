-- wrk script: POST /oauth/access_token with grant_type=refresh_token, each request using a
-- different refresh token from $BENCH_DIR/refresh.txt (thread k of n takes k, k+n, ...).
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  local nthreads = tonumber(os.getenv("WRK_THREADS"))
  tokens = {}
  local n = 0
  for line in io.lines(os.getenv("BENCH_DIR") .. "/refresh.txt") do
    if n % nthreads == tid then tokens[#tokens + 1] = line end
    n = n + 1
  end
  next_token = 1
  prefix = "client_id=" .. os.getenv("RCLIENT_ID") .. "&client_secret=" .. os.getenv("RCLIENT_SECRET")
    .. "&grant_type=refresh_token&refresh_token="
end

function request()
  local t = tokens[next_token] or "exhausted"
  next_token = next_token + 1
  return wrk.format("POST", "/oauth/access_token",
    { ["Content-Type"] = "application/x-www-form-urlencoded" }, prefix .. t)
end
