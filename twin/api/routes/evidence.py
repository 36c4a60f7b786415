"""Evidence: observations of a learner's answers, the learner model's input."""

from flask import Blueprint, jsonify

from ..endpoint import SERVICE, actor, endpoint, request_id, runtime, subject_restriction
from ..learner_model_schemas import (EvidenceBatchSchema, EvidenceIngestSchema, EvidencePageSchema,
                                     EvidenceQuerySchema)

bp = Blueprint("evidence", __name__, url_prefix="/v1/profiles")

# 1,000 observations of a few hundred bytes each do not fit the general 64 KiB limit.
MAX_BODY_BYTES = 512 * 1024


@bp.post("/<string(maxlength=64):profile_id>/evidence")
@endpoint("Add a batch of up to 1,000 observations (all or nothing; retries are repeats)",
          tag="evidence", roles=SERVICE, body=EvidenceBatchSchema, max_body_bytes=MAX_BODY_BYTES,
          responses={200: EvidenceIngestSchema, 404: None, 409: None},
          rules=("time-in-the-future", "observed-at-outside-retention", "observed-before-purged-evidence"))
def add_evidence(profile_id, body):
    return jsonify(runtime().evidence.ingest(actor(), request_id(), profile_id, body["observations"]))


@bp.get("/<string(maxlength=64):profile_id>/evidence")
@endpoint("List a profile's observations in the order they were stored (cursor pagination)",
          tag="evidence", roles=SERVICE, learner_own=True, query=EvidenceQuerySchema,
          responses={200: EvidencePageSchema, 404: None}, rules=("invalid-cursor",))
def list_evidence(profile_id, query):
    return jsonify(runtime().evidence.list(actor(), request_id(), profile_id, limit=query["limit"],
                                           cursor=query.get("cursor"), domain=query.get("domain"),
                                           topic=query.get("topic"), restricted_to=subject_restriction()))
