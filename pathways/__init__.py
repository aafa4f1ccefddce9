"""The three centers' pathways (chest pain, stroke, trauma), driven by FHIR resources.

From the FHIR store's change events, `pathways/` keeps each center case (an `EpisodeOfCare`), its
time nodes (`Observation`s of category `time-node`), scores, running clocks and alerts, quality
indicators and the patient archive. What is clinical (which code is which node, thresholds,
populations) is data in `config/pathways/`; the code here is generic over it. The FHIR shapes
follow `../shared/domain/interfaces.md` §5; the canonical URLs are in `pathways.vocabulary`.
"""
