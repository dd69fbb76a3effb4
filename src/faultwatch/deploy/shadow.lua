-- faultwatch's shadow copy for HAProxy 2.6 (loaded by the router that `faultwatch deploy`
-- writes). A live request whose transaction variable txn.shadow_url is set is copied, after
-- the router has read its body, to that URL by a task of its own: the live request goes on at
-- once and its answer never waits for the copy. The copy carries the live request's
-- X-Request-ID and `X-Faultwatch-Role: shadow`; the shadow server logs its answer, which goes
-- nowhere else. At most FAULTWATCH_SHADOW_MAX_INFLIGHT copies wait at once (the router's config sets it);
-- above that, and for bodies the router did not hold whole, the copy is dropped and counted.
-- `shadow stats` on the router's admin socket prints the counters as JSON.
-- txn.shadow_url may list several base URLs, comma-separated (the staged colour's replicas):
-- the copies go to each in turn.

local stats = {sent = 0, answered = 0, failed = 0, dropped_busy = 0, dropped_body = 0,
               inflight = 0}
-- the router's config sets these with `setenv` in its global section
local max_inflight = tonumber(os.getenv("FAULTWATCH_SHADOW_MAX_INFLIGHT") or "") or 32
local timeout_ms = tonumber(os.getenv("FAULTWATCH_SHADOW_TIMEOUT_MS") or "") or 10000
local copies = 0  -- which replica gets the next copy

local function next_target(urls)
  local targets = {}
  for u in string.gmatch(urls, "[^,]+") do targets[#targets + 1] = u end
  copies = copies + 1
  return targets[(copies - 1) % #targets + 1]
end

core.register_action("faultwatch_shadow", {"http-req"}, function(txn)
  local url = txn:get_var("txn.shadow_url")
  if url == nil then return end
  local body = txn.sf:req_body() or ""
  local declared = tonumber(txn.sf:req_hdr("content-length") or "")
  if declared == nil or declared ~= #body then
    stats.dropped_body = stats.dropped_body + 1  -- chunked, or longer than the router's buffer
    return
  end
  if stats.inflight >= max_inflight then
    stats.dropped_busy = stats.dropped_busy + 1
    return
  end
  local rid = txn.sf:req_hdr("x-request-id") or ""
  local target = next_target(url) .. txn.sf:path()
  stats.inflight = stats.inflight + 1
  stats.sent = stats.sent + 1
  core.register_task(function()
    local ok, res = pcall(function()
      local hc = core.httpclient()
      return hc:post{url = target, body = body, timeout = timeout_ms,
        headers = {["X-Request-ID"] = {rid}, ["X-Faultwatch-Role"] = {"shadow"},
                   ["Content-Type"] = {"application/json"},
                   ["Content-Length"] = {tostring(#body)}}}
    end)
    stats.inflight = stats.inflight - 1
    if ok and res ~= nil and res.status == 200 then
      stats.answered = stats.answered + 1
    else
      stats.failed = stats.failed + 1
    end
  end)
end, 0)

core.register_cli({"shadow", "stats"}, "shadow stats : faultwatch's shadow copy counters (JSON)",
  function(applet)
    local parts = {}
    for _, k in ipairs({"sent", "answered", "failed", "dropped_busy", "dropped_body",
                        "inflight"}) do
      parts[#parts + 1] = string.format('"%s": %d', k, stats[k])
    end
    parts[#parts + 1] = string.format('"max_inflight": %d', max_inflight)
    applet:send("{" .. table.concat(parts, ", ") .. "}\n")
  end)
