"""The models an edge runs: reconciled to desired state, started from a bundle, drift."""
