"""Where each v2 request runs: ``backend.EdgeBackend`` asks ``orchestrator.place``, then acts.

It keeps what the decision needs (``placement_state``), hands requests to site peers
(``peer_calls``), keeps hard examples, judges each model version's health for rollouts, and
exposes its decisions as Prometheus metrics.
"""
