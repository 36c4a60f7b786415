"""Parental consents (COPPA): record, list, withdraw."""

from flask import Blueprint, jsonify

from ..endpoint import SERVICE, actor, endpoint, request_id, runtime
from ..schemas import ConsentListSchema, ConsentSchema, ConsentWithdrawalSchema, ParentalConsentSchema

bp = Blueprint("consents", __name__, url_prefix="/v1/profiles")


@bp.post("/<string(maxlength=64):profile_id>/consents")
@endpoint("Record a parental consent", tag="consents", roles=SERVICE, body=ParentalConsentSchema,
          responses={201: ConsentSchema, 404: None})
def grant_consent(profile_id, body):
    return jsonify(runtime().consents.grant(actor(), request_id(), profile_id, body)), 201


@bp.get("/<string(maxlength=64):profile_id>/consents")
@endpoint("List a profile's consents", tag="consents", roles=SERVICE,
          responses={200: ConsentListSchema, 404: None})
def list_consents(profile_id):
    return jsonify(items=runtime().consents.list(actor(), request_id(), profile_id))


@bp.delete("/<string(maxlength=64):profile_id>/consents/<string(maxlength=64):consent_id>")
@endpoint("Withdraw a consent (a child left without consent is erased)", tag="consents", roles=SERVICE,
          responses={200: ConsentWithdrawalSchema, 404: None, 409: None})
def withdraw_consent(profile_id, consent_id):
    return jsonify(runtime().subject_requests.withdraw_consent(actor(), request_id(), profile_id, consent_id))
