"""Operations in the cloud: device telemetry as time series, and alerts over it."""
