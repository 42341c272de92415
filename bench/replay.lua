-- Replays pre-signed requests, one per line: METHOD \t PATH \t BODY. Each wrk thread starts at
-- its own offset and walks the file in order, so a run repeats a request only after the file is
-- used up (the generator already mixes in the re-sends a provider makes).
--
-- With RATE set (requests per second for the whole run, THREADS and CONNECTIONS as given to
-- wrk), each thread paces its connections, so the pipeline sees a steady rate, not a flood.
--
-- With ACCEPTED_BODY set (texts separated by "|"), an answer is an acceptance only if it is
-- HTTP 200 and its body holds one of those texts: the JSON protocols answer a refusal with HTTP
-- 200 and a code in the body. The count of the others is printed as "Refused answers: N".

local requests = {}
local position = 1

local function load(path)
  for line in io.lines(path) do
    local method, target, body = line:match("^(%u+)\t([^\t]*)\t(.*)$")
    if method then
      local headers = {}
      if body ~= "" then headers["Content-Type"] = "application/json" else body = nil end
      requests[#requests + 1] = wrk.format(method, target, headers, body)
    end
  end
end

local thread_number = 0
local threads = {}

function setup(thread)
  thread_number = thread_number + 1
  thread:set("offset", thread_number)
  threads[thread_number] = thread
end

-- Pacing: each response claims the thread's next send slot, so the thread keeps a fixed rate
-- however long the answers take (as long as it has a free connection).
local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } payouts_timespec;
  int clock_gettime(int clock_id, payouts_timespec *tp);
]]
local timespec = ffi.new("payouts_timespec")
local CLOCK_MONOTONIC = 1

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

local slot_ms = 0
local next_slot = 0

function init(args)
  load(os.getenv("REQUESTS"))
  local threads = tonumber(os.getenv("THREADS") or "1")
  position = math.floor(#requests * (offset - 1) / threads) + 1
  local rate = tonumber(os.getenv("RATE") or "0")
  if rate > 0 then
    slot_ms = 1000 * threads / rate
  end
end

if tonumber(os.getenv("RATE") or "0") > 0 then
  -- Defined only when pacing: wrk then schedules every request through a timer.
  function delay()
    local now = now_ms()
    if next_slot < now then next_slot = now end
    local wait = next_slot - now
    next_slot = next_slot + slot_ms
    return math.floor(wait)
  end
end

function request()
  local next_request = requests[position]
  position = position + 1
  if position > #requests then position = 1 end
  return next_request
end

local accepted_bodies = {}
for text in string.gmatch(os.getenv("ACCEPTED_BODY") or "", "[^|]+") do
  accepted_bodies[#accepted_bodies + 1] = text
end
-- Global, so that done() can read each thread's count.
refused = 0

local function accepting(body)
  for _, text in ipairs(accepted_bodies) do
    if string.find(body, text, 1, true) then return true end
  end
  return false
end

if #accepted_bodies > 0 then
  -- Defined only when asked: wrk then hands every answer's body to Lua, which costs it CPU.
  function response(status, headers, body)
    if status ~= 200 or not accepting(body) then
      refused = refused + 1
    end
  end

  function done(summary, latency, requests)
    local total = 0
    for _, thread in ipairs(threads) do
      total = total + thread:get("refused")
    end
    io.write(string.format("Refused answers: %d\n", total))
  end
end
