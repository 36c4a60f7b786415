"""The REST API: the Flask app factory (``app``), the endpoint decorator, problem responses and
the blueprints (``routes``). Routes only parse and serialise; the work is the services'."""
