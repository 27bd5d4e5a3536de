"""Fraud scoring in bank branches: card transactions scored at the branch, doubts in the cloud.

The generator plays cardholders with habits (typical amount, usual merchant categories, one
device, a home area, day-time hours) and fraud on top of them, about 0.5% of transactions:
card-testing bursts of small online amounts, account takeover (new device, far away, larger
amount), amount spikes against the card's history, a shift to risky merchant categories and
night-time spending. Honest customers travel, change phones and buy big now and then, so no
single signal separates the classes. The branch computes each transaction's features from the
card's history it keeps, as a branch's scoring service would; chargebacks arrive later as
their own stream and label the lake's rows.

The data policy keeps card numbers on site: ``card_number`` is personal (pseudonymised with
the site's key before a batch leaves, so per-card joins still work in the lake) and
``cardholder`` restricted (never leaves).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from hybridai.demo.scenarios.base import Array, Holdout, Quality, Records, Site, Sizes, UseCase

CATEGORIES = (
    "grocery",
    "fuel",
    "restaurant",
    "pharmacy",
    "transport",
    "apparel",
    "online",
    "electronics",
    "jewelry",
    "travel",
)
CATEGORY_RISK = dict(
    zip(CATEGORIES, (0.1, 0.2, 0.1, 0.1, 0.1, 0.3, 0.6, 0.8, 0.9, 0.5), strict=True)
)
FEATURES = (
    "amount_log",
    "amount_ratio",
    "night",
    "new_device",
    "geo_km_log",
    "new_category",
    "category_risk",
    "velocity_10min",
    "small_amount",
)
ALERT_RATE = 0.01  # the share of transactions the fraud team can review
FRAUD_EVENTS_PER_TXN = 0.0024  # about 2 fraudulent transactions per event: ~0.5% fraud
START_TS = 1_767_225_600.0  # 2026-01-01, so the same seed gives the same records


def luhn_pan(rng: np.random.Generator) -> str:
    """A 16-digit card number that passes the Luhn check (test range, prefix 4000)."""
    digits = [4, 0, 0, 0, *rng.integers(0, 10, size=11).tolist()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


@dataclass
class _Card:
    pan: str
    holder: str
    typical: float  # median amount
    usual: tuple[str, ...]
    device: str
    night_owl: bool
    mean_log: float = 0.0
    n: int = 0
    seen_categories: set[str] = field(default_factory=set)
    seen_devices: set[str] = field(default_factory=set)
    recent: deque[float] = field(default_factory=deque)


def _cards(rng: np.random.Generator, count: int, prefix: str) -> list[_Card]:
    cards = []
    for i in range(count):
        usual = tuple(rng.choice(CATEGORIES[:6], size=3, replace=False).tolist())
        card = _Card(
            pan=luhn_pan(rng),
            holder=f"Holder {prefix}-{i:05d}",
            typical=float(rng.lognormal(3.4, 0.6)),
            usual=usual,
            device=f"{prefix}-dev-{i:05d}",
            night_owl=bool(rng.random() < 0.05),
        )
        card.mean_log = math.log(card.typical)
        card.n = 5  # a few months of history the branch already holds
        card.seen_categories = set(usual)
        card.seen_devices = {card.device}
        cards.append(card)
    return cards


def _features(
    card: _Card, ts: float, amount: float, category: str, device: str, km: float, hour: int
) -> dict[str, float]:
    while card.recent and card.recent[0] < ts - 600:
        card.recent.popleft()
    return {
        "amount_log": round(math.log1p(amount), 4),
        "amount_ratio": round(math.log(amount) - card.mean_log, 4),
        "night": float(hour < 6),
        "new_device": float(device not in card.seen_devices),
        "geo_km_log": round(math.log1p(km), 4),
        "new_category": float(category not in card.seen_categories),
        "category_risk": CATEGORY_RISK[category],
        "velocity_10min": float(len(card.recent)),
        "small_amount": float(amount < 5.0),
    }


def _remember(card: _Card, ts: float, amount: float, category: str, device: str) -> None:
    card.n += 1
    card.mean_log += (math.log(amount) - card.mean_log) / min(card.n, 50)
    card.seen_categories.add(category)
    card.seen_devices.add(device)
    card.recent.append(ts)


def _legit(card: _Card, rng: np.random.Generator) -> tuple[float, str, str, float, int]:
    category = rng.choice(card.usual) if rng.random() < 0.85 else rng.choice(CATEGORIES[:8])
    amount = float(card.typical * rng.lognormal(0.0, 0.7))
    if rng.random() < 0.03:  # a big purchase now and then
        amount *= float(rng.uniform(4, 12))
    if rng.random() < 0.02:  # parking, a coffee
        amount = float(rng.uniform(0.5, 4.5))
    device = card.device if rng.random() < 0.97 else f"{card.device}-new{rng.integers(1_000_000)}"
    km = float(rng.exponential(8.0)) if rng.random() < 0.95 else float(rng.uniform(200, 2500))
    night = (card.night_owl and rng.random() < 0.4) or rng.random() < 0.02
    hour = int(rng.integers(0, 6)) if night else int(np.clip(rng.normal(14, 3.5), 6, 23))
    return max(amount, 0.5), str(category), device, km, hour


def _fraud_event(
    card: _Card, rng: np.random.Generator
) -> list[tuple[float, float, str, str, float, int]]:
    """(delay_s, amount, category, device, km, hour) of each fraudulent transaction."""
    kind = rng.choice(
        ["testing", "takeover", "spike", "category", "night"], p=[0.3, 0.25, 0.2, 0.15, 0.1]
    )
    thief = f"thief-{rng.integers(1_000_000_000)}"
    hour = int(rng.integers(0, 24))
    if kind == "testing":
        n = int(rng.integers(3, 7))
        device = thief if rng.random() < 0.7 else card.device
        return [
            (
                30.0 * k,
                float(rng.uniform(0.5, 3.0)),
                "online",
                device,
                float(rng.uniform(0, 3000)),
                hour,
            )
            for k in range(n)
        ]
    if kind == "takeover":
        amount = card.typical * float(rng.uniform(2, 10))
        return [
            (0.0, amount, str(rng.choice(CATEGORIES)), thief, float(rng.uniform(300, 4000)), hour)
        ]
    if kind == "spike":
        amount = card.typical * float(rng.uniform(6, 25))
        return [
            (
                0.0,
                amount,
                str(rng.choice(card.usual)),
                card.device,
                float(rng.exponential(10)),
                hour,
            )
        ]
    if kind == "category":
        amount = card.typical * float(rng.uniform(1.5, 6))
        category = str(rng.choice(["electronics", "jewelry", "travel"]))
        return [(0.0, amount, category, card.device, float(rng.exponential(30)), hour)]
    amount = card.typical * float(rng.uniform(2, 8))
    device = thief if rng.random() < 0.5 else card.device
    return [
        (
            0.0,
            amount,
            str(rng.choice(CATEGORIES)),
            device,
            float(rng.exponential(50)),
            int(rng.integers(1, 5)),
        )
    ]


def transactions(
    seed: int, count: int, branch: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``count`` transactions of one branch, with their features, and the fraud's chargebacks.

    The same arguments always give the same records.
    """
    rng = np.random.default_rng(seed)
    cards = _cards(rng, max(count // 40, 10), branch)
    out: list[dict[str, Any]] = []
    chargebacks: list[dict[str, Any]] = []
    pending: list[tuple[float, _Card, tuple[float, float, str, str, float, int]]] = []
    ts = START_TS
    while len(out) < count:
        ts += float(rng.exponential(20.0))
        if pending and pending[0][0] <= ts:
            at, card, (_, amount, category, device, km, hour) = pending.pop(0)
            fraud = True
        else:
            at = ts
            card = cards[int(rng.integers(len(cards)))]
            if rng.random() < FRAUD_EVENTS_PER_TXN:
                events = _fraud_event(card, rng)
                pending += [(ts + e[0], card, e) for e in events[1:]]
                pending.sort(key=lambda p: p[0])
                _, amount, category, device, km, hour = events[0]
                fraud = True
            else:
                amount, category, device, km, hour = _legit(card, rng)
                fraud = False
        txn_id = f"{branch}-{len(out):07d}"
        record = {
            "txn_id": txn_id,
            "ts": round(at, 3),
            "card_number": card.pan,
            "cardholder": card.holder,
            "branch": branch,
            "merchant_category": category,
            "amount": round(amount, 2),
            "payment_device": device,
            "geo_km": round(km, 1),
            "local_hour": hour,
            **_features(card, at, amount, category, device, km, hour),
        }
        _remember(card, at, amount, category, device)
        out.append(record)
        if fraud:
            chargebacks.append(
                {"txn_id": txn_id, "ts": round(at + 14 * 86400, 3), "reason": "fraud"}
            )
    return out, chargebacks


def training_query() -> str:
    """Each transaction labelled by whether a chargeback for it came in (SQL over the lake)."""
    columns = ", ".join(f"t.{f}" for f in FEATURES)
    return (
        f"SELECT {columns}, t.card_number, "
        "CAST(c.txn_id IS NOT NULL AS INTEGER) AS label "
        "FROM transactions t LEFT JOIN (SELECT DISTINCT txn_id FROM chargebacks) c "
        "ON t.txn_id = c.txn_id ORDER BY t.txn_id"
    )


def at_alert_rate(y: Array, scores: Array, rate: float = ALERT_RATE) -> tuple[float, float]:
    """Precision and recall when the top ``rate`` of transactions by score are reviewed."""
    flagged = max(1, round(rate * len(scores)))
    top = np.argsort(-scores, kind="stable")[:flagged]
    hits = float(y[top].sum())
    return hits / flagged, hits / max(float(y.sum()), 1.0)


class Fraud(UseCase):
    name = "fraud"
    title = "fraud scoring in branches"
    model = "fraud"
    sites = (Site("branch-1", "branch-north"), Site("branch-2", "branch-south"))
    target_cloud_share = 0.05
    edge_budget_ms = 20.0
    sizes = {
        "quick": Sizes(train_units=12_000, live_requests=400, holdout_units=20_000),
        "full": Sizes(train_units=30_000, live_requests=2_000, holdout_units=40_000),
    }

    def records(self, seed: int, units: int, site: Site) -> Records:
        txns, chargebacks = transactions(seed, units, site.site)
        return {"transactions": txns, "chargebacks": chargebacks}

    def policies(self) -> dict[str, dict[str, Any]]:
        return {
            "transactions": {
                "classification": "internal",
                "fields": {"card_number": "personal", "cardholder": "restricted"},
                "personal": "pseudonymise",
            }
        }

    def training_spec(self, seed: int) -> dict[str, Any]:
        return {
            "model_name": self.model,
            "query": training_query(),
            "features": list(FEATURES),
            "label": "label",
            "group": "card_number",  # held-out rows come from cards training never saw
            "edge_family": "tree",
            "cloud_family": "gbm",
            "seed": seed,
        }

    def holdout(self, seed: int, units: int) -> Holdout:
        txns, chargebacks = transactions(seed, units, "branch-holdout")
        fraud = {c["txn_id"] for c in chargebacks}
        x = np.asarray([[t[f] for f in FEATURES] for t in txns], dtype=np.float32)
        y = np.asarray([t["txn_id"] in fraud for t in txns], dtype=np.int64)
        return Holdout(x, y)

    def quality(self, holdout: Holdout, scores: Array) -> Quality:
        precision, recall = at_alert_rate(holdout.y, scores)
        return Quality(
            "pr_auc",
            float(average_precision_score(holdout.y, scores)),
            {
                "roc_auc": float(roc_auc_score(holdout.y, scores)),
                "f1": float(f1_score(holdout.y, scores >= 0.5, zero_division=0)),
                "precision_at_alert_rate": precision,
                "recall_at_alert_rate": recall,
                "alert_rate": ALERT_RATE,
                "fraud_rate": float(holdout.y.mean()),
            },
        )

    def lake_checks(self, records: Records) -> dict[str, str]:
        return {
            "raw card numbers in the lake": (
                "SELECT count(*) FROM transactions WHERE card_number NOT LIKE 'ps:%' "
                "OR regexp_matches(card_number, '^[0-9 -]{13,23}$')"
            ),
        }
