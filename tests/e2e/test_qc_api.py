"""`/api/qc` on a running `greenchannel serve`: cases posted through its FHIR API come back as
monthly figures (JSON, CSV), a chart and per-case indicator values, behind the API token."""

from __future__ import annotations

import csv
import io
import statistics
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.pathways.cases import CST, case, case_bundle, stemi_pci

pytestmark = pytest.mark.slow

D2W = [2700, 4000, 5400, 6000]


def test_qc_api_reports_the_cases_posted_to_the_fhir_api(server_factory, tmp_path: Path) -> None:
    server = server_factory(tmp_path, None)
    server.start()
    at = datetime(2026, 4, 8, 10, tzinfo=CST)
    cases = [
        stemi_pci(f"api-{n}", seconds, at=at + timedelta(hours=n)) for n, seconds in enumerate(D2W)
    ]
    cases.append(stemi_pci("api-bad", 1441 * 60, at=at))
    cases.append(
        case("api-stroke", center="stroke", facts={"diagnosis": "AIS"}, at=at, door=0, ct_start=20)
    )
    with server.http() as http:
        for timeline in cases:
            response = http.post("/fhir", json=case_bundle(timeline))
            assert response.status_code == 200, response.text

        report = http.get(
            "/api/qc/chest_pain",
            params={"from": "2026-03", "to": "2026-04", "standard": "cpc-recert"},
        )
        assert report.status_code == 200, report.text
        (recert,) = report.json()["reports"]
        d2w = next(i for i in recert["indicators"] if i["id"] == "cpc.d2w")
        march, april = d2w["months"]
        assert march["n"] == 0
        assert (april["n"], april["invalid"]) == (4, 1)
        assert april["mean_seconds"] == pytest.approx(statistics.fmean(D2W))
        assert april["compliance"] == pytest.approx(0.75)
        assert recert["data_quality"][0]["case_id"] == "api-bad"

        text = http.get(
            "/api/qc/chest_pain", params={"from": "2026-04", "to": "2026-04", "format": "csv"}
        )
        assert text.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(text.text)))
        assert {r["standard"] for r in rows} == {"cpc-recert", "local", "singledisease-stemi"}

        png = http.get(
            "/api/qc/chest_pain/plot.png",
            params={"from": "2026-01", "to": "2026-04", "indicator": "cpc.d2w"},
        )
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 20_000

        one = http.get("/api/qc/cases/api-2").json()
        assert (one["center"], one["month"], one["arrival_mode"]) == (
            "chest_pain",
            "2026-04",
            "ems",
        )
        results = {
            r["indicator"]: r
            for s in one["standards"]
            for r in s["results"]
            if s["standard"] == "cpc-recert"
        }
        assert results["cpc.d2w"] | {"name": None} == {
            "name": None, "indicator": "cpc.d2w", "standard": "cpc-recert", "kind": "interval",
            "status": "ok", "seconds": 5400, "minutes": 90.0, "met": True, "limit": "≤ 90 min",
            "start": {"node": "door", "at": "2026-04-08T12:00:00+08:00"},
            "end": {"node": "wire_crossing", "at": "2026-04-08T13:30:00+08:00"},
        }  # fmt: skip
        assert one["node_references"]["door"] == "Observation/api-2-door"

        assert http.get("/api/qc/cases/nobody").status_code == 404
        assert (
            http.get("/api/qc/neurology", params={"from": "2026-01", "to": "2026-02"}).status_code
            == 404
        )
        assert (
            http.get("/api/qc/stroke", params={"from": "2026-1", "to": "2026-02"}).status_code
            == 422
        )
        late = http.get("/api/qc/stroke", params={"from": "2026-05", "to": "2026-02"})
        assert late.status_code == 400 and "before it starts" in late.json()["detail"]
        unknown = http.get(
            "/api/qc/stroke", params={"from": "2026-04", "to": "2026-04", "standard": "x"}
        )
        assert unknown.status_code == 404 and "nhc-neuro-qc-2020" in unknown.json()["detail"]
    with server.http() as anonymous:
        anonymous.headers.pop("Authorization")
        answer = anonymous.get("/api/qc/chest_pain", params={"from": "2026-04", "to": "2026-04"})
        assert answer.status_code == 401
