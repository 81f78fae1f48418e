"""xDS: from per-proxy Envoy resources to Envoy, over ADS.

``proxy`` (who is connected), ``resources`` (type URLs and ADS order), ``cache`` (versioned,
serialized-once snapshots), ``wire`` (responses from pre-encoded bytes), ``server`` (the grpc.aio
ADS servicer, SotW and delta) and ``status`` (push status per proxy and type). Only ``server``
imports grpc; this package root imports nothing, so ``translate`` stays free of it.
"""
