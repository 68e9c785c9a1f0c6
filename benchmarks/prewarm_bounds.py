"""How low can cold starts go at a given budget on a trace? Evidence beyond one policy.

Three measurements on the scored window (last N days) of the Alibaba GenAI 2026 trace:

1. **Idle-time breakdown**: how many scored requests arrive after more than 10 / 20 / 60
   minutes without a request for their model. Those after a long idle are cold under any
   policy that cannot afford to keep rarely used models warm for hours.
2. **Client groups** (`groupId`): how many keep-alive:600 cold starts come from a group that
   was active on another model minutes before, and how well the model-to-model transitions
   learned so far rank the model the group asks for next (top-k accuracy).
3. **Hazard bound**: for every scored request, gradient-boosted trees predict the chance
   that the next request for its model falls in each of the following 1-minute bins (the
   discrete-time hazard), from what is known at the request: the model's recent gaps and
   counts, time of day and week, the client group's activity and history, and the request's
   own attributes (images, steps, prompt length). The model is kept warm in exactly the bins
   whose hazard clears a threshold, and the threshold is chosen **in hindsight** so the
   warm time spent is the budget. Trained out of sample (the 14 days before the window) and
   **in sample** (on the scored window itself, an optimistic oracle). Pre-warming ahead of a
   request after a long idle is not modelled (it only helps the long gaps of item 1).

    pip install '.[bench]'
    python benchmarks/prewarm_bounds.py [--trace FILE] [--budget 533] [--holdout-days 7]

Needs pandas and scikit-learn (the `bench` extra).
"""

from __future__ import annotations

import argparse
from collections import defaultdict, deque
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT.parent / "shared/data/traces/alibaba-genai-2026-lora_request_trace.csv"
DAY = 86400
BINS = 120  # minutes after a request the hazard is modelled for

MODEL_FEATURES = ["gap", "prev_gap", "c1h", "c1d", "c7d", "hour", "weekday"]
GROUP_FEATURES = ["group_gap", "group_requests", "group_model_requests", "group_models",
                  "group_same_model", "groups_10m", "groups_30m"]  # fmt: skip
REQUEST_FEATURES = ["images", "steps", "prompt_length"]


def read(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    df["t"] = pd.to_datetime(df.gmt_create).astype("int64") // 10**9
    df["m"] = df.checkpoint_model_version_id.fillna("unknown")
    df = df.sort_values(["t", "m", "groupId"], kind="stable").reset_index(drop=True)
    df["next_gap"] = (-df.groupby("m").t.diff(-1)).fillna(1e9)
    return df


def causal_features(df: pd.DataFrame) -> pd.DataFrame:
    """One row per request, from requests strictly before it (and its own attributes)."""
    recent: dict[str, deque[int]] = defaultdict(deque)
    last_m: dict[str, int] = {}
    prev_gap: dict[str, float] = {}
    last_g: dict[str, int] = {}
    g_requests: dict[str, int] = defaultdict(int)
    gm_requests: dict[tuple[str, str], int] = defaultdict(int)
    g_models: dict[str, set[str]] = defaultdict(set)
    g_last_model: dict[str, str] = {}
    m_groups: dict[str, dict[str, int]] = defaultdict(dict)
    rows = []
    for t, g, m, images, steps, plen in zip(
        df.t, df.groupId, df.m, df.num_images_per_prompt, df.num_inference_steps,
        df.prompt_length, strict=True,
    ):  # fmt: skip
        q = recent[m]
        while q and q[0] < t - 7 * DAY:
            q.popleft()
        arr = np.fromiter(q, dtype=np.int64, count=len(q))
        gap = t - last_m.get(m, t - 10**7)
        seen = m_groups[m].values()
        rows.append(
            {
                "gap": np.log1p(gap),
                "prev_gap": np.log1p(prev_gap.get(m, 1e7)),
                "c1h": int((arr >= t - 3600).sum()),
                "c1d": int((arr >= t - DAY).sum()),
                "c7d": len(arr),
                "hour": (t % DAY) / 3600,
                "weekday": (t // DAY + 3) % 7,
                "group_gap": np.log1p(t - last_g.get(g, t - 10**7)),
                "group_requests": g_requests[g],
                "group_model_requests": gm_requests[(g, m)],
                "group_models": len(g_models[g]),
                "group_same_model": float(g_last_model.get(g) == m),
                "groups_10m": sum(1 for x in seen if x >= t - 600),
                "groups_30m": sum(1 for x in seen if x >= t - 1800),
                "images": images,
                "steps": steps,
                "prompt_length": plen,
            }
        )
        q.append(t)
        prev_gap[m] = gap
        last_m[m] = last_g[g] = m_groups[m][g] = t
        g_requests[g] += 1
        gm_requests[(g, m)] += 1
        g_models[g].add(m)
        g_last_model[g] = m
    out = pd.DataFrame(rows)
    out["t"], out["next_gap"] = df.t.values, df.next_gap.values
    return out


def idle_breakdown(df: pd.DataFrame, start: int) -> dict[str, float]:
    gap = df.groupby("m").t.diff().fillna(np.inf)[df.t >= start]
    return {f"> {mins} min": float((gap > mins * 60).mean()) for mins in (10, 20, 60)}


def group_switches(df: pd.DataFrame, start: int) -> dict[str, float]:
    """keep-alive:600 cold starts whose group was active on another model within 10 min,
    and the top-k accuracy of the transitions learned so far for those requests."""
    trans: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    last_g: dict[str, int] = {}
    last_gm: dict[str, str] = {}
    last_m: dict[str, int] = {}
    cold = switched = 0
    ranks = []
    for t, g, m in zip(df.t, df.groupId, df.m, strict=True):
        prev = last_gm.get(g)
        if t >= start and t - last_m.get(m, -(10**12)) > 600:
            cold += 1
            if t - last_g.get(g, -(10**12)) <= 600 and prev is not None and prev != m:
                switched += 1
                row = trans[prev]
                order = sorted(row, key=lambda b: -row[b])
                ranks.append(order.index(m) if m in order else len(order) + 99)
        if prev is not None and prev != m:
            trans[prev][m] += 1
        last_g[g], last_gm[g], last_m[m] = t, m, t
    r = np.asarray(ranks)
    out = {"keepalive600_cold": float(cold), "group_switched_within_10m": float(switched)}
    out.update({f"top{k}": float((r < k).mean()) if r.size else 0.0 for k in (1, 3, 5)})
    return out


def hazard_bound(
    feats: pd.DataFrame, start: int, end: int, columns: list[str], in_sample: bool, budget_h: float
) -> tuple[float, float]:
    """(cold-start rate, warm hours) of hindsight-threshold hazard warming at `budget_h`."""
    test = feats[feats.t >= start]
    train = test if in_sample else feats[(feats.t < start) & (feats.t >= start - 14 * DAY)]

    def expand(sub: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(sub)
        b = np.tile(np.arange(BINS), n)
        idx = np.repeat(np.arange(n), BINS)
        gap = sub.next_gap.values[idx]
        x = np.hstack([sub[columns].values[idx], b[:, None]])
        return x, ((gap >= b * 60) & (gap < (b + 1) * 60)).astype(int), gap >= b * 60

    x, y, alive = expand(train)
    clf = HistGradientBoostingClassifier(
        max_iter=300, learning_rate=0.05, max_leaf_nodes=31, min_samples_leaf=200, random_state=0
    ).fit(x[alive], y[alive])
    hz = clf.predict_proba(expand(test)[0])[:, 1].reshape(len(test), BINS)
    gap = test.next_gap.values
    arrival_bin = np.minimum((gap // 60).astype(int), BINS)
    tail = np.minimum(end - test.t.values, gap)  # nothing is charged after the window

    def evaluate(lam: float) -> tuple[float, float]:
        warm = np.hstack([hz >= lam, np.zeros((len(test), 1), bool)])
        covered = warm[np.arange(len(test)), arrival_bin]
        full = (np.arange(BINS + 1)[None, :] < arrival_bin[:, None]) & warm
        cost = np.minimum(full.sum(1) * 60.0 + np.where(covered, gap - arrival_bin * 60, 0), tail)
        return 1 - covered.mean(), float(cost.sum()) / 3600

    lo, hi = 0.0, 1.0  # the smallest threshold whose spend fits the budget
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if evaluate(mid)[1] <= budget_h else (mid, hi)
    return evaluate(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, default=TRACE)
    ap.add_argument("--budget", type=float, default=533.0)
    ap.add_argument("--holdout-days", type=float, default=7.0)
    args = ap.parse_args()
    df = read(args.trace)
    end = int(df.t.max())
    start = int(end - args.holdout_days * DAY)
    print(
        "scored requests after an idle of",
        {k: f"{v:.1%}" for k, v in idle_breakdown(df, start).items()},
    )
    print("client groups:", {k: round(v, 3) for k, v in group_switches(df, start).items()})
    feats = causal_features(df)
    sets = {
        "model": MODEL_FEATURES,
        "model+group": MODEL_FEATURES + GROUP_FEATURES,
        "model+group+request": MODEL_FEATURES + GROUP_FEATURES + REQUEST_FEATURES,
    }
    print(f"\nhazard bound at {args.budget:g} warm model-hours (threshold chosen in hindsight)")
    print(f"{'features':<22}{'training':<14}{'cold %':>8}{'warm h':>9}")
    for name, cols in sets.items():
        for in_sample in (False, True):
            rate, hours = hazard_bound(feats, start, end, cols, in_sample, args.budget)
            where = "in sample" if in_sample else "14 d before"
            print(f"{name:<22}{where:<14}{100 * rate:>8.2f}{hours:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
