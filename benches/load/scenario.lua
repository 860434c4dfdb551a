-- wrk script for the load-test scenario (benches/load/run.sh). The mode and
-- credentials come from the environment; citizen IDs are taken in turn from
-- the file LGSP_LOAD_IDS. At the end it prints one machine-readable line:
-- RESULT <requests/s> <p50 ms> <p90 ms> <p99 ms> <requests> <errors>
local mode = os.getenv("LGSP_LOAD_MODE")
local token = os.getenv("LGSP_LOAD_TOKEN")
local form = os.getenv("LGSP_LOAD_FORM") or "tk1_ts"
local purpose = os.getenv("LGSP_LOAD_PURPOSE") or "health_insurance_enrolment"

local ids = {}
for line in io.lines(os.getenv("LGSP_LOAD_IDS")) do
  ids[#ids + 1] = line
end
local n = 0
-- With LGSP_LOAD_DELAY_MS, each connection waits that long between its
-- requests: a paced load well below saturation, for latency.
local pause = tonumber(os.getenv("LGSP_LOAD_DELAY_MS") or "0")
if pause > 0 then
  delay = function() return pause end
end

local json = { ["Content-Type"] = "application/json" }

request = function()
  n = n + 1
  local id = ids[(n % #ids) + 1]
  if mode == "population" then
    return wrk.format("GET", "/api/v1/cong-dan/" .. id, { ["Authorization"] = "Bearer " .. token })
  elseif mode == "household" then
    return wrk.format("GET", "/api/v1/cong-dan/" .. id .. "/ho-gia-dinh", { ["Authorization"] = "Bearer " .. token })
  elseif mode == "insurance" then
    return wrk.format("POST", "/bhxh/api/v1/tra-cuu-the",
      { ["X-BHXH-Token"] = token, ["Content-Type"] = "application/json" },
      '{"soDinhDanh":"' .. id .. '"}')
  elseif mode == "exchange" then
    return wrk.format("POST", "/v1/exchange/population/citizen",
      { ["Authorization"] = "Bearer " .. token, ["X-Purpose"] = "residence_change",
        ["Content-Type"] = "application/json" },
      '{"citizen_id":"' .. id .. '"}')
  elseif mode == "prefill" then
    return wrk.format("POST", "/v1/prefill",
      { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" },
      '{"form":"' .. form .. '","citizen_id":"' .. id .. '","purpose":"' .. purpose .. '"}')
  end
  error("LGSP_LOAD_MODE must be population, household, insurance, exchange or prefill")
end

done = function(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + e.status
  io.write(string.format("RESULT %.1f %.3f %.3f %.3f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    summary.requests, errors))
end
