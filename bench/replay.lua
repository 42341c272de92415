-- Replays pre-signed requests, one per line: METHOD \t PATH \t BODY, then any headers as
-- further \t-separated `Name: value` fields. Each wrk thread starts at its own offset and walks
-- the file in order, so a run repeats a request only after the file is used up (the generator
-- already mixes in the re-sends a provider makes).
--
-- A file up to PRELOAD_BYTES is read and formatted once, before the run; a larger one (a long
-- soak's) is read a line at a time as the run goes, so wrk's memory stays bounded.
--
-- With RATE set (requests per second for the whole run, THREADS and CONNECTIONS as given to
-- wrk), each thread paces its connections, so the pipeline sees a steady rate, not a flood.
--
-- With ACCEPTED_BODY set (texts separated by "|"), an answer is an acceptance only if it is
-- HTTP 200 and its body holds one of those texts: the JSON protocols answer a refusal with HTTP
-- 200 and a code in the body. The count of the others is printed as "Refused answers: N".

local PRELOAD_BYTES = 64 * 1024 * 1024

local requests = {}
local position = 1
local file = nil

-- One line as the request wrk sends, or nil for a line that is not one.
local function format(line)
  local method, target, rest = line:match("^(%u+)\t([^\t]*)\t(.*)$")
  if not method then return nil end
  local headers = {}
  local body = rest
  local tab = rest:find("\t", 1, true)
  if tab then
    body = rest:sub(1, tab - 1)
    for name, value in rest:sub(tab + 1):gmatch("([^\t:]+): ([^\t]*)") do
      headers[name] = value
    end
  end
  if body ~= "" then headers["Content-Type"] = "application/json" else body = nil end
  return wrk.format(method, target, headers, body)
end

local function load(path)
  for line in io.lines(path) do
    requests[#requests + 1] = format(line)
  end
end

-- The next request of a streamed file, from its start again once used up.
local function read_next()
  while true do
    local line = file:read("*l")
    if line == nil then
      file:seek("set", 0)
      line = file:read("*l")
    end
    local formatted = format(line)
    if formatted then return formatted end
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
  local path = os.getenv("REQUESTS")
  local threads = tonumber(os.getenv("THREADS") or "1")
  file = io.open(path, "r")
  local size = file:seek("end")
  if size <= PRELOAD_BYTES then
    file:close()
    file = nil
    load(path)
    position = math.floor(#requests * (offset - 1) / threads) + 1
  else
    file:seek("set", math.floor(size * (offset - 1) / threads))
    if offset > 1 then file:read("*l") end  -- the rest of a line another thread starts with
  end
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
  if file then return read_next() end
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
