-- Argo CD health of a llmbatch.io BatchSweep: Healthy when Complete, Degraded when Failed
-- (past its failure budget), Suspended while spec.suspend holds, Progressing otherwise.
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

local function is_true(c)
  return c ~= nil and c.status == "True"
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
  hs.message = "Waiting for the operator to pick up the BatchSweep"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local failed = condition("Failed")
if is_true(failed) then
  hs.status = "Degraded"
  hs.message = describe("Failed", failed)
  return hs
end
local complete = condition("Complete")
if is_true(complete) then
  hs.status = "Healthy"
  hs.message = describe("Complete", complete)
  return hs
end
local suspended = condition("Suspended")
if is_true(suspended) or (obj.spec ~= nil and obj.spec.suspend == true) then
  hs.status = "Suspended"
  hs.message = describe("Suspended", suspended)
  return hs
end
hs.status = "Progressing"
hs.message = obj.status.phase or "Running"
return hs
