-- Auto-route every stable MR series (and reviewed SEGs from the viewer) to the LGE node.
-- Orthanc 1.10's SendToModality fails on a series ("Unable to read attachment"): use the REST route.
function OnStableSeries(seriesId, tags, metadata)
  local m = tags['Modality']
  if m == 'MR' or m == 'SEG' then
    RestApiPost('/modalities/lgenode/store', seriesId)
  end
end
