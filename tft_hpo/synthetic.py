"""A seeded synthetic monthly demand panel (agencies x SKUs) for the quickstart and the tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

_HOLIDAY_MONTHS = {12: "christmas", 4: "easter", 9: "independence"}


def make_demand_panel(n_agencies: int, n_skus: int, n_months: int, seed: int) -> pd.DataFrame:
    """Generate one row per (agency, sku, month) with demand driven by known features.

    Volume follows a per-series level, a per-agency trend, a per-SKU seasonality, price elasticity
    against the SKU's regular price, promotion and holiday uplifts, and log-normal noise. Columns:
    ``agency``, ``sku`` (static categoricals), ``time_idx``, ``date``, ``month``, ``promotion`` and
    ``holiday`` (known categoricals), ``price`` and ``discount`` (known reals), ``volume`` (target).
    """
    rng = np.random.default_rng(seed)
    agencies = [f"Agency_{i:02d}" for i in range(n_agencies)]
    skus = [f"SKU_{i:02d}" for i in range(n_skus)]
    t = np.arange(n_months)
    month = t % 12 + 1
    dates = pd.date_range("2015-01-01", periods=n_months, freq="MS")

    agency_level = rng.lognormal(mean=0.0, sigma=0.5, size=n_agencies)
    agency_trend = rng.normal(0.03, 0.05, size=n_agencies)
    sku_level = rng.lognormal(mean=4.0, sigma=0.6, size=n_skus)
    sku_amplitude = rng.uniform(0.1, 0.4, size=n_skus)
    sku_phase = rng.uniform(0, 12, size=n_skus)
    sku_price = rng.uniform(5.0, 20.0, size=n_skus)
    sku_elasticity = rng.uniform(1.0, 2.5, size=n_skus)
    holiday = np.array([_HOLIDAY_MONTHS.get(m, "-") for m in month])

    frames = []
    for a, agency in enumerate(agencies):
        for s, sku in enumerate(skus):
            regular = sku_price[s] * (1 + 0.01 * t) * rng.uniform(0.95, 1.05)
            promotion = rng.random(n_months) < 0.15
            discount = np.where(promotion, rng.uniform(10, 30, n_months), rng.uniform(0, 5, n_months))
            price = regular * (1 - discount / 100)
            season = 1 + sku_amplitude[s] * np.sin(2 * np.pi * (month + sku_phase[s]) / 12)
            trend = np.maximum(1 + agency_trend[a] * t / 12, 0.2)
            elasticity = (price / regular) ** (-sku_elasticity[s])
            uplift = np.where(promotion, 1.3, 1.0) * np.where(holiday != "-", 1.2, 1.0)
            noise = rng.lognormal(0.0, 0.1, n_months)
            volume = agency_level[a] * sku_level[s] * season * trend * elasticity * uplift * noise
            frames.append(
                pd.DataFrame(
                    {
                        "agency": agency,
                        "sku": sku,
                        "time_idx": t,
                        "date": dates,
                        "month": month.astype(str),
                        "promotion": np.where(promotion, "promo", "-"),
                        "holiday": holiday,
                        "price": price,
                        "discount": discount,
                        "volume": volume,
                    }
                )
            )
    panel = pd.concat(frames, ignore_index=True)
    for column in ("agency", "sku", "month", "promotion", "holiday"):
        panel[column] = panel[column].astype("category")
    return panel
