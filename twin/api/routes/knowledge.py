"""Knowledge states."""

from flask import Blueprint, jsonify

from ..endpoint import SERVICE, actor, endpoint, request_id, runtime, subject_restriction
from ..schemas import KnowledgeListSchema, KnowledgeQuerySchema, KnowledgeStateSchema, KnowledgeUpsertSchema

bp = Blueprint("knowledge", __name__, url_prefix="/v1/profiles")

# Letters, digits, spaces and . : + - _ (validated and documented by ``endpoint``).
SEGMENT = r"^[\w .:+-]{1,100}$"


@bp.put("/<string(maxlength=64):profile_id>/knowledge/<string(maxlength=100):domain>/<string(maxlength=100):topic>")
@endpoint("Create or replace a knowledge state", tag="knowledge", roles=SERVICE,
          body=KnowledgeUpsertSchema, responses={200: KnowledgeStateSchema, 201: KnowledgeStateSchema, 404: None},
          path_patterns={"domain": SEGMENT, "topic": SEGMENT})
def upsert_knowledge(profile_id, domain, topic, body):
    view, created = runtime().knowledge.upsert(actor(), request_id(), profile_id, domain, topic, body)
    return jsonify(view), 201 if created else 200


@bp.get("/<string(maxlength=64):profile_id>/knowledge")
@endpoint("List a profile's knowledge states", tag="knowledge", roles=SERVICE, learner_own=True,
          query=KnowledgeQuerySchema, responses={200: KnowledgeListSchema, 404: None})
def list_knowledge(profile_id, query):
    items = runtime().knowledge.list(actor(), request_id(), profile_id, domain=query.get("domain"),
                                     restricted_to=subject_restriction())
    return jsonify(items=items)
