-- Citizens answering page surveys, for wrk (tests/load_support.py starts it; see there).
-- Each request is another citizen: its own User-Agent and client_token, so the spam
-- guard keeps one client row per request as with real traffic, and nothing is folded
-- or refused as a repeat. Pages, divisions and answers vary.
--
-- Settings come from the environment (the same for every wrk thread):
--   KOE_LOAD_POOL      the citizens, one a line: page URL, division (- for none) and the
--                      solved challenge for that page (load_support.write_pool); one each
--   KOE_LOAD_TAG       a number of this wrk process's own, so tokens never repeat across runs
--   KOE_LOAD_DEADLINE  epoch seconds: no request is started after it; those in flight finish
--   KOE_LOAD_PAUSE_MS  a connection's pause between its requests (0: as fast as answered)
--   KOE_LOAD_OUT       where done() writes what this process sent and was answered

local tag = tonumber(os.getenv("KOE_LOAD_TAG"))
local deadline = tonumber(os.getenv("KOE_LOAD_DEADLINE"))
local pause_ms = tonumber(os.getenv("KOE_LOAD_PAUSE_MS"))
local questions = { "findability", "clarity", "usefulness" }
local answers = { "yes", "yes", "neutral", "no" }

-- In the main state: every thread, for done(); each gets a number of its own.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

-- In each thread's state.
sent, answered, statuses, ids = 0, 0, {}, {}

function init(args)
  math.randomseed(tag * 1000 + tid)
  -- Read as needed, not loaded: a pool for minutes of load is large. load_support runs
  -- wrk with one thread (-t 1); a second would read the same lines.
  pool = io.lines(os.getenv("KOE_LOAD_POOL"))
  -- wrk calls request() once on the first thread to inspect it, without sending it.
  if tid == 1 then
    sent = -1
  end
end

local function body(n)
  -- A pool that ran dry sends no proof: koe refuses that (403), and the load reports it.
  local url, division, proof = (pool() or "- - -"):match("(%S+) (%S+) (%S+)")
  local parts = {}
  for _, question in ipairs(questions) do
    -- Most citizens answer every question, some only one or two.
    if math.random() < 0.8 or (question == "clarity" and #parts == 0) then
      parts[#parts + 1] = string.format('"%s":"%s"', question, answers[math.random(#answers)])
    end
  end
  return string.format(
    '{"page_url":"%s","page_title":"負荷試験のページ %s",%s"answers":{%s},"altcha":"%s",'
      .. '"locale":"ja","client_token":"%08x-%04x-4000-8000-%012x"}',
    url,
    url:match("(%d*)%.html$") or "",
    division ~= "-" and string.format('"division":"%s",', division) or "",
    table.concat(parts, ","),
    proof,
    tag,
    tid,
    n
  )
end

function request()
  sent = sent + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = string.format("Mozilla/5.0 (koe-load; citizen %d-%d-%d)", tag, tid, sent),
  }
  return wrk.format("POST", nil, headers, body(sent))
end

function response(status, headers, body)
  answered = answered + 1
  statuses[status] = (statuses[status] or 0) + 1
  if status >= 200 and status < 300 then
    ids[#ids + 1] = body:match('"id"%s*:%s*"([%x%-]+)"') or "?"
  end
  -- Past the deadline with every request answered: done. wrk itself would run on to its
  -- -d, its connections reopened and idle, and each of those holds a sync gunicorn worker
  -- (that waits for a request) from the other wrk's citizens. The file tells
  -- load_support.py to end this wrk now (SIGINT: wrk then reports as at the end of -d).
  if answered == sent and os.time() >= deadline then
    wrk.thread:stop()
    assert(io.open(os.getenv("KOE_LOAD_OUT") .. ".stopped", "w")):close()
  end
end

function delay()
  if os.time() >= deadline then
    return 3600 * 1000 -- never again: wrk ends (-d) before this comes round
  end
  return pause_ms
end

function done(summary, latency, requests)
  local out = assert(io.open(os.getenv("KOE_LOAD_OUT"), "w"))
  for _, thread in ipairs(threads) do
    out:write("sent ", thread:get("sent"), "\n")
    out:write("answered ", thread:get("answered"), "\n")
    for status, count in pairs(thread:get("statuses")) do
      out:write("status ", status, " ", count, "\n")
    end
    for _, id in ipairs(thread:get("ids")) do
      out:write("id ", id, "\n")
    end
  end
  for _, kind in ipairs({ "connect", "read", "write", "timeout" }) do
    out:write("error ", kind, " ", summary.errors[kind], "\n")
  end
  for _, pct in ipairs({ 50, 90, 99 }) do
    out:write("latency_us p", pct, " ", latency:percentile(pct), "\n")
  end
  out:write("latency_us max ", latency.max, "\n")
  out:close()
end
