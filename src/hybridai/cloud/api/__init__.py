"""The cloud's REST API: one thin route module per resource, included by the app in this order."""

from fastapi import APIRouter

from hybridai.cloud.api import (
    audit,
    certificates,
    compliance,
    deferral,
    fleet,
    fleet_config,
    lake,
    lifecycle,
    models,
    operations,
    policies,
    remote_tiers,
    rollouts,
    site_keys,
    streams,
    sync,
    training,
    users,
)

ROUTERS: tuple[APIRouter, ...] = (
    fleet.router,  # enrollment, devices, status, desired state
    fleet_config.router,  # edge settings per fleet, site, tag, device
    certificates.router,  # device certificate renewal, revocation
    site_keys.router,  # API keys of a site's LAN clients
    sync.router,
    models.router,
    deferral.router,  # a version's learned deferral router
    remote_tiers.router,  # models another v2 server serves for the cloud
    training.router,
    lifecycle.router,  # retraining policies, bundles, training rows
    rollouts.router,
    lake.router,
    policies.router,  # data policies, lake retention
    streams.router,  # stream schemas
    compliance.router,
    users.router,  # login, users, MFA, API tokens
    audit.router,
    operations.router,  # telemetry series, alerts
)
