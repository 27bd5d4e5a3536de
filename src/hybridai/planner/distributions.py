"""Distributions a scenario describes times and sizes with, drawn in bulk for speed.

Each is given by its mean (and coefficient of variation where it has a spread), because that is
what people measure: a service time of 4 ms give or take 30 % is ``lognormal, mean 4, cv 0.3``.
``empirical`` replays measured samples (e.g. a registry model's timed runs).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

FloatArray = npt.NDArray[np.float64]


class Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["constant", "exponential", "lognormal", "normal", "uniform", "empirical"]
    value: float | None = Field(default=None, ge=0)  # constant
    mean: float | None = Field(default=None, gt=0)  # exponential, lognormal, normal
    cv: float = Field(default=0.0, ge=0)  # lognormal, normal: std / mean
    low: float | None = Field(default=None, ge=0)  # uniform
    high: float | None = Field(default=None, ge=0)
    samples: list[float] = Field(default_factory=list)  # empirical

    @model_validator(mode="after")
    def _parameters(self) -> Dist:
        need = {
            "constant": ("value",),
            "exponential": ("mean",),
            "lognormal": ("mean",),
            "normal": ("mean",),
            "uniform": ("low", "high"),
            "empirical": (),
        }[self.kind]
        missing = [name for name in need if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} distribution needs {' and '.join(missing)}")
        if self.kind == "uniform" and (self.high or 0.0) < (self.low or 0.0):
            raise ValueError("uniform: high must not be below low")
        if self.kind == "empirical" and not self.samples:
            raise ValueError("an empirical distribution needs samples")
        return self

    @property
    def expected(self) -> float:
        """The distribution's mean."""
        if self.kind == "constant":
            return float(self.value or 0.0)
        if self.kind == "uniform":
            return ((self.low or 0.0) + (self.high or 0.0)) / 2
        if self.kind == "empirical":
            return float(np.mean(self.samples))
        return float(self.mean or 0.0)

    def draw(self, rng: np.random.Generator, n: int) -> FloatArray:
        """``n`` independent values, never negative."""
        if self.kind == "constant":
            return np.full(n, float(self.value or 0.0))
        if self.kind == "exponential":
            return rng.exponential(self.mean or 0.0, n)
        if self.kind == "lognormal":
            mean = self.mean or 0.0
            if self.cv == 0.0:
                return np.full(n, mean)
            sigma2 = math.log1p(self.cv**2)
            mu = math.log(mean) - sigma2 / 2
            return rng.lognormal(mu, math.sqrt(sigma2), n)
        if self.kind == "normal":
            mean = self.mean or 0.0
            out: FloatArray = np.maximum(rng.normal(mean, mean * self.cv, n), 0.0)
            return out
        if self.kind == "uniform":
            return rng.uniform(self.low or 0.0, self.high or 0.0, n)
        return rng.choice(np.asarray(self.samples, dtype=np.float64), n)

    def quantile(self, q: float, rng_seed: int = 0, n: int = 20_000) -> float:
        """The q-quantile (by sampling where there is no closed form)."""
        if self.kind == "constant":
            return float(self.value or 0.0)
        return float(np.quantile(self.draw(np.random.default_rng(rng_seed), n), q))
