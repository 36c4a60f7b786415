"""Operations on a deployment's files that the ``twin`` command runs: backup sets, key
rotation. Each function takes the configuration and keyring it works with, and a progress
factory (``twin.storage.progress``); refusing to run next to a live service is the caller's
part (``twin.storage.service_guard``)."""
