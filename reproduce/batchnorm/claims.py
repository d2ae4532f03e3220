"""The paper's claims on linear models and fully connected nets (Sections 3 and 5, Figures 1-2, Tables 1, 6, 7,
App. F), each with its threshold named beside the paper's number; CIFAR and ImageNet are in claims_cifar.py.

Every function takes the merged results table and returns one Verdict (rules.py says how differences are
judged); judge(tables, run) returns them all, in the paper's order.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from reproduce.batchnorm import claims_cifar, linear, rules
from reproduce.batchnorm.mlp import DIM_WEIGHT_DECAY
from reproduce.batchnorm.stats import Arm, Difference, arm, difference
from tfadv.experiments.run import Run
from tfadv.experiments.tables import select
from tfadv.experiments.verdicts import (NOT_MEASURED, Claim, Verdict, binomial_se, inconclusive, judge, not_measured,
                                        too_few, untrained)

# --- Figure 1 -------------------------------------------------------------------------------------------------
TOY_TILT = Claim("Fig. 1: batch-normalised GD tilts the toy's boundary; plain GD does not",
                 "θ_BNGD = 66.7°, θ_GD ≈ 0°")
TOY_THETA_BN, TOY_ANGLE_TOLERANCE = 66.7, 10.0   # degrees: "reproduced" within 10° of the paper's angle
TILT_MARGIN = 20.0    # degrees: tfadv's "tilted": at least this much more than the unnormalised model
# --- Table 1 --------------------------------------------------------------------------------------------------
#: The paper's Table 1 values, GD's angle among them, were not available: its text says "BN causes tilting" and
#: the caption that BNGD "yields a tilted decision boundary"; only Fig. 1's toy gives GD's angle (≈ 0°). So the
#: claim is judged as a comparison with the unnormalised models, and GD's own angle is shown, not judged.
TILT_BN = Claim("Table 1: BN causes the tilt: BNGD's linear 3-vs-7 boundary is more tilted w.r.t. the "
                "nearest-centroid classifier than GD's and GD + WD's",
                "\"BN causes tilting\" (affine F and T); θ values, GD's included, not available")
TILT_AFFINE = Claim("Table 1: the tilt is unaffected by BN's affine parameters (γ = 1, β = 0 fixed vs learned)",
                    "\"unaffected by the parameters γ and β\"")
AFFINE_TOLERANCE = 10.0  # degrees: fixed and learned affine count as "the same tilt" within this
NC_FGSM = Claim("Sec. 3: the nearest-centroid classifier is far more robust to FGSM ε = 1/4 than a trained "
                "linear model", "≈ 40% vs ≈ 0% (the 2018 code: 39.60%)")
NC_GAP = 0.20         # tfadv's "far more robust": 20 points (the paper's gap is 40)
TILT_WIDTH = 28       # judged at MNIST's width: the paper's input dimension (the digits stand-in is upscaled)
# --- Tables 6-7, App. F ---------------------------------------------------------------------------------------
BN_NOISE = Claim("Table 6: one BN layer lowers the MLP's accuracy under N(0, 1) noise, at every width",
                 "−16.4 ± 0.4 pts at √d = 28; 13–16 pts less at all sizes")
BN_BIM = Claim("Table 6: one BN layer lowers the MLP's BIM-ℓ∞ (ε = 0.1) accuracy, at every width",
               "−43.8 ± 0.5 pts at √d = 28; ≈ 40 pts less at all sizes")
PAPER_BN_NOISE, PAPER_BN_BIM = -0.164, -0.438
WD_CLEAN_BN = Claim("Table 7: with BN, weight decay (λ = 0.01) lowers the MLP's clean accuracy",
                    "−1.69 ± 0.01 pts (\"a test error increase of 1.69 ± 0.01%\")")
PAPER_WD_CLEAN_BN = -0.0169
WD_CLEAN_PLAIN = Claim("Table 7: without BN, weight decay (λ = 0.01) raises the MLP's clean accuracy",
                       "+1.39 ± 0.04 pts")
PAPER_WD_CLEAN_PLAIN = 0.0139
WD_BIM = Claim("Table 7: weight decay raises the unnormalised MLP's BIM accuracy", "+21.7 ± 0.4 pts (λ = 0.01)")
PAPER_WD_BIM = 0.217
BN_NO_WD = Claim("Table 7: with BN, removing weight decay lowers BIM accuracy at the larger widths",
                 "−79.3 ± 0.3 pts (56), −81.2 ± 0.2 pts (84)")
PAPER_BN_NO_WD = {2: -0.793, 3: -0.812}
LINEAR_WD_FLAT = Claim("App. F: with weight decay, the linear model's adversarial accuracy does not fall as √d "
                       "grows", "ratios to √d = 28: 0.98 ± 0.01 / 0.96 ± 0.04 / 1.00 ± 0.03 at 2x / 3x / 4x")
LINEAR_PLAIN_FALLS = Claim("App. F: without regularisation, the linear model's adversarial loss grows like √d "
                           "(judged here by its consequence, the BIM accuracy falling as √d grows: the cells do "
                           "not record the loss)", "loss ∝ √d (Table 13; values not available)")
RATIO_TOLERANCE = 0.05  # "does not fall": every ratio at least 1 - this (the paper's lowest is 0.96)
# --- Figure 2 -------------------------------------------------------------------------------------------------
#: The paper: "Robustness decreases with the batch size for depths that maintain a reasonable test accuracy ...
#: This tension between clean accuracy and robustness as a function of the batch size is not observed in
#: unnormalized networks". A fall in BIM accuracy that only follows a fall in clean accuracy is no tension, so
#: the rule judges BIM − clean accuracy (what the attack takes away), and BIM alone must fall too.
DB_BATCH = Claim("Fig. 2: with BN, robustness falls as the batch grows while clean accuracy holds (depths ≤ 25 "
                 "that train); no such tension without BN",
                 "qualitative (heat maps); 3 seeds per the authors' blog, not the paper")
DB_MAX_DEPTH, REASONABLE_CLEAN = 25, 0.80  # "depths that maintain a reasonable test accuracy, ~25 or fewer"
DB_LIMIT = Claim("Fig. 2: BN limits the trainable depth, a limit that grows with the batch size (Yang et al.)",
                 "dashed line (values not given); the authors' blog formula gives 15.8 (B = 4) … 41.7 "
                 "(B = 1024) layers")
TRAINS_FRACTION = 0.8  # "most": at least this share of the nets on each side of the limit behave as predicted


def data_used(run: Run, experiment: str) -> str:
    """What `experiment`'s numbers were measured on in this run's profile, and the paper's data where it differs."""
    p = run.profile
    if p.data != "digits":
        return {"toy": "the paper's two 2-D Gaussians", "tilting": "MNIST 3 vs 7",
                "dimension": f"MNIST upscaled to widths {', '.join(str(28 * k) for k in p.dimension.scales)}",
                "depth_batch": "MNIST", "cifar": "CIFAR-10 (also CIFAR-10.1 v6, CIFAR-10-C)",
                "imagenet": "ImageNetV2 matched-frequency"}.get(experiment, "the paper's data")
    sizes = " and ".join(f"{w}x{w}" for w in (8, *p.tilting.image_sizes))
    return {"toy": "the paper's two 2-D Gaussians",
            "tilting": f"scikit-learn's 8x8 digits, 3 vs 7, at {sizes}; the paper: MNIST 3 vs 7, 28x28",
            "dimension": f"scikit-learn's 8x8 digits upscaled to widths "
                         f"{', '.join(str(8 * k) for k in p.dimension.scales)}; the paper: MNIST, widths 28 to 112",
            "depth_batch": "scikit-learn's 8x8 digits; the paper: MNIST",
            "cifar": f"scikit-learn's 8x8 digits upsampled to {p.cifar.image_size}x{p.cifar.image_size}, one channel; "
                     "the paper: CIFAR-10, 32x32 colour",
            "imagenet": "ImageNetV2 matched-frequency"}.get(experiment, "scikit-learn's digits")


def paper_scale(run: Run) -> bool:
    """Only the paper profile, uncapped, is compared with the paper's magnitudes."""
    return run.profile_name == "paper" and run.limit is None


def part(table: pd.DataFrame, experiment: str) -> pd.DataFrame:
    return table[table["experiment"] == experiment] if "experiment" in table else table.iloc[0:0]


def chance_check(*arms: Arm, classes: int) -> str | None:
    return untrained([v for a in arms for v in a.values], classes)


def saturated_check(*arms: Arm) -> str | None:
    return rules.saturated_arms(*arms)


# ------------------------------------------------------------------------------------------- Figure 1, Table 1
def toy_tilt(table: pd.DataFrame) -> Verdict:
    t = part(table, "toy")
    bn, gd = arm(t, "tilt_deg", variant="bngd"), arm(t, "tilt_deg", variant="gd")
    if bn.n == 0 or gd.n == 0:
        return not_measured(TOY_TILT)
    clean = [arm(t, "clean", variant=v) for v in ("bngd", "gd")]
    gap = difference(bn, gd)
    tilted = gap.delta > TILT_MARGIN + rules.Z * gap.se
    close = abs(bn.mean - TOY_THETA_BN) <= TOY_ANGLE_TOLERANCE and gd.mean <= TOY_ANGLE_TOLERANCE
    return judge(TOY_TILT, f"θ_BNGD = {bn.mean:.1f}°, θ_GD = {gd.mean:.1f}° (n={gap.seeds})",
                 holds=tilted and close and gap.seeds >= rules.MIN_SEEDS, partly=tilted,
                 rule=f"tilted: θ_BNGD − θ_GD > {TILT_MARGIN:g}° + {rules.Z:g} s.e.; reproduced also needs θ_BNGD "
                      f"within {TOY_ANGLE_TOLERANCE:g}° of {TOY_THETA_BN}°, θ_GD ≤ {TOY_ANGLE_TOLERANCE:g}° and "
                      f"{rules.MIN_SEEDS} seeds",
                 unless=[chance_check(*clean, classes=2), rules.seeds_check(gap.seeds), tilt_noise([gap])])


def tilt_noise(gaps: list[Difference]) -> str | None:
    """Why the noise could flip a "tilted by more than TILT_MARGIN" verdict on these θ differences, or None when
    every one is clearly tilted or one is clearly not."""
    if all(g.delta > TILT_MARGIN + rules.Z * g.se for g in gaps) or any(
            g.delta + rules.Z * g.se < TILT_MARGIN for g in gaps):
        return None
    return (f"within the noise: {', '.join(g.text(1.0, '°') for g in gaps)} neither clearly beyond "
            f"{TILT_MARGIN:g}° + {rules.Z:g} s.e. nor {rules.Z:g} s.e. below {TILT_MARGIN:g}°")


def tilt_table(table: pd.DataFrame) -> tuple[pd.DataFrame, int | None]:
    """Table 1's rows at the width the claims judge (MNIST's 28, else the widest measured)."""
    t = part(table, "tilting")
    if t.empty:
        return t, None
    widths = sorted(set(t["width"].astype(int)))
    width = TILT_WIDTH if TILT_WIDTH in widths else widths[-1]
    return select(t, width=width), width


def tilt_bn(table: pd.DataFrame) -> Verdict:
    t, width = tilt_table(table)
    theta = {v: arm(t, "tilt_deg", variant=v) for v in linear.TILT_VARIANTS}
    if any(a.n == 0 for a in theta.values()):
        return not_measured(TILT_BN)
    gaps = [difference(theta[bn], theta[plain]) for bn in ("bngd_fixed", "bngd_learned") for plain in ("gd", "wd")]
    tilted = all(g.delta > TILT_MARGIN + rules.Z * g.se for g in gaps)
    seeds = min(g.seeds for g in gaps)
    measured = ", ".join(f"{v} {a.mean:.1f}°" for v, a in theta.items()) + f" (width {width}, n={seeds})"
    return judge(TILT_BN, measured, holds=tilted and seeds >= rules.MIN_SEEDS, partly=tilted,
                 rule=f"each BNGD θ exceeds GD's and WD's by > {TILT_MARGIN:g}° + {rules.Z:g} s.e.; "
                      f"{rules.MIN_SEEDS} seeds for reproduced; GD's and WD's own θ are shown, not judged (the "
                      "paper's are not available)",
                 unless=[chance_check(*[arm(t, "clean", variant=v) for v in linear.TILT_VARIANTS], classes=2),
                         rules.seeds_check(seeds), tilt_noise(gaps)])


def tilt_affine(table: pd.DataFrame) -> Verdict:
    t, width = tilt_table(table)
    fixed, learned, gd = (arm(t, "tilt_deg", variant=v) for v in ("bngd_fixed", "bngd_learned", "gd"))
    if fixed.n == 0 or learned.n == 0:
        return not_measured(TILT_AFFINE)
    both_tilted = min(fixed.mean, learned.mean) - gd.mean > TILT_MARGIN
    gap = difference(fixed, learned)
    return judge(TILT_AFFINE, f"θ fixed {fixed.mean:.1f}°, learned {learned.mean:.1f}° (width {width}, n={gap.seeds})",
                 holds=abs(gap.delta) <= AFFINE_TOLERANCE and gap.seeds >= rules.MIN_SEEDS,
                 partly=abs(gap.delta) <= AFFINE_TOLERANCE,
                 rule=f"|θ_F − θ_T| ≤ {AFFINE_TOLERANCE:g}°; {rules.MIN_SEEDS} seeds for reproduced; not "
                      f"reproduced when |θ_F − θ_T| − {rules.Z:g} s.e. > {AFFINE_TOLERANCE:g}°",
                 unless=[None if both_tilted else "no tilt to compare: a BNGD θ is not "
                         f"{TILT_MARGIN:g}° above GD's", rules.seeds_check(gap.seeds),
                         None if abs(gap.delta) <= AFFINE_TOLERANCE or abs(gap.delta) - rules.Z * gap.se > AFFINE_TOLERANCE
                         else f"within the noise: {gap.text(1.0, '°')} neither within {AFFINE_TOLERANCE:g}° nor "
                              f"{rules.Z:g} s.e. beyond it"])


def nearest_centroid_lead(t: pd.DataFrame) -> tuple[Arm, Arm, Difference]:
    """(nearest centroid, GD, nearest centroid − GD) in FGSM ε = 1/4 accuracy. The nearest-centroid classifier
    does not depend on the seed: the difference has GD's seeds (its one value is exact but for its binomial error)."""
    nc, gd = arm(t, "fgsm_eps0.25", variant="nearest_centroid"), arm(t, "fgsm_eps0.25", variant="gd")
    gap = difference(gd, nc, b_is_fixed=True)
    return nc, gd, Difference(-gap.delta, gap.se, gap.seeds)


def nearest_centroid(table: pd.DataFrame) -> Verdict:
    t, width = tilt_table(table)
    nc, gd, lead = nearest_centroid_lead(t)
    if nc.n == 0 or gd.n == 0:
        return not_measured(NC_FGSM)
    far = lead.delta > NC_GAP + rules.Z * lead.se
    shown = lead.delta > rules.Z * lead.se
    excluded = lead.delta + rules.Z * lead.se < NC_GAP
    noise = None if shown or excluded else (
        f"within the noise: the lead {lead.text()} is neither {rules.Z:g} s.e. beyond 0 nor excluded from "
        f"{100 * NC_GAP:g} pts")
    return judge(NC_FGSM, f"{100 * nc.mean:.1f}% vs {100 * gd.mean:.1f}%: {lead.text()} (width {width}; n = GD's "
                 "seeds, the nearest-centroid classifier is fixed)",
                 holds=far and lead.seeds >= rules.MIN_SEEDS, partly=shown,
                 rule=f"reproduced: the nearest-centroid lead exceeds {100 * NC_GAP:g} pts + {rules.Z:g} s.e. with "
                      f"{rules.MIN_SEEDS} seeds; partly: a smaller lead beyond the noise, or "
                      f"{rules.MIN_SEEDS_TO_JUDGE}-{rules.MIN_SEEDS - 1} seeds; not reproduced: no lead beyond the "
                      f"noise and {rules.Z:g} s.e. exclude {100 * NC_GAP:g} pts",
                 unless=[chance_check(arm(t, "clean", variant="nearest_centroid"), arm(t, "clean", variant="gd"),
                                      classes=2), saturated_check(nc, gd), rules.seeds_check(lead.seeds), noise])


# ------------------------------------------------------------------------------------------- Tables 6-7, App. F
def mlp_arms(t: pd.DataFrame, metric: str, batchnorm: bool, wd: float, scale: int) -> Arm:
    return arm(t, metric, model="mlp", batchnorm=batchnorm, weight_decay=wd, scale=scale)


def bn_effect_per_width(table: pd.DataFrame, run: Run, claim: Claim, metric: str, paper: float) -> Verdict:
    t = part(table, "dimension")
    parts = []
    for scale in sorted(set(t["scale"].astype(int))) if not t.empty else []:
        with_bn, without = (mlp_arms(t, metric, bn, 0.0, scale) for bn in (True, False))
        clean = [mlp_arms(t, "clean", bn, 0.0, scale) for bn in (True, False)]
        width = int(select(t, scale=scale)["image_width"].iloc[0])
        v = rules.effect(claim, difference(with_bn, without), paper, paper_scale=paper_scale(run) and scale == 1,
                         unless=[chance_check(*clean, classes=10), saturated_check(with_bn, without)])
        parts.append((f"√d = {width}", v))
    return rules.combine(claim, parts, "BN minus no BN (λ = 0) at each width, each judged by the effect rule")


def decays(t: pd.DataFrame) -> list[float]:
    return sorted(w for w in set(t["weight_decay"].astype(float)) if w > 0) if not t.empty else []


def wd_effect(table: pd.DataFrame, run: Run, claim: Claim, metric: str, batchnorm: bool, paper: float) -> Verdict:
    """The MLP (with or without BN) trained with each λ > 0 minus λ = 0, in `metric`, at each width."""
    t = part(table, "dimension")
    parts = []
    for wd in decays(select(t, model="mlp")):
        for scale in sorted(set(t["scale"].astype(int))):
            decayed, plain = (mlp_arms(t, metric, batchnorm, w, scale) for w in (wd, 0.0))
            clean = [mlp_arms(t, "clean", batchnorm, w, scale) for w in (wd, 0.0)]
            if decayed.n == 0 or plain.n == 0:
                continue
            exact = paper_scale(run) and scale == 1 and wd == DIM_WEIGHT_DECAY
            parts.append((f"λ={wd:g} {scale}x", rules.effect(claim, difference(decayed, plain), paper,
                                                             paper_scale=exact,
                                                             unless=[chance_check(*clean, classes=10),
                                                                     saturated_check(decayed, plain)])))
    return rules.combine(claim, parts, f"{'BN' if batchnorm else 'no-BN'} MLP, λ minus λ = 0, at each λ and width")


def wd_bim(table: pd.DataFrame, run: Run) -> Verdict:
    return wd_effect(table, run, WD_BIM, "bim", False, PAPER_WD_BIM)


def bn_no_wd(table: pd.DataFrame, run: Run) -> Verdict:
    t = part(table, "dimension")
    parts = []
    for wd in decays(select(t, model="mlp")):
        for scale in [k for k in sorted(set(t["scale"].astype(int))) if k > 1]:
            plain, decayed = (mlp_arms(t, "bim", True, w, scale) for w in (0.0, wd))
            clean = [mlp_arms(t, "clean", True, w, scale) for w in (0.0, wd)]
            paper = PAPER_BN_NO_WD.get(scale)
            parts.append((f"λ={wd:g} {scale}x", rules.effect(
                BN_NO_WD, difference(plain, decayed), paper, direction=None if paper else -1.0,
                paper_scale=paper_scale(run) and wd == DIM_WEIGHT_DECAY,
                unless=[chance_check(*clean, classes=10), saturated_check(plain, decayed)])))
    return rules.combine(BN_NO_WD, parts, "BN MLP, λ = 0 minus λ, at every width above the base")


def linear_ratios(table: pd.DataFrame, wd: float) -> list[tuple[int, float, float]]:
    """(scale, the linear model's BIM accuracy over that at the base width, its standard error)."""
    t = select(part(table, "dimension"), model="linear", weight_decay=wd)
    scales = sorted(set(t["scale"].astype(int))) if not t.empty else []
    base = arm(t, "bim", scale=scales[0]) if scales else None
    out = []
    for scale in scales[1:]:
        other = arm(t, "bim", scale=scale)
        ratio = other.mean / base.mean
        out.append((scale, ratio, ratio * np.hypot(other.se() / other.mean, base.se() / base.mean)))
    return out


def linear_seeds(table: pd.DataFrame, **where) -> int:
    """The fewest seeds behind the linear model's BIM accuracy at any (λ, width) matching `where`."""
    rows = select(part(table, "dimension"), model="linear", metric="bim", **where)
    return int(rows.groupby(["weight_decay", "scale"]).size().min()) if len(rows) else 0


def ratio_text(ratios: list[tuple[int, float, float]]) -> str:
    return " / ".join(f"{r:.2f} ± {se:.2f} ({k}x)" for k, r, se in ratios) or "n/a (one width only)"


def linear_flat(table: pd.DataFrame) -> Verdict:
    """Flat for some lambda of the grid (the paper tunes lambda per width; one lambda for all widths is stricter)."""
    t = part(table, "dimension")
    found = {wd: linear_ratios(table, wd) for wd in decays(select(t, model="linear"))}
    found = {wd: r for wd, r in found.items() if r}
    if not found:
        return not_measured(LINEAR_WD_FLAT, "the linear model with weight decay at two or more widths")
    flat = [wd for wd, r in found.items() if all(q - rules.Z * se >= 1 - RATIO_TOLERANCE for _, q, se in r)]
    falls = [wd for wd, r in found.items() if any(q + rules.Z * se < 1 - RATIO_TOLERANCE for _, q, se in r)]
    seeds = linear_seeds(table)
    return judge(LINEAR_WD_FLAT, "; ".join(f"λ={wd:g}: {ratio_text(r)}" for wd, r in found.items()),
                 holds=bool(flat) and seeds >= rules.MIN_SEEDS, partly=bool(flat),
                 rule=f"for some λ of the grid, every ratio − {rules.Z:g} s.e. ≥ {1 - RATIO_TOLERANCE:g}"
                      + (f" (λ = {', '.join(f'{w:g}' for w in flat)})" if flat else "")
                      + f"; {rules.MIN_SEEDS} seeds for reproduced",
                 unless=[None if flat or len(falls) == len(found) else
                         "within the noise: no λ's ratios are all clearly ≥ or clearly below the threshold",
                         rules.seeds_check(seeds)])


def linear_falls(table: pd.DataFrame) -> Verdict:
    ratios = linear_ratios(table, 0.0)
    if not ratios:
        return not_measured(LINEAR_PLAIN_FALLS, "the linear model at two or more widths")
    _, r, se = ratios[-1]
    falls = r + rules.Z * se < 1 - RATIO_TOLERANCE
    seeds = linear_seeds(table, weight_decay=0.0)
    return judge(LINEAR_PLAIN_FALLS, ratio_text(ratios), holds=falls and seeds >= rules.MIN_SEEDS, partly=falls,
                 rule=f"the widest ratio + {rules.Z:g} s.e. < {1 - RATIO_TOLERANCE:g}; {rules.MIN_SEEDS} seeds for "
                      "reproduced; an accuracy ratio stands in for the paper's loss",
                 unless=[None if falls or r - rules.Z * se >= 1 - RATIO_TOLERANCE else
                         "within the noise: the widest ratio's interval straddles the threshold", rules.seeds_check(seeds)])


# ------------------------------------------------------------------------------------------------- Figure 2
#: What batch_trends follows: BIM accuracy, clean accuracy, or BIM − clean (the accuracy the attack takes away).
TREND_METRICS = ("bim", "clean", "bim-clean")


def accuracy_at(t: pd.DataFrame, metric: str, **where) -> tuple[float, float] | None:
    """(value, binomial error) of one net's `metric` (TREND_METRICS), or None if not measured. BIM − clean's
    error is that of the share of images the attack flips (the two are measured on the same images)."""
    if metric != "bim-clean":
        a = arm(t, metric, **where)
        return (a.mean, a.se()) if a.n else None
    bim, clean = arm(t, "bim", **where), arm(t, "clean", **where)
    if bim.n == 0 or clean.n == 0:
        return None
    lost = clean.mean - bim.mean
    n = bim.n_each[0] if bim.n_each else np.nan
    return -lost, (binomial_se(max(lost, 0.0), int(n)) if np.isfinite(n) and n > 0 else 0.0)


def batch_trends(t: pd.DataFrame, batchnorm: bool, lo: int, hi: int, depths: list[int], metric: str = "bim") -> Arm:
    """Per seed: `metric` (TREND_METRICS) at B = hi minus at B = lo, averaged over `depths` (binomial error of
    that mean)."""
    values, errors = [], []
    for seed in sorted(set(t["seed"].astype(int))):
        ends = [[accuracy_at(t, metric, batchnorm=batchnorm, batch_size=b, depth=d, seed=seed) for d in depths]
                for b in (lo, hi)]
        if any(e is None for side in ends for e in side):
            continue
        values.append(float(np.mean([h[0] - l[0] for l, h in zip(*ends)])))
        errors.append(float(np.sqrt(sum(h[1] ** 2 + l[1] ** 2 for l, h in zip(*ends)))) / len(depths))
    return Arm(tuple(values), tuple(errors))


def trained_depths(t: pd.DataFrame, lo: int, hi: int) -> list[int]:
    """Depths <= DB_MAX_DEPTH at which every net (BN or not, both batch sizes, every seed) trained."""
    keep = []
    for depth in sorted(set(t["depth"].astype(int))):
        clean = select(t, metric="clean", depth=depth, batch_size=[lo, hi])["value"]
        if depth <= DB_MAX_DEPTH and len(clean) and clean.min() >= REASONABLE_CLEAN:
            keep.append(depth)
    return keep


def depth_batch(table: pd.DataFrame) -> Verdict:
    t = part(table, "depth_batch")
    if t.empty or t["batch_size"].nunique() < 2:
        return not_measured(DB_BATCH, "two or more batch sizes")
    lo, hi = int(t["batch_size"].min()), int(t["batch_size"].max())
    depths = trained_depths(t, lo, hi)
    if not depths:
        return inconclusive(DB_BATCH, f"no depth ≤ {DB_MAX_DEPTH} at which every net reached "
                            f"{100 * REASONABLE_CLEAN:g}% clean accuracy at B = {lo} and {hi}")
    trends = {(bn, m): batch_trends(t, bn, lo, hi, depths, m) for bn in (True, False) for m in TREND_METRICS}
    tension = difference(trends[True, "bim-clean"], trends[False, "bim-clean"])
    bim = difference(trends[True, "bim"], trends[False, "bim"])
    bim_falls = -bim.delta > rules.Z * bim.se and -bim.delta >= rules.MIN_EFFECT
    verdict = rules.effect(
        DB_BATCH, tension, None, direction=-1.0,
        note=f"trend = change from B={lo} to B={hi} over depths {depths} of BIM − clean accuracy (what the attack "
             "takes away, so a BIM fall that only follows clean accuracy is no tension; its binomial error is that of "
             "the share of images flipped); BN trend minus no-BN trend",
        cap=None if bim_falls else f"BIM accuracy itself does not fall more with BN ({bim.text()})")
    side = lambda bn: ", ".join(f"{name} {100 * trends[bn, m].mean:+.1f}" for name, m in
                                (("BIM", "bim"), ("clean", "clean"), ("BIM − clean", "bim-clean")))
    measured = (f"trends B={lo}→{hi}, pts: BN {side(True)}; no BN {side(False)}; BN − no BN in BIM − clean "
                f"{verdict.measured} (in BIM alone {bim.text()})")
    return Verdict(verdict.claim, verdict.outcome, measured, verdict.why)


def depth_limit(table: pd.DataFrame) -> Verdict:
    from tfadv.models.batchnorm_nets import bn_max_trainable_depth

    t = select(part(table, "depth_batch"), batchnorm=True, metric="clean")
    t = t[t["batch_size"] >= 4] if not t.empty else t
    if t.empty:
        return not_measured(DB_LIMIT)
    beyond = t["depth"].astype(float) > t["batch_size"].map(lambda b: bn_max_trainable_depth(int(b)))
    deep, shallow = t[beyond]["value"], t[~beyond]["value"]
    if deep.empty:
        return inconclusive(DB_LIMIT, f"{NOT_MEASURED}: no BN net deeper than the theory's limit for its batch size",
                            f"{len(shallow)} BN nets, all within the limit")
    deep_fail, shallow_train = np.mean(deep < REASONABLE_CLEAN), np.mean(shallow >= REASONABLE_CLEAN)
    return judge(DB_LIMIT, f"beyond the limit {100 * deep_fail:.0f}% of {len(deep)} failed to train; within it "
                 f"{100 * shallow_train:.0f}% of {len(shallow)} trained",
                 holds=deep_fail >= TRAINS_FRACTION and shallow_train >= TRAINS_FRACTION,
                 partly=deep_fail > 1 - shallow_train, rule=f"at least {100 * TRAINS_FRACTION:g}% on each side as "
                 f"predicted (trained: clean ≥ {100 * REASONABLE_CLEAN:g}%)",
                 unless=[too_few(len(deep) + len(shallow), 4, "BN nets")])


def judge_all(tables: dict[str, pd.DataFrame], run: Run) -> list[Verdict]:
    table = tables["results"]
    return [toy_tilt(table), tilt_bn(table), tilt_affine(table), nearest_centroid(table),
            bn_effect_per_width(table, run, BN_NOISE, "awgn", PAPER_BN_NOISE),
            bn_effect_per_width(table, run, BN_BIM, "bim", PAPER_BN_BIM),
            wd_effect(table, run, WD_CLEAN_BN, "clean", True, PAPER_WD_CLEAN_BN),
            wd_effect(table, run, WD_CLEAN_PLAIN, "clean", False, PAPER_WD_CLEAN_PLAIN), wd_bim(table, run),
            bn_no_wd(table, run),
            linear_flat(table), linear_falls(table),
            depth_batch(table), depth_limit(table)] + claims_cifar.judge_all(tables, run)
