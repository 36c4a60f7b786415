"""The forms the API declares in /openapi.json and enforces: timestamps, dates, ids in paths,
cursors, model names and versions (JSON Schema patterns, ECMA-262 and Python alike)."""

# Timestamps: years 1900-9999, the first and last day of that range excluded in local time so
# that any UTC offset (up to 23:59) converts to UTC within it. Declared as the pattern of every
# date-time in the document; dates (birth_date) take years 1900-9999.
DATE_TIME_PATTERN = r"^(?!1900-01-01|9999-12-31)(19[0-9]{2}|[2-9][0-9]{3})-"
DATE_PATTERN = r"^(19[0-9]{2}|[2-9][0-9]{3})-"
# The form of every id in a path; an id of another form names nothing (404).
ID_PATTERNS = {"profile_id": r"^prf_[A-Za-z0-9_-]{1,60}$", "session_id": r"^ses_[A-Za-z0-9_-]{1,60}$",
               "consent_id": r"^cns_[A-Za-z0-9_-]{1,60}$", "hold_id": r"^hld_[A-Za-z0-9_-]{1,60}$"}
# What session-list cursors look like (base64url, no padding); not every such string is one.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"

MODEL_VERSION_PATTERN = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
# Names the registry accepts: no '/', '\\' or '..', no leading or trailing space, no control
# characters (a name of another form names no model: 404).
MODEL_NAME_PATTERN = r"^(?!.*\.\.)(?!\s)(?!.*\s$)[^/\\\x00-\x1f\x7f-\x9f]{1,100}$"
PATH_PATTERNS = {**ID_PATTERNS, "name": MODEL_NAME_PATTERN}
