"""Knowledge states, their explanations, and the topics due for review."""

from flask import Blueprint, jsonify

from ..endpoint import SERVICE, actor, endpoint, request_id, runtime, subject_restriction
from ..learner_model_schemas import (SKILL_NAME, DueReviewListSchema, ExplanationSchema,
                                     ReviewsQuerySchema)
from ..schemas import KnowledgeListSchema, KnowledgeQuerySchema, KnowledgeStateSchema, KnowledgeUpsertSchema

bp = Blueprint("knowledge", __name__, url_prefix="/v1/profiles")

# Letters, digits, spaces and . : + - _ (validated and documented by ``endpoint``).
SEGMENT = SKILL_NAME
_STATE = "/<string(maxlength=64):profile_id>/knowledge/<string(maxlength=100):domain>/<string(maxlength=100):topic>"


@bp.put(_STATE)
@endpoint("Set a knowledge state's mastery by hand (a manual value evidence continues from)",
          tag="knowledge", roles=SERVICE, body=KnowledgeUpsertSchema,
          responses={200: KnowledgeStateSchema, 201: KnowledgeStateSchema, 404: None},
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


@bp.get(_STATE + "/explanation")
@endpoint("Why a knowledge state's mastery is what it is: the observations that moved it",
          tag="knowledge", roles=SERVICE, learner_own=True,
          responses={200: ExplanationSchema, 404: None}, path_patterns={"domain": SEGMENT, "topic": SEGMENT})
def explain_knowledge(profile_id, domain, topic):
    return jsonify(runtime().knowledge.explanation(actor(), request_id(), profile_id, domain, topic,
                                                   restricted_to=subject_restriction()))


@bp.get("/<string(maxlength=64):profile_id>/reviews/due")
@endpoint("Topics due for review (FSRS) at or before a time, with their predicted recall",
          tag="knowledge", roles=SERVICE, learner_own=True, query=ReviewsQuerySchema,
          responses={200: DueReviewListSchema, 404: None})
def reviews_due(profile_id, query):
    items = runtime().knowledge.reviews_due(actor(), request_id(), profile_id, query.get("before"),
                                            restricted_to=subject_restriction())
    return jsonify(items=items)
