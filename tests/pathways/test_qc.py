"""Monthly QC statistics on synthetic months, checked against figures computed here
independently with the `statistics` module; trend, rates, data-quality queue and the outputs."""

from __future__ import annotations

import csv
import io
import random
import statistics
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from pathways.indicator_definitions import Catalogue, load_catalogue
from pathways.qc import qc_report
from pathways.qc_output import as_csv, as_table
from pathways.qc_plot import build_figure, render_plot
from pathways.timeline import CaseTimeline
from tests.pathways.cases import CST, case, stemi_pci

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(ROOT / "config" / "pathways")


def _month(
    rng: random.Random, month: int, count: int, centre_seconds: int
) -> tuple[list[CaseTimeline], list[int]]:
    """`count` STEMI PCI cases in 2026-`month` with random D2W around `centre_seconds`, plus
    one excluded, one without wire crossing, one negative and one NSTEMI; the ok values."""
    at = datetime(2026, month, 5, 9, 0, 0, tzinfo=CST)
    cases, values = [], []
    for number in range(count):
        seconds = max(60, int(rng.gauss(centre_seconds, 1200)))
        values.append(seconds)
        cases.append(stemi_pci(f"m{month}-{number}", seconds, at=at + timedelta(hours=number)))
    cases.append(stemi_pci(f"m{month}-declined", 9999, at=at, facts={"give_up_treatment": True}))
    cases.append(
        case(
            f"m{month}-nowire",
            at=at,
            facts={"diagnosis": "STEMI", "reperfusion": "primary_pci"},
            door=0,
        )
    )
    cases.append(stemi_pci(f"m{month}-negative", -300, at=at))
    cases.append(
        case(f"m{month}-nstemi", at=at, facts={"diagnosis": "NSTEMI"}, door=0, wire_crossing=40)
    )
    return cases, values


def test_monthly_figures_match_an_independent_computation(catalogue: Catalogue) -> None:
    rng = random.Random(20260301)
    standard = catalogue.standard("chest_pain", "cpc-recert")
    march, march_values = _month(rng, 3, 37, 4800)
    april, april_values = _month(rng, 4, 23, 5600)
    months = ["2026-03", "2026-04", "2026-05"]
    report = qc_report(
        [*march, *april], standard, months, ["cpc.d2w"], catalogue.node_order["chest_pain"]
    )
    (d2w,) = report.indicators
    for figures, values in ((d2w.months[0], march_values), (d2w.months[1], april_values)):
        assert figures["n"] == len(values)
        assert figures["mean_seconds"] == pytest.approx(statistics.fmean(values))
        assert figures["median_seconds"] == pytest.approx(statistics.median(values))
        p90 = statistics.quantiles(values, n=10, method="inclusive")[8]
        assert figures["p90_seconds"] == pytest.approx(p90)
        met = sum(1 for v in values if v <= 5400)
        assert (figures["met"], figures["compliance"]) == (met, pytest.approx(met / len(values)))
        assert (figures["excluded"], figures["invalid"], figures["not_computable"]) == (1, 1, 1)
        assert figures["population"] == len(values) + 2  # ok + not computable + invalid
        assert figures["completeness"] == pytest.approx(1 - 1 / (len(values) + 2))
        assert figures["exclusions"] == {"give_up_treatment": 1}
        assert figures["targets_met"]["mean"] is (statistics.fmean(values) <= 5400)
    empty = d2w.months[2]
    assert (empty["n"], empty["mean_seconds"], empty["compliance"], empty["completeness"]) == (
        0,
        None,
        None,
        None,
    )
    everything = march_values + april_values
    assert d2w.total["n"] == len(everything)
    assert d2w.total["mean_seconds"] == pytest.approx(statistics.fmean(everything))
    # the data-quality queue: both negatives, with both instants
    queue = [e for e in report.data_quality if e["indicator"] == "cpc.d2w"]
    assert sorted(e["case_id"] for e in queue) == ["m3-negative", "m4-negative"]
    assert queue[0]["start_node"] == "door" and queue[0]["end_node"] == "wire_crossing"
    assert {e["kind"] for e in queue} == {"invalid_interval"}
    order = [e for e in report.data_quality if e["kind"] == "node_order"]
    assert sorted(e["case_id"] for e in order) == ["m3-negative", "m4-negative"]
    assert order[0]["problem"] == "wire_crossing is before door (R11 order)"
    assert datetime.fromisoformat(queue[0]["end"]) - datetime.fromisoformat(
        queue[0]["start"]
    ) == timedelta(seconds=-300)


def test_the_trend_follows_the_monthly_mean(catalogue: Catalogue) -> None:
    standard = catalogue.standard("chest_pain", "cpc-recert")
    cases = []
    for month, d2w in ((1, 6000), (2, 5400), (3, 4800), (4, 4200)):
        at = datetime(2026, month, 3, 10, tzinfo=CST)
        cases += [stemi_pci(f"{month}-{n}", d2w + n, at=at) for n in range(3)]
    report = qc_report(cases, standard, ["2026-01", "2026-02", "2026-03", "2026-04"], ["cpc.d2w"])
    trend = report.indicators[0].trend
    assert trend["direction"] == "decreasing"
    assert trend["slope_per_month"] == pytest.approx(-600)
    assert (trend["target"], trend["target_met"]) == ("decreasing", True)
    assert [point["value"] for point in trend["series"]] == [6001, 5401, 4801, 4201]


def test_rates_count_the_numerator_over_the_population(catalogue: Catalogue) -> None:
    standard = catalogue.standard("chest_pain", "cpc-recert")
    stemi = {"diagnosis": "STEMI", "reperfusion": "primary_pci"}
    cases = [
        case("a", facts={**stemi, "bypass_ed": True, "bypass_ccu": True}, door=0),
        case("b", facts={**stemi, "bypass_ed": True}, door=0),
        case("c", facts=stemi, door=0),
        case("d", arrival="self", facts={**stemi, "bypass_ccu": True}, door=0),  # single bypass
    ]
    report = qc_report(
        cases, standard, ["2026-03"], ["cpc.double_bypass_rate", "cpc.single_bypass_rate"]
    )
    double, single = (r.months[0] for r in report.indicators)
    assert (double["n"], double["numerator"], double["rate"]) == (3, 1, pytest.approx(1 / 3))
    assert double["targets_met"] == {"rate_min": True}  # 33 % ≥ 30 %
    assert (single["n"], single["numerator"], single["rate"]) == (1, 1, 1.0)


def test_the_iss_distribution_counts_cases_per_bin(catalogue: Catalogue) -> None:
    standard = catalogue.standard("trauma", "local")
    cases = [
        case(str(iss), center="trauma", facts={"iss": iss}, door=0)
        for iss in (4, 8, 9, 16, 24, 25, 75)
    ]
    report = qc_report(cases, standard, ["2026-03"], ["trauma.iss_distribution"])
    assert report.indicators[0].months[0]["counts"] == [2, 1, 2, 2]  # [0,9) [9,16) [16,25) [25,76]


def test_csv_table_and_chart_show_the_same_figures(catalogue: Catalogue) -> None:
    standard = catalogue.standard("chest_pain", "cpc-recert")
    cases = [stemi_pci(str(n), 3000 + 600 * n) for n in range(5)]  # 50..90 min
    report = qc_report(cases, standard, ["2026-02", "2026-03"])
    rows = list(csv.DictReader(io.StringIO(as_csv([report]))))
    d2w = {row["month"]: row for row in rows if row["indicator"] == "cpc.d2w"}
    assert set(d2w) == {"2026-02", "2026-03", "all"}
    assert (d2w["2026-03"]["n"], d2w["2026-03"]["mean_min"], d2w["2026-03"]["compliance"]) == (
        "5",
        "70",
        "1",
    )
    assert d2w["2026-02"]["n"] == "0" and d2w["2026-02"]["mean_min"] == ""
    table = as_table([report])
    line = next(x for x in table.splitlines() if x.strip().startswith("2026-03") and "70.0" in x)
    assert line.split()[:5] == ["2026-03", "5", "70.0", "70.0", "86.0"]
    png = render_plot([report], ["cpc.d2w"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000


def test_compliance_is_also_given_per_risk_stratum(catalogue: Catalogue) -> None:
    standard = catalogue.standard("chest_pain", "local")

    def nste(name: str, stratum: str, hours: float) -> CaseTimeline:
        facts = {"diagnosis": "NSTEMI", "nste_risk_stratum": stratum}
        return case(
            name, facts=facts, door=0, risk_restratification=0, invasive_procedure=hours * 60
        )

    cases = [nste("a", "very_high", 1), nste("b", "very_high", 3), nste("c", "high", 20)]
    report = qc_report(cases, standard, ["2026-03"], ["cpc.nste_invasive_timing"])
    march = report.indicators[0].months[0]
    assert (march["n"], march["met"]) == (3, 2)
    assert march["by_group"] == {
        "high": {"n": 1, "met": 1, "compliance": 1.0},
        "very_high": {"n": 2, "met": 1, "compliance": 0.5},
    }


@pytest.mark.parametrize(
    ("center", "standard", "heading"),
    [("chest_pain", "cpc-recert", "胸痛中心质控指标"), ("stroke", "local", "卒中中心质控指标"),
     ("trauma", "local", "创伤中心质控指标")],
)  # fmt: skip
def test_the_chart_is_in_chinese_and_every_glyph_is_drawn(
    catalogue: Catalogue, center: str, standard: str, heading: str
) -> None:
    """Every indicator's Chinese name in its panel title; drawn to PNG with warnings as
    errors, so a character the font lacks (matplotlib's "Glyph … missing") fails here."""
    definitions = catalogue.standard(center, standard)
    cases = [stemi_pci(str(n), 3000 + 600 * n) for n in range(3)] if center == "chest_pain" else []
    report = qc_report(cases, definitions, ["2026-02", "2026-03"])
    figure = build_figure([report])
    texts = [t.get_text() for t in figure.findobj(lambda o: hasattr(o, "get_text"))]
    assert any(t.startswith(heading) for t in texts), texts[:5]
    plotted = [i for i in report.as_dict()["indicators"] if i["kind"] in ("interval", "rate")]
    for item in plotted:
        if item["name_zh"]:
            assert any(item["name_zh"] in t for t in texts), item["id"]
    assert any("达标率" in t or "比例" in t for t in texts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = render_plot([report])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
