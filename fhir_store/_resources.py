"""Pure helpers over FHIR JSON resources: R4 types, ids, checks, identifiers and references."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from fhir_store.errors import InvalidResource

__all__ = [
    "ID_PATTERN",
    "R4_RESOURCE_TYPES",
    "Reference",
    "check_id",
    "check_resource",
    "check_type",
    "identifier_tokens",
    "find_references",
    "local_reference",
    "same_content",
    "with_references",
]

ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# A literal reference to a resource on this server: Type/id, or a version of it.
_LOCAL_REFERENCE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[0-9]+)?")

# Every resource type of FHIR R4 (4.0.1), from the specification's resource list.
R4_RESOURCE_TYPES: frozenset[str] = frozenset(
    """
    Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse
    AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement
    CarePlan CareTeam CatalogEntry ChargeItem ChargeItemDefinition Claim ClaimResponse
    ClinicalImpression CodeSystem Communication CommunicationRequest CompartmentDefinition
    Composition ConceptMap Condition Consent Contract Coverage CoverageEligibilityRequest
    CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric DeviceRequest
    DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis
    Encounter Endpoint EnrollmentRequest EnrollmentResponse EpisodeOfCare EventDefinition Evidence
    EvidenceVariable ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal
    GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy Immunization
    ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide InsurancePlan Invoice
    Library Linkage List Location Measure MeasureReport Media Medication MedicationAdministration
    MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement MedicinalProduct
    MedicinalProductAuthorization MedicinalProductContraindication MedicinalProductIndication
    MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
    MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect
    MessageDefinition MessageHeader MolecularSequence NamingSystem NutritionOrder Observation
    ObservationDefinition OperationDefinition OperationOutcome Organization OrganizationAffiliation
    Parameters Patient PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner
    PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson
    RequestGroup ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject
    RiskAssessment RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen
    SpecimenDefinition StructureDefinition StructureMap Subscription Substance
    SubstanceNucleicAcid SubstancePolymer SubstanceProtein SubstanceReferenceInformation
    SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest Task
    TerminologyCapabilities TestReport TestScript ValueSet VerificationResult VisionPrescription
    """.split()
)


class Reference(NamedTuple):
    """A `reference` string of a resource and the keys and indexes that lead to its object."""

    value: str
    location: tuple[str | int, ...]

    def path(self, resource_type: str) -> str:
        """The element path of the object, e.g. `Encounter.participant[0].individual`."""
        path = resource_type
        for step in self.location:
            path = f"{path}[{step}]" if isinstance(step, int) else f"{path}.{step}"
        return path


# Server-managed meta elements: ignored when deciding whether an update changes anything.
_SERVER_META = ("versionId", "lastUpdated")
_ABSENT = object()  # stands for a missing element in comparisons


def check_type(resource_type: str) -> None:
    """Raise NotFound-like InvalidResource unless `resource_type` is an R4 resource type."""
    if resource_type not in R4_RESOURCE_TYPES:
        raise InvalidResource(
            "unknown resource type; use an R4 resource type name such as Patient (case matters)",
            expression=["resourceType"],
            status=404,
            code="not-supported",
        )


def check_id(resource_id: str, *, expression: str = "id") -> None:
    """Raise InvalidResource unless `resource_id` is a valid FHIR id (1-64 of A-Z a-z 0-9 - .)."""
    if not ID_PATTERN.fullmatch(resource_id):
        raise InvalidResource(
            "not a valid FHIR id: use 1 to 64 characters from A-Z, a-z, 0-9, '-' and '.'",
            expression=[expression],
        )


def check_resource(resource: object, *, expected_type: str | None = None) -> dict[str, Any]:
    """Check the basic shape of a resource and return it typed: a JSON object, a known type,
    a valid id if any, and the expected type if the URL names one."""
    if not isinstance(resource, dict):
        raise InvalidResource("the resource must be a JSON object", expression=["Resource"])
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise InvalidResource(
            "the resource has no resourceType string", expression=["resourceType"]
        )
    if resource_type not in R4_RESOURCE_TYPES:
        raise InvalidResource(
            "unknown resource type; use an R4 resource type name such as Patient (case matters)",
            expression=["resourceType"],
        )
    if expected_type is not None and resource_type != expected_type:
        raise InvalidResource(
            "the resourceType does not match the type in the request URL",
            expression=[f"{resource_type}.resourceType"],
        )
    resource_id = resource.get("id")
    if resource_id is not None:
        if not isinstance(resource_id, str):
            raise InvalidResource("id must be a string", expression=[f"{resource_type}.id"])
        check_id(resource_id, expression=f"{resource_type}.id")
    meta = resource.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise InvalidResource("meta must be a JSON object", expression=[f"{resource_type}.meta"])
    return resource


def identifier_tokens(resource: dict[str, Any]) -> list[tuple[str | None, str]]:
    """The (system, value) pairs of the resource's top-level `identifier` element(s)."""
    raw = resource.get("identifier")
    items = raw if isinstance(raw, list) else [raw] if isinstance(raw, dict) else []
    tokens: list[tuple[str | None, str]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        value = item.get("value")
        if not isinstance(value, str) or not value:
            continue
        system = item.get("system")
        token = (system if isinstance(system, str) and system else None, value)
        if token not in tokens:
            tokens.append(token)
    return tokens


def same_content(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two versions of a resource are equal apart from server-managed meta."""
    if len(old) - ("meta" in old) != len(new) - ("meta" in new):
        return False
    for key, value in new.items():
        if key != "meta" and old.get(key, _ABSENT) != value:
            return False
    return bool(_client_meta(old) == _client_meta(new))


def local_reference(value: str) -> tuple[str, str] | None:
    """The (type, id) a reference names on this server (`Patient/1`, `Patient/1/_history/2`);
    None for any other kind (absolute URL, `urn:uuid:`, `#contained`, a conditional one)."""
    match = _LOCAL_REFERENCE.fullmatch(value)
    if match is None or match.group(1) not in R4_RESOURCE_TYPES:
        return None
    return match.group(1), match.group(2)


def find_references(resource: dict[str, Any]) -> list[Reference]:
    """Every `reference` string in the resource, where it is, in document order."""
    found: list[Reference] = []
    _collect(resource, [], found)
    return found


def with_references(
    resource: dict[str, Any], references: list[Reference], replacements: dict[str, str]
) -> dict[str, Any]:
    """A copy of `resource` with each of its `references` whose value is in `replacements`
    replaced. Only the objects and arrays on the way to a replaced reference are copied: the
    rest is shared with `resource`, which is left as it was."""
    root = dict(resource)
    copies: dict[tuple[str | int, ...], Any] = {(): root}
    for reference in references:
        replacement = replacements.get(reference.value)
        if replacement is None:
            continue
        node: Any = root
        location = reference.location
        for depth, step in enumerate(location, 1):
            prefix = location[:depth]
            child = copies.get(prefix)
            if child is None:
                original = node[step]
                child = dict(original) if isinstance(original, dict) else list(original)
                node[step] = copies[prefix] = child
            node = child
        node["reference"] = replacement
    return root


def _collect(node: dict[str, Any], location: list[str | int], found: list[Reference]) -> None:
    # The location is built only where a reference is: most objects hold none.
    reference = node.get("reference")
    if isinstance(reference, str):
        found.append(Reference(reference, tuple(location)))
    for key, value in node.items():
        if isinstance(value, dict):
            location.append(key)
            _collect(value, location, found)
            location.pop()
        elif isinstance(value, list):
            location.append(key)
            _collect_items(value, location, found)
            location.pop()


def _collect_items(items: list[Any], location: list[str | int], found: list[Reference]) -> None:
    for index, item in enumerate(items):
        if isinstance(item, dict):
            location.append(index)
            _collect(item, location, found)
            location.pop()
        elif isinstance(item, list):
            location.append(index)
            _collect_items(item, location, found)
            location.pop()


def _client_meta(resource: dict[str, Any]) -> Any:
    """The resource's meta without its server-managed elements; _ABSENT if that leaves none."""
    meta = resource.get("meta", _ABSENT)
    if not isinstance(meta, dict) or ("versionId" not in meta and "lastUpdated" not in meta):
        return meta
    rest = {key: value for key, value in meta.items() if key not in _SERVER_META}
    return rest if rest else _ABSENT
