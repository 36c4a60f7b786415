"""Profiles: create, lookup by user_id (in the body, never the URL), read, patch, erase."""

from flask import Blueprint, jsonify, request

from ..endpoint import SERVICE, actor, endpoint, request_id, runtime, subject_restriction, with_etag
from ..schemas import (ErasureReceiptSchema, ProfileCreateSchema, ProfilePatchSchema, ProfileSchema,
                       UserIdSchema)

bp = Blueprint("profiles", __name__, url_prefix="/v1/profiles")


@bp.post("")
@endpoint("Create a learner profile", tag="profiles", roles=SERVICE, body=ProfileCreateSchema,
          responses={201: ProfileSchema, 409: None},
          rules=("parental-consent-required", "birth-date-in-the-future"))
def create_profile(body):
    view, etag = runtime().profiles.create(actor(), request_id(), body)
    return with_etag(view, etag, 201, location=f"/v1/profiles/{view['profile_id']}")


@bp.post("/lookup")
@endpoint("Find the profile of a user_id", tag="profiles", roles=SERVICE, body=UserIdSchema,
          responses={200: ProfileSchema, 404: None}, read_only=True)
def lookup_profile(body):
    view, etag = runtime().profiles.lookup(actor(), request_id(), body["user_id"])
    return with_etag(view, etag)


@bp.get("/<string(maxlength=64):profile_id>")
@endpoint("Read a profile (ETag)", tag="profiles", roles=SERVICE, learner_own=True,
          responses={200: ProfileSchema, 404: None})
def get_profile(profile_id):
    view, etag = runtime().profiles.get(actor(), request_id(), profile_id, restricted_to=subject_restriction())
    return with_etag(view, etag)


@bp.patch("/<string(maxlength=64):profile_id>")
@endpoint("Update a profile partially (If-Match honoured)", tag="profiles", roles=SERVICE,
          body=ProfilePatchSchema, responses={200: ProfileSchema, 404: None, 412: None},
          rules=("parental-consent-required", "birth-date-in-the-future"))
def patch_profile(profile_id, body):
    view, etag = runtime().profiles.update(actor(), request_id(), profile_id, body,
                                           request.headers.get("If-Match"))
    return with_etag(view, etag)


@bp.delete("/<string(maxlength=64):profile_id>")
@endpoint("Erase the profile's subject and all their data (If-Match honoured when sent)", tag="profiles",
          roles=SERVICE, responses={200: ErasureReceiptSchema, 404: None, 409: None, 412: None},
          if_match="Erase only if the profile is still at this ETag (else 412, nothing erased); "
                   "without it the erasure is unconditional")
def delete_profile(profile_id):
    return jsonify(runtime().subject_requests.erase(actor(), request_id(), profile_id=profile_id,
                                                    if_match=request.headers.get("If-Match")).to_dict())
