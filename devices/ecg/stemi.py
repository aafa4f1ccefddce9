"""The STEMI decision on measured median beats: ST elevation in contiguous leads by the 4th
Universal Definition, reciprocal depression, territory, and the confounders (LBBB, paced rhythm,
LVH with strain) that change which rule applies. Every threshold comes from `Criteria`."""

from __future__ import annotations

from dataclasses import dataclass

from devices.ecg.criteria import Criteria
from devices.ecg.measure import LeadMeasures, Measurements
from devices.ecg.model import Patient

__all__ = ["Criterion", "StemiDecision", "confounders", "decide"]


@dataclass(frozen=True, slots=True)
class Criterion:
    """One rule that was met: which, in which leads, against what threshold."""

    rule: str
    leads: tuple[str, ...]
    threshold_mv: float
    st_mv: dict[str, float]

    def as_json(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "leads": list(self.leads),
            "threshold_mv": self.threshold_mv,
            "st_mv": {lead: round(value, 3) for lead, value in self.st_mv.items()},
        }


@dataclass(frozen=True, slots=True)
class StemiDecision:
    stemi: bool
    criteria: tuple[Criterion, ...]
    territory: tuple[str, ...]


def _negative_qrs(lead: LeadMeasures) -> bool:
    return lead.qrs_area < 0


def _s_depth(lead: LeadMeasures) -> float:
    """The deepest negative QRS deflection (S, or QS), as a positive mV amount."""
    return -min(lead.s_mv, lead.q_mv)


def confounders(m: Measurements, patient: Patient, criteria: Criteria, paced: bool) -> list[str]:
    """Flags for patterns that confound the ST criteria: lbbb, paced, lvh, lvh_strain."""
    rules = criteria.confounders
    leads = m.leads
    flags = []
    if paced:
        flags.append("paced")
    lbbb = rules.lbbb
    if (
        m.qrs_ms >= lbbb.qrs_ms
        and all(leads[name].qrs_area < 0 for name in lbbb.negative_leads)
        and all(leads[name].qrs_area > 0 and leads[name].q_mv == 0 for name in lbbb.positive_leads)
    ):
        flags.append("lbbb")
    elif m.qrs_ms >= lbbb.qrs_ms:
        flags.append("wide_qrs")
    lvh = rules.lvh
    sokolow = -leads["V1"].s_mv + max(leads["V5"].r_mv, leads["V6"].r_mv)
    cornell = leads["aVL"].r_mv - leads["V3"].s_mv
    cornell_limit = getattr(lvh.cornell_mv, patient.sex or "unknown")
    if (
        sokolow >= lvh.sokolow_lyon_mv
        or cornell >= cornell_limit
        or leads["aVL"].r_mv >= lvh.r_avl_mv
    ):
        flags.append("lvh")
        if any(
            leads[name].st_j60_mv <= lvh.strain_st_mv and leads[name].t_mv <= lvh.strain_t_mv
            for name in lvh.strain_leads
        ):
            flags.append("lvh_strain")
    return flags


def decide(
    m: Measurements, patient: Patient, criteria: Criteria, flags: list[str]
) -> StemiDecision:
    """STEMI or not, with the criteria met and the territory."""
    if "lbbb" in flags or "paced" in flags:
        return _sgarbossa(m, criteria)
    leads = m.leads
    thresholds = {
        name: criteria.elevation_mv(name, patient.sex, patient.age_years) for name in leads
    }
    elevated = {name for name, lead in leads.items() if lead.st_j_mv >= thresholds[name]}
    if "lvh" in flags:
        # Armstrong: where a deep S dominates, elevation must be a share of the S wave.
        ratio = criteria.confounders.armstrong_ratio
        elevated = {
            name
            for name in elevated
            if not _negative_qrs(leads[name])
            or leads[name].st_j_mv >= ratio * _s_depth(leads[name])
        }
    found: list[Criterion] = []
    territory: list[str] = []
    for first, second in criteria.contiguous:
        if first in elevated and second in elevated:
            pair = (first, second)
            found.append(
                Criterion(
                    "st_elevation",
                    pair,
                    max(thresholds[first], thresholds[second]),
                    {name: leads[name].st_j_mv for name in pair},
                )
            )
            for name, area in criteria.territories.items():
                if first in area.leads and second in area.leads and name not in territory:
                    territory.append(name)
    # Reciprocal depression counts at any slope: it mirrors the elevation, as it evolves.
    depressed = {name for name, lead in leads.items() if lead.st_j_mv <= -criteria.st_depression_mv}
    reciprocal = sorted(
        {name for area in territory for name in criteria.territories[area].reciprocal} & depressed,
        key=list(leads).index,
    )
    if reciprocal:
        found.append(
            Criterion(
                "reciprocal_depression",
                tuple(reciprocal),
                -criteria.st_depression_mv,
                {name: leads[name].st_j_mv for name in reciprocal},
            )
        )
    posterior = criteria.posterior_depression
    deep = [
        name
        for name in posterior.leads
        if leads[name].st_j_mv <= -posterior.mv
        and leads[name].st_slope <= criteria.depression_max_slope
    ]
    if len(deep) >= 2 and not (set(posterior.leads) & elevated):
        found.append(
            Criterion(
                "posterior_depression",
                tuple(deep),
                -posterior.mv,
                {name: leads[name].st_j_mv for name in deep},
            )
        )
        territory.append("posterior")
    stemi = any(c.rule == "st_elevation" for c in found)
    return StemiDecision(stemi, tuple(found), tuple(territory))


def _sgarbossa(m: Measurements, criteria: Criteria) -> StemiDecision:
    """Smith-modified Sgarbossa: in LBBB or paced rhythm any one lead suffices."""
    rule = criteria.confounders.sgarbossa
    found: list[Criterion] = []
    for name, lead in m.leads.items():
        negative = _negative_qrs(lead)
        if not negative and lead.st_j_mv >= rule.concordant_elevation_mv:
            found.append(
                Criterion(
                    "sgarbossa_concordant_elevation",
                    (name,),
                    rule.concordant_elevation_mv,
                    {name: lead.st_j_mv},
                )
            )
        if (
            name in rule.concordant_depression_leads
            and negative
            and lead.st_j_mv <= -rule.concordant_depression_mv
        ):
            found.append(
                Criterion(
                    "sgarbossa_concordant_depression",
                    (name,),
                    -rule.concordant_depression_mv,
                    {name: lead.st_j_mv},
                )
            )
        depth = _s_depth(lead)
        if (
            negative
            and lead.st_j_mv >= rule.concordant_elevation_mv
            and depth > 0
            and -lead.st_j_mv / depth <= rule.discordant_ratio
        ):
            found.append(
                Criterion(
                    "sgarbossa_discordant_ratio",
                    (name,),
                    rule.discordant_ratio,
                    {name: lead.st_j_mv},
                )
            )
    territory: list[str] = []
    for criterion in found:
        for area, spec in criteria.territories.items():
            if criterion.leads[0] in spec.leads and area not in territory:
                territory.append(area)
    return StemiDecision(bool(found), tuple(found), tuple(territory))
