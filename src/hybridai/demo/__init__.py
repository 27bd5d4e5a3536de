"""The demo: a predictive-maintenance plant and the local fleet behind ``hybridai demo``."""
