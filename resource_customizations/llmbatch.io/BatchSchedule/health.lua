-- Argo CD health of a llmbatch.io BatchSchedule: Suspended while spec.suspend holds, Degraded
-- when its schedule or template cannot be used or its last finished run did not succeed,
-- Healthy otherwise (a schedule is healthy between runs: its runs have health of their own).
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

local function describe(fallback, c)
  if c == nil or c.reason == nil then
    return fallback
  end
  if c.message == nil or c.message == "" then
    return c.reason
  end
  return c.reason .. ": " .. c.message
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the BatchSchedule"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local suspended = condition("Suspended")
if (suspended ~= nil and suspended.status == "True") or (obj.spec ~= nil and obj.spec.suspend == true) then
  hs.status = "Suspended"
  hs.message = describe("Suspended", suspended)
  return hs
end
local ready = condition("Ready")
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe("Not ready", ready)
  return hs
end
local last = obj.status.lastResult
if last ~= nil and last ~= "Succeeded" then
  hs.status = "Degraded"
  hs.message = "The last run ended " .. last
  return hs
end
hs.status = "Healthy"
if last == nil then
  hs.message = "No run has finished yet"
else
  hs.message = "The last run succeeded"
end
return hs
