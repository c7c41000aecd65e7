-- wrk script: GET /me with a different token each request, from $BENCH_DIR/tokens.txt from line
-- $START on (default 0; thread k of n takes lines START+k, START+k+n, ..., and starts over at the
-- end), so every token is read and cached.
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  local nthreads = tonumber(os.getenv("WRK_THREADS"))
  tokens = {}
  local start = tonumber(os.getenv("START") or "0")
  local n = 0
  for line in io.lines(os.getenv("BENCH_DIR") .. "/tokens.txt") do
    if n >= start and (n - start) % nthreads == tid then tokens[#tokens + 1] = "Bearer " .. line end
    n = n + 1
  end
  next_token = 1
end

function request()
  local t = tokens[next_token]
  next_token = next_token % #tokens + 1
  return wrk.format("GET", "/me?fields=id,username", { ["Authorization"] = t })
end
