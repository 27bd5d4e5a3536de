"""The model registry: versions, stages, signed artifacts, bundles and rollouts."""
