"""The fleet: device registry and enrollment, certificates, site peers, desired state."""
