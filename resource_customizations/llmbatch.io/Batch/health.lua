-- Argo CD health of a llmbatch.io Batch: Healthy once Succeeded, Degraded when it ended
-- Failed, Expired or Cancelled (or the gateway refuses the key), Progressing otherwise (a
-- stalled upstream batch too: its message says so).
local hs = {}

local function condition(type)
  if obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

-- "Phase (Reason): message", or as much of it as the condition has.
local function describe(phase, c)
  if c == nil or c.reason == nil then
    return phase
  end
  if c.message == nil or c.message == "" then
    return phase .. " (" .. c.reason .. ")"
  end
  return phase .. " (" .. c.reason .. "): " .. c.message
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the Batch"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local phase = obj.status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = describe(phase, condition("Complete"))
  return hs
end
if phase == "Failed" or phase == "Expired" or phase == "Cancelled" then
  hs.status = "Degraded"
  hs.message = describe(phase, condition("Failed"))
  return hs
end

local ready = condition("GatewayReady")
if ready ~= nil and ready.status == "False" and ready.reason == "GatewayUnauthorized" then
  hs.status = "Degraded"
  hs.message = describe(phase, ready)
  return hs
end

-- Queued (Admitted=False: waiting for its input or for room on the gateway) or running.
local admitted = condition("Admitted")
if admitted ~= nil and admitted.status == "False" then
  hs.status = "Progressing"
  hs.message = describe(phase, admitted)
  return hs
end
-- Stalled upstream: never Degraded by itself, but the message says so.
local progressing = condition("Progressing")
if progressing ~= nil and progressing.status == "False" then
  hs.status = "Progressing"
  hs.message = describe(phase, progressing)
  return hs
end
hs.status = "Progressing"
local counts = obj.status.requestCounts
if counts ~= nil and counts.total ~= nil and counts.total > 0 then
  local done = (counts.completed or 0) + (counts.failed or 0)
  hs.message = string.format("%s: %d of %d requests done, %d failed", phase, done, counts.total, counts.failed or 0)
else
  hs.message = phase
end
return hs
