"""Prototyping: simulate a hybrid architecture with the live policy code, and assess a site.

``scenario`` reads and validates the file that describes sites, links, cloud, models, workloads
and policies; ``simulator`` runs it with SimPy, placing every request with the same
``orchestrator`` functions the edge router calls; ``report`` turns the runs into numbers,
Parquet and an HTML page; ``assessment`` recommends edge, cloud or hybrid per workload.
Imports neither ``edge/`` nor ``cloud/``.
"""
